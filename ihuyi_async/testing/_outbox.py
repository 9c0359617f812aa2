"""The outbox: the pushes the provider makes to the customer, and the forms they carry.

Owns :class:`Outbox` (the queue of receipts and template reviews, the dispatcher that
posts them, :meth:`~Outbox.deliver` and :meth:`~Outbox.reply`), :class:`PushRecord`
(what was pushed and how it went), :func:`post_with_retries`, and the test-only push
builders users' own receiver tests use: :func:`receipt_form`, :func:`reply_form`,
:func:`template_review_form`, :func:`post_push` and :class:`PushAnswer` (moved here from
:mod:`ihuyi_async.pushes`, where they stay importable for one release with a
``DeprecationWarning``).

The forms carry the field names of the provider's push documents; the poster sends
them as the provider does: POST, ``application/x-www-form-urlencoded``, UTF-8. The
provider counts anything but HTTP 200 with the literal body ``success`` as a failure
and retries at most 3 times, waiting 60, 120 and 180 seconds (*unverified*, so every
number here is a parameter). The emulator multiplies those waits by its
``time_scale``; :attr:`PushRecord.waits` keeps the provider's unscaled waits so tests
can check them without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import urlencode

import anyio
import httpx
import sniffio

from ._model import CHINA_TZ, SentMessage

__all__ = [
    "Outbox",
    "PushAnswer",
    "PushKind",
    "PushRecord",
    "post_push",
    "post_with_retries",
    "receipt_form",
    "reply_form",
    "template_review_form",
    "Waker",
]

PushKind = Literal["receipt", "reply", "template"]
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"



@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: once per process, not per post.
    return ssl.create_default_context()


def _time_text(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(CHINA_TZ)
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(CHINA_TZ)
    return value.strftime(_TIME_FORMAT)


def receipt_form(
    *,
    smsid: str | None = None,
    task_id: str | None = None,
    mobile: str = "13800138000",
    code: int | str = 2,
    msg: str | None = None,
    report_time: datetime | str | None = None,
) -> dict[str, str]:
    """A delivery receipt as the provider posts it.

    :param smsid: the Submit serial (ordinary sends).
    :param task_id: the marketing send's serial (instead of ``smsid``).
    :param mobile: the recipient (``mobilephone``).
    :param code: ``2`` delivered, anything else failed.
    :param msg: status text (default ``DELIVRD`` for code 2, else ``UNDELIV``).
    :param report_time: a datetime (aware ones are converted to UTC+8), a string
        sent verbatim, or ``None`` for now; formatted ``YYYY-MM-DD HH:MM:SS``.
    :raises ValueError: not exactly one of ``smsid`` and ``task_id``.

    .. versionadded:: 0.1.0
       (in :mod:`ihuyi_async.pushes`; here since 0.2.0)
    """
    if (smsid is None) == (task_id is None):
        raise ValueError("give exactly one of smsid (ordinary sends) and task_id (marketing)")
    form = {"code": str(code)}
    form["msg"] = msg if msg is not None else ("DELIVRD" if str(code) == "2" else "UNDELIV")
    form["mobilephone"] = mobile
    if smsid is not None:
        form["smsid"] = smsid
    else:
        form["task_id"] = str(task_id)
    form["report_time"] = _time_text(report_time)
    return form


def reply_form(
    *,
    mobile: str = "13800138000",
    content: str = "收到，谢谢",
    smsid: str | None = None,
    reply_time: datetime | str | None = None,
    time_field: str = "reply_time",
) -> dict[str, str]:
    """An upstream reply as the provider posts it.

    :param mobile: who replied (``mobilephone``).
    :param content: what they wrote.
    :param smsid: the Submit serial it relates to (omitted when ``None``).
    :param reply_time: as ``report_time`` of :func:`receipt_form`.
    :param time_field: ``reply_time`` or ``replyTime`` (both are seen).

    .. versionadded:: 0.1.0
       (in :mod:`ihuyi_async.pushes`; here since 0.2.0)
    """
    form = {"mobilephone": mobile, "content": content}
    if smsid is not None:
        form["smsid"] = smsid
    form[time_field] = _time_text(reply_time)
    return form


def template_review_form(
    *, template_id: int | str, code: int | str = 2, msg: str = "审核通过"
) -> dict[str, str]:
    """A template review result as the provider posts it (fields unverified).

    :param template_id: the id AddTemplate returned (``templateid``).
    :param code: ``2`` approved, ``0`` rejected.
    :param msg: the reviewer's reason.

    .. versionadded:: 0.1.0
       (in :mod:`ihuyi_async.pushes`; here since 0.2.0)
    """
    return {"templateid": str(template_id), "code": str(code), "msg": msg}


def _receipt_of(message: SentMessage, *, code: int, msg: str, report_time: datetime) -> dict[str, str]:
    """A marketing message's receipt carries ``task_id``, every other one ``smsid`` (§5)."""
    marketing = message.product == "marketing"
    return receipt_form(
        smsid=None if marketing else message.smsid,
        task_id=message.smsid if marketing else None,
        mobile=message.mobile,
        code=code,
        msg=msg,
        report_time=report_time,
    )


