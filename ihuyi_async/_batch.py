"""Batch sending: lazy input, bounded concurrency, one outcome per message, a resumable journal.

``IhuyiClient.send_many`` is implemented here. The input (any iterable or async
iterable of :class:`Message` or dicts) is consumed lazily: at most
``concurrency`` messages are in flight and at most ``concurrency`` finished
outcomes wait for the consumer, so memory does not grow with the input.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream as ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream as ObjectSendStream

from ._codes import ACCOUNT_LEVEL_CODES, lookup
from ._exceptions import (
    ApiError,
    IhuyiError,
    LocalRateLimitError,
    TransportError,
)
from ._journal import Journal, JournalEntry
from ._models import SendResult
from ._redact import content_digest, mask_mobile
from ._validation import Kind, check_kind, normalize_mobile

if TYPE_CHECKING:
    from ._client import IhuyiClient

__all__ = [
    "BatchProgress",
    "BatchRun",
    "ConflictPolicy",
    "Message",
    "Outcome",
    "OutcomeStatus",
    "find_conflicts",
    "fingerprint",
    "message_key",
    "send_many",
]

OutcomeStatus = Literal[
    "accepted",          # code 2 with an smsid
    "rejected",          # the provider answered another code
    "refused",           # our limiter refused it (a quota is used up)
    "invalid",           # local validation or a malformed message: nothing sent
    "not_sent",          # the connection failed before the request left
    "unknown",           # it may have been sent: reconcile, never resend blindly
    "already_accepted",  # skipped: the journal says an earlier run got it accepted
    "already_unknown",   # skipped: an earlier run left its outcome unknown
    "conflict",          # not sent: the journal has a different message under this id
]

#: What a resumed run does with an ``id`` whose message changed since the journal saw it:
#: ``"stop"`` the run (nothing more is sent), ``"skip"`` it (trust the journal), or
#: ``"send"`` it as a new message.
ConflictPolicy = Literal["stop", "skip", "send"]

_MESSAGE_KEYS = frozenset({"mobile", "content", "id", "kind", "template_id", "variables"})


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a batch: full text (``content``) or a template with ``variables``.

    :ivar id: your key for it; with a journal, what a rerun recognises it by (without
        one, its number, its content and its occurrence: see :func:`message_key`).
    :ivar metadata: anything else you want back on the outcome.
    """

    mobile: str
    content: str | None = None
    id: str | None = field(default=None, kw_only=True)
    kind: Kind | None = field(default=None, kw_only=True)
    template_id: int | None = field(default=None, kw_only=True)
    variables: tuple[str, ...] | None = field(default=None, kw_only=True)
    metadata: Mapping[str, Any] | None = field(default=None, kw_only=True, compare=False)

    def __repr__(self) -> str:
        return (
            f"Message(mobile={mask_mobile(self.mobile)!r}, id={self.id!r}, "
            f"template_id={self.template_id!r}, kind={self.kind!r})"
        )

    @classmethod
    def from_any(cls, item: Message | Mapping[str, Any]) -> Message:
        """A :class:`Message` from a message or a dict (unknown keys go to ``metadata``).

        :raises TypeError: neither a message nor a mapping, or a field of the wrong type.
        :raises ValueError: no mobile, or neither content nor template.
        """
        if isinstance(item, Message):
            return item
        if not isinstance(item, Mapping):
            raise TypeError(f"a message must be a Message or a dict, not {type(item).__name__}")
        mobile = item.get("mobile")
        if mobile is None or mobile == "":
            raise ValueError("message has no mobile")
        if isinstance(mobile, int) and not isinstance(mobile, bool):
            mobile = str(mobile)
        if not isinstance(mobile, str):
            raise TypeError(f"mobile must be a str, not {type(mobile).__name__}")
        variables = item.get("variables")
        if variables is not None:
            if isinstance(variables, str):
                variables = variables.split("|")
            variables = tuple(str(v) for v in variables)
        template_id = item.get("template_id")
        if template_id not in (None, ""):
            template_id = int(template_id)
        else:
            template_id = None
        raw_id = item.get("id")
        extra = {k: v for k, v in item.items() if k not in _MESSAGE_KEYS}
        return cls(
            mobile,
            item.get("content") or None,
            id=None if raw_id in (None, "") else str(raw_id),
            kind=check_kind(item.get("kind") or None),
            template_id=template_id,
            variables=variables,
            metadata=extra or None,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message.

    :ivar index: its position in the input (0-based).
    :ivar message: the message; ``None`` only when the input item could not be read as
        one (then ``status`` is ``invalid`` and :attr:`item` holds what was given).
    :ivar status: see :data:`OutcomeStatus`.
    :ivar result: the :class:`SendResult` when accepted in this run, else ``None``.
    :ivar error: the typed error, else ``None``.
    :ivar smsid: the provider's id when accepted (this run or, for skips, an earlier one).
    :ivar item: the input item as given (a :class:`Message` or a dict, or anything else).
    """

    index: int
    message: Message | None
    status: OutcomeStatus
    result: SendResult | None = None
    error: Exception | None = None
    smsid: str | None = None
    item: object = None

    @property
    def ok(self) -> bool:
        """Accepted, in this run or an earlier one."""
        return self.status in ("accepted", "already_accepted")

    @property
    def skipped(self) -> bool:
        return self.status in ("already_accepted", "already_unknown")


@dataclass(slots=True)
class BatchProgress:
    """Running counts of a batch, passed to ``on_progress`` after every outcome."""

    started_at: float
    done: int = 0
    in_flight: int = 0  # taken from the input, outcome not yet known
    on_wire: int = 0  # of those, requests that may be on the wire
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def rate(self) -> float:
        """Outcomes per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


ProgressHook = Callable[[BatchProgress], Awaitable[None] | None]


class BatchRun:
    """What ``send_many`` returns: iterate it, or hold it in ``async with`` to stop early safely.

    ``async for outcome in client.send_many(msgs)`` is all a run to completion needs.
    To stop early (``break``), use the context form, which closes the run in the
    same task and waits for requests already on the wire::

        async with client.send_many(msgs) as outcomes:
            async for outcome in outcomes:
                if enough: break
    """

    __slots__ = ("_gen", "_state")

    def __init__(self, gen: AsyncGenerator[Outcome, None], state: _RunState) -> None:
        self._gen = gen
        self._state = state

    @property
    def stop_reason(self) -> str | None:
        """Why the run stopped before the end of its input (``None``: it did not)."""
        return self._state.stop_reason

    def stop(self, reason: str = "stop requested") -> None:
        """Stop gracefully: take no new message from the input and send nothing new.

        Keep iterating: requests already on the wire finish (each bounded by the client's
        call deadline) and yield their outcomes; messages taken but not yet on the wire
        (waiting for their number's turn, say) come back ``not_sent``; then the
        iteration ends. Safe to call from a signal handler task of the same event loop.
        """
        self._state.stop(reason)

    @property
    def progress(self) -> BatchProgress:
        """The run's live counts (the object ``on_progress`` receives)."""
        return self._state.progress

    @property
    def taken(self) -> int:
        """Messages taken from the input so far (the rest were never read)."""
        return self._state.next_index

    def __aiter__(self) -> AsyncGenerator[Outcome, None]:
        return self._gen

    async def __aenter__(self) -> AsyncGenerator[Outcome, None]:
        return self._gen

    async def __aexit__(self, *exc_info: object) -> None:
        await self._gen.aclose()

    async def aclose(self) -> None:
        """Stop the run: nothing new is sent; sends on the wire finish first."""
        await self._gen.aclose()


def _status_of(exc: Exception, wired: bool) -> OutcomeStatus:
    """The status of a failed send, decided by *where* it stopped, not only by what was raised.

    Before the wire (``on_wire`` not yet called) nothing can have reached the provider:
    ``refused`` (our limiter), ``invalid`` (local validation, a malformed message) or
    ``not_sent`` (anything else). After it, only a provider's answer (``rejected``) or the
    transport's proof that nothing was written (``not_sent``) is certain; any other exception,
    of whatever type, is ``unknown``: a sent message is never reported as unsent.
    """
    if not wired:
        if isinstance(exc, LocalRateLimitError):
            return "refused"
        if isinstance(exc, (ApiError, TypeError, ValueError)):
            return "invalid"
        return "not_sent"
    if isinstance(exc, ApiError) and not exc.local:
        return "rejected"
    if isinstance(exc, TransportError) and exc.sent is False:
        return "not_sent"
    return "unknown"


class _RunState:
    """Shared by a run's workers: where the input is, whether the run was stopped, and the
    cancel scopes of the workers that have nothing on the wire."""

    __slots__ = (
        "cancellable", "exhausted", "next_index", "occurrences", "progress", "stop_reason", "stopped",
    )

    def __init__(self) -> None:
        self.progress = BatchProgress(started_at=time.monotonic())
        self.exhausted = False  # the input has no more messages
        self.stopped = False  # stopped or closed early: pull nothing more, send nothing new
        self.stop_reason: str | None = None
        self.next_index = 0
        self.cancellable: set[anyio.CancelScope] = set()
        self.occurrences: dict[str, int] = {}  # fingerprint -> times seen (keys without ids)

    def stop(self, reason: str) -> None:
        """Pull nothing more and send nothing new; requests on the wire finish."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stopped = True
        for scope in self.cancellable:
            scope.cancel()


class _Stopped(Exception):
    """Raised right before a request would go on the wire after the run was stopped."""


def send_many(
    client: IhuyiClient,
    messages: Iterable[Message | Mapping[str, Any]] | AsyncIterable[Message | Mapping[str, Any]],
    *,
    concurrency: int = 50,
    on_progress: ProgressHook | None = None,
    journal: str | Journal | None = None,
    on_conflict: ConflictPolicy = "stop",
    stop_on: Collection[int] | None = ACCOUNT_LEVEL_CODES,
    resend_unknown: bool = False,
) -> BatchRun:
    """See :meth:`IhuyiClient.send_many`."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, not {concurrency!r}")
    if on_conflict not in ("stop", "skip", "send"):
        raise ValueError(f"on_conflict must be 'stop', 'skip' or 'send', not {on_conflict!r}")
    if stop_on is None:
        stop_on = ()
    if isinstance(stop_on, (str, bytes, int)) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in stop_on
    ):
        raise TypeError(f"stop_on must be a collection of int codes or None, not {stop_on!r}")
    run = _RunState()
    options = _Options(
        on_conflict=on_conflict, stop_on=frozenset(stop_on), resend_unknown=bool(resend_unknown)
    )
    gen = _run(client, messages, run, options, concurrency=concurrency, on_progress=on_progress, journal=journal)
    return BatchRun(gen, run)


