"""Batch sending: lazy input, bounded concurrency, one outcome per message, a resumable journal.

``IhuyiClient.send_many`` runs :func:`send_many` here with its send function and clock, and
``MarketingSmsClient.send_many`` with chunks of numbers as its messages (a chunk's
:class:`Message` carries its numbers comma-joined); this module never sees a client. Its parts: the input (:class:`_Source`), the workers
(:class:`_Worker`, one :class:`_Send` per message), and the consumer (:func:`_consume`). The input (any iterable or async
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
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream as ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream as ObjectSendStream

from ._clock import Clock
from ._codes import ACCOUNT_LEVEL_CODES, lookup
from ._exceptions import (
    ApiError,
    DeliveryUnknownError,
    IdempotencyInProgressError,
    IdempotencyKeyReuseError,
    IhuyiError,
    LocalRateLimitError,
    TransportError,
)
from ._journal import Journal, JournalEntry
from ._models import SendResult
from ._redact import content_digest, mask_mobile
from ._validation import Kind, check_kind, normalize_mobile

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
    "in_progress",       # not sent by this run: another run holds its idempotency key
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
        one, its number, its content and its occurrence).
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
    :ivar status: ``accepted`` (code 2 with an smsid), ``rejected`` (another code),
        ``refused`` (our limiter), ``invalid`` (nothing sent), ``not_sent``, ``unknown``
        (it may have been sent: reconcile, never resend blindly), ``already_accepted`` /
        ``already_unknown`` (skipped: the journal has an earlier run's outcome),
        ``in_progress`` (another run holds its idempotency key) or ``conflict`` (the
        journal has a different message under this id).
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

    @property
    def mobiles(self) -> tuple[str, ...]:
        """The numbers this outcome is about: its message's number, or every number of a
        marketing chunk (:meth:`MarketingSmsClient.send_many`, whose ``status`` and
        ``smsid``, the chunk's ``task_id``, hold for each of them); ``()`` without a message."""
        return () if self.message is None else tuple(self.message.mobile.split(","))


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
    if isinstance(exc, DeliveryUnknownError):
        return "unknown"  # even before the wire: an earlier send's outcome, replayed by its key
    if isinstance(exc, IdempotencyKeyReuseError):
        return "conflict"  # another run sent another message under this id
    if isinstance(exc, IdempotencyInProgressError):
        return "in_progress"
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


#: What the batch sends with: ``send(message, on_wire, idempotency_key)``. ``on_wire`` must be
#: called right before the request goes on the wire (it may raise to stop the send: nothing
#: written); ``IhuyiClient.send_many`` passes its own.
SendFunction = Callable[[Message, Callable[[], None], str | None], Awaitable[SendResult]]
Messages = Iterable[Message | Mapping[str, Any]] | AsyncIterable[Message | Mapping[str, Any]]


def send_many(
    send: SendFunction,
    messages: Messages,
    *,
    clock: Clock | None = None,
    start: Callable[[], None] | None = None,
    concurrency: int = 50,
    on_progress: ProgressHook | None = None,
    journal: str | Journal | None = None,
    on_conflict: ConflictPolicy = "stop",
    stop_on: Collection[int] | None = ACCOUNT_LEVEL_CODES,
    resend_unknown: bool = False,
    idempotency_keys: bool = False,
) -> BatchRun:
    """Run a batch with ``send`` (see :meth:`IhuyiClient.send_many` for the semantics).

    :param clock: waits a number's per-second turn (``None``: such a refusal is the outcome).
    :param start: called when the iteration starts (the client checks it is open there).
    :param idempotency_keys: send each message with its ``id`` as its idempotency key.
    :raises ValueError: with ``idempotency_keys``, a message of a sized input has no ``id``.
    """
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
    if idempotency_keys and isinstance(messages, Collection):
        _check_ids(messages)
    run = _RunState()
    options = _Options(
        send=send,
        clock=clock,
        on_conflict=on_conflict,
        stop_on=frozenset(stop_on),
        resend_unknown=bool(resend_unknown),
        idempotency_keys=bool(idempotency_keys),
    )
    gen = _run(messages, run, options, start, concurrency, on_progress, journal)
    return BatchRun(gen, run)


@dataclass(frozen=True, slots=True)
class _Options:
    send: SendFunction
    clock: Clock | None = None
    on_conflict: ConflictPolicy = "stop"
    stop_on: frozenset[int] = ACCOUNT_LEVEL_CODES
    resend_unknown: bool = False
    idempotency_keys: bool = False


def _check_ids(messages: Collection[Any]) -> None:
    """Every message of a sized input has an ``id``, checked before anything is sent."""
    for index, item in enumerate(messages):
        raw = item.id if isinstance(item, Message) else item.get("id") if isinstance(item, Mapping) else None
        if raw is None or raw == "":
            raise ValueError(f"idempotency_keys=True needs an id on every message; message {index} has none")


class _Source:
    """The input, pulled one message at a time by the worker that is free to send it.

    A sync input is pulled by the free worker itself (``next()`` cannot suspend); an async
    input only ever by one puller task, since it may hold cancel scopes, task groups or
    context across its ``yield``s, which must stay in the task that entered them.
    """

    __slots__ = ("_async", "_ready", "_run", "_sync", "inbox", "outbox")

    def __init__(self, messages: Messages, run: _RunState) -> None:
        self._run = run
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if isinstance(messages, AsyncIterable):
            self._async = aiter(messages)
        else:
            self._sync = iter(messages)
        self.outbox, self.inbox = anyio.create_memory_object_stream[tuple[int, Any]](0)
        self._ready = anyio.Semaphore(0, fast_acquire=True)  # workers waiting for an async item

    @property
    def is_async(self) -> bool:
        return self._async is not None

    async def puller(self) -> None:
        """The async input's one reader: pulls an item only once a worker is free for it."""
        source, run = self._async, self._run
        assert source is not None
        async with self.outbox:
            try:
                with anyio.CancelScope() as scope:
                    run.cancellable.add(scope)
                    while True:
                        await self._ready.acquire()
                        try:
                            item = await anext(source)
                        except StopAsyncIteration:
                            return
                        index = run.next_index
                        run.next_index += 1
                        await self.outbox.send((index, item))  # no buffer: to that worker
            finally:
                if inspect.isasyncgen(source):
                    # stopped early: finalise the generator here, in the task that ran it
                    await source.aclose()

    async def pull(self, inbox: ObjectReceiveStream[tuple[int, Any]]) -> tuple[int, Any] | None:
        """The next ``(index, item)`` for a free worker, ``None`` at the end of the input."""
        run = self._run
        if self._sync is not None:
            if run.exhausted:
                return None
            try:
                item = next(self._sync)  # no await: atomic between checkpoints
            except StopIteration:
                run.exhausted = True
                return None
            index = run.next_index
            run.next_index += 1
            return index, item
        self._ready.release()
        try:
            return await inbox.receive()
        except anyio.EndOfStream:
            return None


async def _run(
    messages: Messages,
    run: _RunState,
    options: _Options,
    start: Callable[[], None] | None,
    concurrency: int,
    on_progress: ProgressHook | None,
    journal: str | Journal | None,
) -> AsyncGenerator[Outcome, None]:
    """Start the workers, then hand their outcomes to the consumer as they come."""
    if start is not None:
        start()
    book = journal if isinstance(journal, Journal) or journal is None else Journal(journal)
    run.progress.started_at = time.monotonic()
    # `concurrency` workers, each pulling the next input only once it is free: the slot is
    # taken before the input is pulled, and a worker waiting to hand its outcome to a slow
    # consumer still holds its slot, so at most `concurrency` sends plus `concurrency`
    # buffered outcomes exist at any time. One long-lived task per slot, not one per message.
    send_stream, receive_stream = anyio.create_memory_object_stream[Outcome](concurrency)
    source = _Source(messages, run)
    workers = concurrency
    if isinstance(messages, Sized):
        workers = max(1, min(concurrency, len(messages)))
    try:
        async with anyio.create_task_group() as tg:
            async with send_stream, source.inbox:
                if source.is_async:
                    tg.start_soon(source.puller)
                else:
                    source.outbox.close()
                for _ in range(workers):
                    worker = _Worker(source, book, run, options)
                    tg.start_soon(worker.run, send_stream.clone(), source.inbox.clone())
            async with aclosing(_consume(receive_stream, run, on_progress)) as outcomes:
                async for outcome in outcomes:
                    try:
                        yield outcome
                    except GeneratorExit:
                        # Closed early: pull nothing more, let sends on the wire finish.
                        run.stop("closed by the consumer")
                        break
    finally:
        if book is not None:
            book.close()


async def _consume(
    receive_stream: ObjectReceiveStream[Outcome], run: _RunState, on_progress: ProgressHook | None
) -> AsyncGenerator[Outcome, None]:
    """The consumer's side: count each outcome, report progress, yield it."""
    progress = run.progress
    async with receive_stream:
        while True:
            # take what is buffered without a trip through the event loop per outcome;
            # wait only when the buffer is empty
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
            yield outcome


class _Worker:
    """One of the run's ``concurrency`` long-lived senders: pull, send, hand the outcome on."""

    __slots__ = ("book", "options", "source", "state")

    def __init__(self, source: _Source, book: Journal | None, state: _RunState, options: _Options) -> None:
        self.source, self.book, self.state, self.options = source, book, state, options

    async def run(self, out: ObjectSendStream[Outcome], inbox: ObjectReceiveStream[tuple[int, Any]]) -> None:
        async with out, inbox:
            while not self.state.stopped:
                pulled, outcome = await self._take_and_send(inbox)
                if pulled is None:
                    return  # the end of the input, or stopped while waiting for it
                if outcome is None:  # taken, then stopped before the wire: provably not sent
                    outcome = _stopped(pulled, self.state.stop_reason)
                else:
                    self._stop_if_needed(outcome)
                try:
                    try:
                        out.send_nowait(outcome)  # room in the buffer: no trip through the loop
                    except anyio.WouldBlock:
                        await out.send(outcome)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the consumer stopped early: the journal still has it

    async def _take_and_send(
        self, inbox: ObjectReceiveStream[tuple[int, Any]]
    ) -> tuple[tuple[int, Any] | None, Outcome | None]:
        """Pull one item and send it. Until its request goes on the wire the worker can be
        stopped (waiting for input, for its number's turn, or for the limiter); after, it
        finishes, so the outcome of a request on the wire is always known."""
        run, progress = self.state, self.state.progress
        pulled: tuple[int, Any] | None = None
        with anyio.CancelScope() as scope:
            run.cancellable.add(scope)

            def on_wire() -> None:
                if run.stopped:
                    raise _Stopped  # the send refunds its limiter slot; nothing written
                run.cancellable.discard(scope)

            try:
                pulled = await self.source.pull(inbox)
                if pulled is None or run.stopped:
                    return pulled, None
                progress.in_flight += 1
                try:
                    return pulled, await _send_one(pulled, self.book, on_wire, run, self.options)
                finally:
                    progress.in_flight -= 1
            except _Stopped:
                pass
            finally:
                run.cancellable.discard(scope)
        return pulled, None

    def _stop_if_needed(self, outcome: Outcome) -> None:
        """A conflict, or an answer about the account, stops the run."""
        if outcome.status == "conflict":
            self.state.stop(f"{outcome.error}")
        elif outcome.status == "rejected" and self.options.stop_on:
            code = getattr(outcome.error, "code", None)
            if code in self.options.stop_on:
                self.state.stop(f"the provider refused the account: {code} ({lookup(code).description})")


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
    pulled: tuple[int, Any],
    book: Journal | None,
    before_wire: Callable[[], None],
    run: _RunState,
    options: _Options,
) -> Outcome:
    """One item's outcome: read it as a message, check the journal, send it."""
    index, item = pulled
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
        skip = _resumed(book.previous(key), fp, key, index, message, item, options)
        if skip is not None:
            return skip
    if options.idempotency_keys and message.id is None:  # an unsized input: found only now
        error = ValueError("idempotency_keys=True needs an id on every message; this one has none")
        if book is not None:
            book.write(key, "invalid", fp=fp, reason=str(error))
        return Outcome(index, message, "invalid", error=error, item=item)
    return await _Send(book, key, fp, index, message, item, before_wire, run.progress).go(options)