def _serial(form: Mapping[str, str]) -> str:
    return form.get("smsid") or form.get("task_id") or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PushAnswer:
    """What a receiver answered to a push.

    :ivar status_code: the HTTP status.
    :ivar body: the body, decoded as UTF-8 (undecodable bytes replaced).

    .. versionadded:: 0.1.0
       (in :mod:`ihuyi_async.pushes`; here since 0.2.0)
    """

    status_code: int
    body: str

    @property
    def acknowledged(self) -> bool:
        """Whether the provider would count the push as delivered: 200 and exactly ``success``."""
        return self.status_code == 200 and self.body == "success"


async def post_push(
    target: str | httpx.AsyncClient,
    form: Mapping[str, str],
    *,
    url: str = "",
    encoding: str = "utf-8",
    content_type: str = "application/x-www-form-urlencoded",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - the same signature as in ihuyi_async.pushes
) -> PushAnswer:
    """POST ``form`` to a receiver the way the provider does, and return its answer.

    :param target: the receiver's full URL, or an ``httpx.AsyncClient`` (e.g. one
        with an ``ASGITransport`` and a ``base_url``), which stays yours.
    :param form: the fields, e.g. from :func:`receipt_form`.
    :param url: with a client, the URL or path to post to (default: its ``base_url``).
    :param encoding: the body's encoding (the provider uses UTF-8).
    :param content_type: the ``Content-Type`` header sent.
    :param headers: extra headers (e.g. ``X-Forwarded-For``).
    :param timeout: seconds for the whole exchange (a URL ``target`` only).
    :raises httpx.HTTPError: the request could not be made.

    .. versionadded:: 0.1.0
       (in :mod:`ihuyi_async.pushes`; here since 0.2.0)
    """
    body = urlencode(list(form.items()), encoding=encoding).encode("ascii")
    request_headers = {"Content-Type": content_type, **(headers or {})}
    if isinstance(target, httpx.AsyncClient):
        response = await target.post(url, content=body, headers=request_headers)
    else:
        async with httpx.AsyncClient(
            timeout=timeout, trust_env=False, verify=_ssl_context()
        ) as client:
            response = await client.post(target + url, content=body, headers=request_headers)
    return PushAnswer(
        status_code=response.status_code,
        body=response.content.decode("utf-8", "replace"),
    )