@dataclass(frozen=True, slots=True)
class _Options:
    on_conflict: ConflictPolicy = "stop"
    stop_on: frozenset[int] = ACCOUNT_LEVEL_CODES
    resend_unknown: bool = False


async def _run(
    client: IhuyiClient,
    messages: Iterable[Message | Mapping[str, Any]] | AsyncIterable[Message | Mapping[str, Any]],
    run: _RunState,
    options: _Options,
    *,
    concurrency: int = 50,
    on_progress: ProgressHook | None = None,
    journal: str | Journal | None = None,
) -> AsyncGenerator[Outcome, None]:
    client._enter()
    book = journal if isinstance(journal, Journal) or journal is None else Journal(journal)
    progress = run.progress
    progress.started_at = time.monotonic()
    send_stream, receive_stream = anyio.create_memory_object_stream[Outcome](concurrency)
    clock = client.limiter.clock if client.limiter is not None else None

    # `concurrency` workers, each pulling the next input only once it is free: the slot is
    # taken before the input is pulled, and a worker waiting to hand its outcome to a slow
    # consumer still holds its slot, so at most `concurrency` sends plus `concurrency`
    # buffered outcomes exist at any time. One long-lived task per slot, not one per message.
    # A sync input is pulled by the free worker itself (`next()` cannot suspend); an async
    # input only ever by one puller task, since it may hold cancel scopes, task groups or
    # context across its `yield`s, which must stay in the task that entered them.
    sync_source: Iterator[Any] | None = None
    async_source: AsyncIterator[Any] | None = None
    if isinstance(messages, AsyncIterable):
        async_source = aiter(messages)
    else:
        sync_source = iter(messages)
    work_send, work_receive = anyio.create_memory_object_stream[tuple[int, Any]](0)
    ready = anyio.Semaphore(0, fast_acquire=True)  # workers waiting for an async input's item

    async def puller() -> None:
        assert async_source is not None
        async with work_send:
            try:
                with anyio.CancelScope() as scope:
                    run.cancellable.add(scope)
                    while True:
                        await ready.acquire()  # a worker is free: only now pull the next input
                        try:
                            item = await anext(async_source)
                        except StopAsyncIteration:
                            return
                        index = run.next_index
                        run.next_index += 1
                        await work_send.send((index, item))  # no buffer: to that worker
            finally:
                if inspect.isasyncgen(async_source):
                    # stopped early: finalise the generator here, in the task that ran it
                    await async_source.aclose()

    async def pull(inbox: ObjectReceiveStream[tuple[int, Any]]) -> tuple[int, Any] | None:
        if sync_source is not None:
            if run.exhausted:
                return None
            try:
                item = next(sync_source)  # no await: atomic between checkpoints
            except StopIteration:
                run.exhausted = True
                return None
            index = run.next_index
            run.next_index += 1
            return index, item
        ready.release()
        try:
            return await inbox.receive()
        except anyio.EndOfStream:
            return None

    async def worker(
        out: ObjectSendStream[Outcome], inbox: ObjectReceiveStream[tuple[int, Any]]
    ) -> None:
        async with out, inbox:
            while not run.stopped:
                # Until its request goes on the wire a worker can be stopped (waiting for
                # input, for its number's turn, or for the limiter); after, it finishes, so
                # the outcome of a request on the wire is always known.
                pulled: tuple[int, Any] | None = None
                outcome: Outcome | None = None
                with anyio.CancelScope() as scope:
                    run.cancellable.add(scope)

                    def on_wire(scope: anyio.CancelScope = scope) -> None:
                        if run.stopped:
                            raise _Stopped  # the send refunds its limiter slot; nothing written
                        run.cancellable.discard(scope)

                    try:
                        pulled = await pull(inbox)
                        if pulled is None:
                            return
                        if not run.stopped:
                            index, item = pulled
                            progress.in_flight += 1
                            try:
                                outcome = await _send_one(
                                    client, index, item, book, clock, on_wire, run, options, progress
                                )
                            finally:
                                progress.in_flight -= 1
                    except _Stopped:
                        pass
                    finally:
                        run.cancellable.discard(scope)
                if pulled is None:
                    return  # stopped while waiting for input: nothing was taken
                if outcome is None:  # taken, then stopped before the wire: provably not sent
                    outcome = _stopped(pulled, run.stop_reason)
                elif outcome.status == "conflict":
                    run.stop(f"{outcome.error}")
                elif outcome.status == "rejected" and options.stop_on:
                    code = getattr(outcome.error, "code", None)
                    if code in options.stop_on:
                        run.stop(f"the provider refused the account: {code} ({lookup(code).description})")
                try:
                    try:
                        out.send_nowait(outcome)  # room in the buffer: no trip through the loop
                    except anyio.WouldBlock:
                        await out.send(outcome)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the consumer stopped early: the journal still has it

    workers = concurrency
    if isinstance(messages, Sized):
        workers = max(1, min(concurrency, len(messages)))
    try:
        async with anyio.create_task_group() as tg:
            async with send_stream, work_receive:
                if async_source is not None:
                    tg.start_soon(puller)
                else:
                    work_send.close()
                for _ in range(workers):
                    tg.start_soon(worker, send_stream.clone(), work_receive.clone())
            async with receive_stream:
                while True:
                    # take what is buffered without a trip through the event loop per
                    # outcome; wait only when the buffer is empty
                    try:
                        outcome = receive_stream.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            outcome = await receive_stream.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                    progress.done += 1
                    progress.counts[outcome.status] = progress.counts.get(outcome.status, 0) + 1
                    if on_progress is not None:
                        maybe = on_progress(progress)
                        if inspect.isawaitable(maybe):
                            await maybe
                    try:
                        yield outcome
                    except GeneratorExit:
                        # Closed early: pull nothing more, let sends on the wire finish.
                        run.stop("closed by the consumer")
                        break
    finally:
        if book is not None:
            book.close()