def _resumed(
    previous: JournalEntry | None,
    fp: str,
    key: str,
    index: int,
    message: Message,
    item: object,
    options: _Options,
) -> Outcome | None:
    """What the journal says of an earlier run's message: skip it, a conflict, or ``None``: send."""
    if previous is None:
        return None
    if previous.fp is not None and previous.fp != fp and options.on_conflict != "skip":
        if options.on_conflict == "send":
            return None  # a new message under an old id
        where = f" (line {previous.line})" if previous.line is not None else ""
        error = ValueError(
            f"conflict: id {key!r} was journaled for a different message{where}; "
            "resume with the input the journal was written for, or choose on_conflict"
        )
        return Outcome(index, message, "conflict", error=error, item=item)
    if previous.status == "accepted":
        return Outcome(index, message, "already_accepted", smsid=previous.smsid, item=item)
    if previous.status in ("unknown", "pending") and not options.resend_unknown:
        return Outcome(index, message, "already_unknown", item=item)
    return None


class _Send:
    """One message's send: the journal's ``pending`` mark right before the wire, its outcome
    after, and whether the request may have gone (which decides a failure's status)."""

    __slots__ = ("before_wire", "book", "fp", "index", "item", "key", "message", "progress", "wired")

    def __init__(
        self,
        book: Journal | None,
        key: str,
        fp: str,
        index: int,
        message: Message,
        item: object,
        before_wire: Callable[[], None],
        progress: BatchProgress,
    ) -> None:
        self.book, self.key, self.fp, self.index = book, key, fp, index
        self.message, self.item, self.before_wire, self.progress = message, item, before_wire, progress
        self.wired = False  # set once the request may go on the wire

    def on_wire(self) -> None:
        self.before_wire()  # may raise to stop the send (nothing written, slot refunded)
        message = self.message
        if self.book is not None:
            self.book.write(
                self.key,
                "pending",
                fp=self.fp,
                mobile=mask_mobile(message.mobile),
                digest=content_digest(message.content or "|".join(message.variables or ())),
                line=_line_of(message),
            )
        self.wired = True
        self.progress.on_wire += 1

    async def go(self, options: _Options) -> Outcome:
        message, clock = self.message, options.clock
        try:
            while True:
                try:
                    key = message.id if options.idempotency_keys else None
                    result = await options.send(message, self.on_wire, key)
                except _Stopped:
                    raise
                except LocalRateLimitError as exc:
                    # The per-second bucket: wait the turn instead of failing (the batch paces).
                    if not self.wired and exc.code == 4080 and exc.retry_after is not None and clock is not None:
                        await clock.sleep(exc.retry_after)
                        continue
                    return self.failed(exc)
                except Exception as exc:  # any type: the status comes from where the send stopped
                    return self.failed(exc)
                if self.book is not None:
                    self.book.write(self.key, "accepted", smsid=result.smsid, fp=self.fp if result.replayed else None)
                status: OutcomeStatus = "already_accepted" if result.replayed else "accepted"
                return Outcome(self.index, message, status, result=result, smsid=result.smsid, item=self.item)
        finally:
            if self.wired:
                self.progress.on_wire -= 1

    def failed(self, exc: Exception) -> Outcome:
        return _finish(self.book, self.key, self.index, self.message, self.item, exc, self.wired)


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