@dataclass(slots=True, kw_only=True)
class PushRecord:
    """One item the emulator pushed (or tried to).

    :ivar kind: ``"receipt"``, ``"reply"`` or ``"template"``.
    :ivar url: where it was posted.
    :ivar form: the form fields.
    :ivar attempts: POSTs made (1 + retries).
    :ivar delivered: the receiver answered ``success``.
    :ivar outcomes: one short text per attempt (``"200 success"``, ``"500"``, ``"ConnectError"``).
    :ivar waits: the provider's waits before each retry, unscaled (60, 120, 180 s).
    """

    kind: PushKind
    url: str
    form: dict[str, str]
    attempts: int = 0
    delivered: bool = False
    outcomes: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


async def post_with_retries(
    client: httpx.AsyncClient,
    record: PushRecord,
    *,
    retries: int = 3,
    step: float = 60.0,
    time_scale: float = 1.0,
) -> PushRecord:
    """POST ``record.form`` to ``record.url`` until the receiver acknowledges it.

    The n-th retry waits ``n * step`` seconds times ``time_scale``. Network errors
    count as failed attempts; cancellation passes through.
    """
    for attempt in range(retries + 1):
        if attempt:
            wait = attempt * step
            record.waits.append(wait)
            await anyio.sleep(wait * time_scale)
        record.attempts += 1
        try:
            answer = await post_push(client, record.form, url=record.url)
        except httpx.HTTPError as exc:
            record.outcomes.append(type(exc).__name__)
            continue
        record.outcomes.append(f"{answer.status_code} {answer.body[:40]}".strip())
        if answer.acknowledged:
            record.delivered = True
            break
    return record