def _stopped(pulled: tuple[int, Any], reason: str | None) -> Outcome:
    index, item = pulled
    try:
        message: Message | None = Message.from_any(item)
    except Exception:
        message = None
    error = TransportError(f"not sent: the run stopped ({reason or 'stopped'})", sent=False)
    return Outcome(index, message, "not_sent", error=error, item=item)


def fingerprint(message: Message) -> str:
    """What a journal checks on resume: the number and the text (or template and variables).

    A hex digest (80 bits); the number is normalised when valid, so ``+86 138…`` and
    ``138…`` are the same message.
    """
    try:
        number = normalize_mobile(message.mobile)
    except Exception:
        number = str(message.mobile).strip()
    if message.template_id is not None:
        body = f"#{message.template_id}:" + "|".join(message.variables or ())
    else:
        body = message.content or ""
    return hashlib.sha256(f"{number}\x1f{body}".encode("utf-8", "surrogatepass")).hexdigest()[:20]


def message_key(message: Message, fp: str, occurrences: dict[str, int]) -> str:
    """A message's journal key: its ``id``; without one, ``~<fingerprint>.<n>``.

    ``n`` counts identical messages (same number, same content) in input order, so the key
    of a message survives rows inserted, deleted or reordered around it, and an edited
    message is a new one. ``occurrences`` is updated.
    """
    if message.id is not None:
        return message.id
    n = occurrences.get(fp, 0) + 1
    occurrences[fp] = n
    return f"~{fp}.{n}"