class Waker:
    """Wakes a task waiting in its event loop (asyncio or trio), from any thread."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._soon: Callable[[Callable[[], object]], object]
        if sniffio.current_async_library() == "trio":
            import trio

            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._soon = asyncio.get_running_loop().call_soon_threadsafe

    def wake(self) -> None:
        try:
            self._soon(self._event.set)
        except RuntimeError:  # pragma: no cover - the dispatcher's loop already closed
            pass

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()



class PushSettings(Protocol):
    """What the outbox reads from its emulator at each push (users may change it any time)."""

    receipt_url: str | None
    reply_url: str | None
    template_url: str | None
    push_transport: httpx.AsyncBaseTransport | None
    time_scale: float
    push_retries: int
    push_retry_step: float


class Outbox:
    """The pushes an emulator has queued and made (``emulator.outbox``).

    :param settings: where to push and how to retry (the emulator itself).
    :param messages: the accepted messages, oldest first (for receipts and replies).
    :param now: the emulator's time as an aware datetime in China time.
    :param changed: called after each push finishes (the inbox refreshes on it).
    """

    def __init__(
        self,
        settings: PushSettings,
        *,
        messages: Callable[[], Sequence[SentMessage]],
        now: Callable[[], _dt.datetime],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._messages = messages
        self._now = now
        self._changed = changed
        self._lock = threading.Lock()
        self._queue: list[PushRecord] = []
        self._pushes: list[PushRecord] = []
        self._receipted: set[str] = set()
        self._wakers: list[Waker] = []

    @property
    def pushes(self) -> list[PushRecord]:
        """Every push made so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._pushes)

    @property
    def pending(self) -> int:
        """Pushes queued and not yet sent."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._pushes.clear()
            self._receipted.clear()

    def queue_receipt(self, message: SentMessage) -> None:
        """Queue a ``DELIVRD`` receipt for ``message`` (when a receipt URL is set)."""
        url = self._settings.receipt_url
        if url is None:
            return
        form = _receipt_of(message, code=2, msg="DELIVRD", report_time=message.time)
        self._enqueue(PushRecord(kind="receipt", url=url, form=form))

    def queue_review(self, template_id: int, *, approved: bool, reason: str) -> None:
        """Queue a template review push (when a template or receipt URL is set)."""
        url = self._settings.template_url or self._settings.receipt_url
        if url is None:
            return
        form = template_review_form(template_id=template_id, code=2 if approved else 0, msg=reason)
        self._enqueue(PushRecord(kind="template", url=url, form=form))

    def _enqueue(self, record: PushRecord) -> None:
        with self._lock:
            self._queue.append(record)
            wakers = list(self._wakers)
        for waker in wakers:
            waker.wake()

    async def deliver(
        self, smsid: str | None = None, *, code: int = 2, msg: str = "DELIVRD"
    ) -> list[PushRecord]:
        """Push delivery receipts now: for ``smsid``, or for every message not yet receipted.

        :param code: 2 delivered, anything else failed.
        :param msg: the status text (``DELIVRD``, ``UNDELIV``, …).
        :raises RuntimeError: no ``receipt_url`` configured.
        :raises KeyError: ``smsid`` is not an accepted message.
        """
        url = self._settings.receipt_url
        if url is None:
            raise RuntimeError("the emulator has no receipt_url to push to")
        now = self._now()
        messages = self._messages()
        with self._lock:
            if smsid is not None:
                targets = [m for m in messages if m.smsid == smsid]
                if not targets:
                    raise KeyError(smsid)
            else:
                targets = [m for m in messages if m.smsid not in self._receipted]
            chosen = {m.smsid for m in targets}
            self._receipted.update(chosen)
            self._queue = [
                p for p in self._queue if not (p.kind == "receipt" and _serial(p.form) in chosen)
            ]
        records = [
            PushRecord(
                kind="receipt",
                url=url,
                form=_receipt_of(
                    m, code=code, msg=msg, report_time=now
                ),
            )
            for m in targets
        ]
        return await self._post_all(records)

    async def reply(self, number: str, content: str, *, smsid: str | None = None) -> PushRecord:
        """Push an upstream reply from ``number`` (already normalised) now.

        :param smsid: the serial it relates to (default: the last message to that number, or ``"0"``).
        :raises RuntimeError: no reply (or receipt) URL configured.
        """
        url = self._settings.reply_url or self._settings.receipt_url
        if url is None:
            raise RuntimeError("the emulator has no reply_url (or receipt_url) to push to")
        if smsid is None:
            sent = [m for m in self._messages() if m.mobile == number]
            smsid = sent[-1].smsid if sent else "0"
        record = PushRecord(
            kind="reply",
            url=url,
            form=reply_form(mobile=number, content=content, smsid=smsid, reply_time=self._now()),
        )
        return (await self._post_all([record]))[0]

    async def flush(self) -> list[PushRecord]:
        """Push everything queued (automatic receipts, template reviews) and wait for the outcome."""
        with self._lock:
            records, self._queue = self._queue, []
            self._receipted.update(_serial(p.form) for p in records if p.kind == "receipt")
        return await self._post_all(records)

    @asynccontextmanager
    async def pushing(self) -> AsyncIterator[None]:
        """Run a background dispatcher that pushes queued items as they arrive.

        Leaving the block sends what is still queued, then stops the dispatcher.
        """
        waker = Waker()
        async with anyio.create_task_group() as tg:

            async def dispatch() -> None:
                while True:  # bounded by cancellation when the block is left
                    await waker.wait()
                    await self.flush()

            tg.start_soon(dispatch)
            with self._lock:
                self._wakers.append(waker)
            waker.wake()
            try:
                yield
            finally:
                with self._lock:
                    self._wakers.remove(waker)
                tg.cancel_scope.cancel()
        await self.flush()

    async def _post_all(self, records: list[PushRecord]) -> list[PushRecord]:
        if not records:
            return []
        async with httpx.AsyncClient(transport=self._settings.push_transport, timeout=10.0) as client:
            async with anyio.create_task_group() as tg:
                for record in records:
                    tg.start_soon(self._post_one, client, record)
        return records

    async def _post_one(self, client: httpx.AsyncClient, record: PushRecord) -> None:
        try:
            await post_with_retries(
                client,
                record,
                retries=self._settings.push_retries,
                step=self._settings.push_retry_step,
                time_scale=self._settings.time_scale,
            )
        finally:
            with self._lock:
                self._pushes.append(record)
            self._changed()