def find_conflicts(
    messages: Iterable[Message | Mapping[str, Any]], journal: Journal
) -> list[tuple[int, Message, JournalEntry]]:
    """Messages whose ``id`` the journal holds for a different message: ``(index, message, entry)``.

    Run it over the whole input before a resumed :meth:`IhuyiClient.send_many` to list every
    conflict before anything is sent (the run itself stops at the first one it meets).
    Malformed messages are ignored here (the run reports them ``invalid``).
    """
    found: list[tuple[int, Message, JournalEntry]] = []
    for index, item in enumerate(messages):
        try:
            message = Message.from_any(item)
        except Exception:  # malformed: the run reports it invalid
            continue
        if message.id is None:
            continue
        previous = journal.previous(message.id)
        if previous is not None and previous.fp is not None and previous.fp != fingerprint(message):
            found.append((index, message, previous))
    return found


def _line_of(message: Message) -> int | None:
    line = (message.metadata or {}).get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) else None


async def _send_one(
    client: IhuyiClient,
    index: int,
    item: Any,
    book: Journal | None,
    clock: Any,
    before_wire: Callable[[], None] | None,
    run: _RunState,
    options: _Options,
    progress: BatchProgress,
) -> Outcome:
    try:
        message = Message.from_any(item)
    except Exception as exc:  # a malformed item, whatever it raised: nothing was sent
        if book is not None:
            book.write(f"#{index}", "invalid", reason=str(exc)[:200])
        return Outcome(index, None, "invalid", error=exc, item=item)
    fp = key = ""
    if book is not None:
        fp = fingerprint(message)
        key = message_key(message, fp, run.occurrences)
        previous = book.previous(key)
        if (
            previous is not None
            and previous.fp is not None
            and previous.fp != fp
            and options.on_conflict != "skip"
        ):
            if options.on_conflict == "stop":
                where = f" (line {previous.line})" if previous.line is not None else ""
                error = ValueError(
                    f"conflict: id {key!r} was journaled for a different message{where}; "
                    "resume with the input the journal was written for, or choose on_conflict"
                )
                return Outcome(index, message, "conflict", error=error, item=item)
            previous = None  # "send": a new message under an old id
        if previous is not None and previous.status == "accepted":
            return Outcome(index, message, "already_accepted", smsid=previous.smsid, item=item)
        if (
            previous is not None
            and previous.status in ("unknown", "pending")
            and not options.resend_unknown
        ):
            return Outcome(index, message, "already_unknown", item=item)

    wired = False  # set once the request may go on the wire: decides the status of a failure

    def on_wire() -> None:
        nonlocal wired
        if before_wire is not None:
            before_wire()  # may raise to stop the send (nothing written, slot refunded)
        if book is not None:
            book.write(
                key,
                "pending",
                fp=fp,
                mobile=mask_mobile(message.mobile),
                digest=content_digest(message.content or "|".join(message.variables or ())),
                line=_line_of(message),
            )
        wired = True
        progress.on_wire += 1

    try:
        while True:
            try:
                if message.template_id is not None:
                    result = await client._send_template(
                        message.mobile, message.template_id, message.variables or (), message.kind, on_wire
                    )
                elif message.content is None:
                    raise ValueError("message has neither content nor template_id")
                else:
                    result = await client._send_text(message.mobile, message.content, message.kind, on_wire)
            except _Stopped:
                raise
            except LocalRateLimitError as exc:
                # The per-second bucket: wait the turn instead of failing (the batch paces).
                if not wired and exc.code == 4080 and exc.retry_after is not None and clock is not None:
                    await clock.sleep(exc.retry_after)
                    continue
                return _finish(book, key, index, message, item, exc, wired)
            except Exception as exc:  # any type: the status comes from where the send stopped
                return _finish(book, key, index, message, item, exc, wired)
            if book is not None:
                book.write(key, "accepted", smsid=result.smsid)
            return Outcome(index, message, "accepted", result=result, smsid=result.smsid, item=item)
    finally:
        if wired:
            progress.on_wire -= 1


def _finish(
    book: Journal | None,
    key: str,
    index: int,
    message: Message,
    item: object,
    exc: Exception,
    wired: bool,
) -> Outcome:
    status = _status_of(exc, wired)
    if book is not None:
        reason = getattr(exc, "reason", None)
        if not isinstance(reason, str) or not reason:
            reason = type(exc).__name__
            if status == "unknown" and not isinstance(exc, IhuyiError):
                reason = f"unexpected {reason} after the request went on the wire"
        code = getattr(exc, "code", None)
        book.write(key, status, code=code if isinstance(code, int) else None, reason=reason)
    return Outcome(index, message, status, error=exc, item=item)
