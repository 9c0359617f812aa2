"""Fault injection for the emulator: what can go wrong with one call, and when it does.

Owns :class:`Fault` (one kind of failure), its constructors (:func:`latency`,
:func:`http_error`, :func:`garbage`, :func:`disconnect`, :func:`hang`) and
:class:`FaultPlan`, the emulator's schedule of faults (``emulator.faults``):
each entry fires for a number of calls, with a probability, or both.
Pure bookkeeping: the front ends (httpx transport, ASGI app, respx side effect)
act the faults out.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Fault",
    "FaultKind",
    "FaultPlan",
    "ScheduledFault",
    "disconnect",
    "garbage",
    "hang",
    "http_error",
    "latency",
]

FaultKind = Literal["latency", "http_error", "garbage", "disconnect", "hang"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One failure acted out on one call.

    :ivar kind: ``"latency"``, ``"http_error"``, ``"garbage"``, ``"disconnect"`` or ``"hang"``.
    :ivar processed: whether the emulator's model handles the call before the fault
        (the message is then recorded, billed and counted, as when the provider
        accepted it but the answer was lost).
    :ivar seconds: the added delay (``latency``), in the emulator clock's seconds.
    :ivar status: the HTTP status (``http_error``).
    :ivar body: the body answered (``http_error``, ``garbage``).
    """

    kind: FaultKind
    processed: bool
    seconds: float = 0.0
    status: int = 200
    body: bytes = b""


def latency(seconds: float) -> Fault:
    """Answer normally, ``seconds`` later (slept on the emulator's clock).

    With the emulator's default clock (a :class:`~ihuyi_async.FakeClock` with
    ``auto_advance=True``) the answer comes at once and the clock moves by ``seconds``;
    with ``auto_advance=False`` it comes when the test advances the clock past the delay.
    """
    if seconds < 0:
        raise ValueError("latency takes a non-negative number of seconds")
    return Fault(kind="latency", processed=True, seconds=float(seconds))


def http_error(status: int = 502, body: bytes = b"<html><body>502 Bad Gateway</body></html>",
               *, processed: bool = False) -> Fault:
    """Answer an HTTP error status (a gateway in front of the provider failing).

    :param processed: also let the model handle the call (default: it never reached the provider).
    """
    if not 100 <= status <= 599:
        raise ValueError(f"not an HTTP status: {status}")
    return Fault(kind="http_error", processed=processed, status=status, body=body)


def garbage(body: bytes = b"<html><title>Service Temporarily Unavailable</title></html>",
            *, processed: bool = False) -> Fault:
    """Answer HTTP 200 with a body that is neither the provider's XML nor its JSON."""
    return Fault(kind="garbage", processed=processed, body=body)


def disconnect(*, processed: bool = True) -> Fault:
    """Close the connection after the request was read, without answering.

    By default the model handled the call first: the message was accepted and billed,
    and the client cannot know (``DeliveryUnknownError`` territory).
    """
    return Fault(kind="disconnect", processed=processed)


def hang(*, processed: bool = True) -> Fault:
    """Never answer: the call waits until the client gives up (its read timeout) or is cancelled."""
    return Fault(kind="hang", processed=processed)


@dataclass(slots=True, kw_only=True)
class ScheduledFault:
    """One entry of a :class:`~ihuyi_async.testing.FaultPlan`.

    :ivar remaining: calls left to fault (``None``: unlimited).
    :ivar probability: chance that a matching call is faulted (1.0: every one).
    :ivar method: only calls of this provider method (``"Submit"``, ``"GetNum"``,
        ``"AddTemplate"``); ``None`` for any.
    :ivar fired: how many calls this entry faulted so far.
    """

    fault: Fault
    remaining: int | None
    probability: float
    method: str | None
    fired: int = field(default=0)

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


class FaultPlan:
    """The emulator's fault schedule; entries are tried in the order they were added.

    Thread-safe. A call is faulted by the first live entry that matches its method
    and wins its probability draw (draws come from a seeded :class:`random.Random`,
    so a run is reproducible).
    """

    __slots__ = ("_entries", "_lock", "_random")

    def __init__(self, *, seed: int | None = 0) -> None:
        self._entries: list[ScheduledFault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(
        self,
        fault: Fault,
        *,
        times: int | None = 1,
        probability: float = 1.0,
        method: str | None = None,
    ) -> ScheduledFault:
        """Schedule ``fault``.

        :param times: how many calls to fault (``None``: no limit, e.g. with a probability).
        :param probability: the chance each matching call is faulted, in ``(0, 1]``.
        :param method: restrict to one provider method (case-insensitive).
        :raises ValueError: ``times`` below 1 or a probability outside ``(0, 1]``.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for no limit)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        entry = ScheduledFault(
            fault=fault,
            remaining=times,
            probability=float(probability),
            method=method.lower() if method else None,
        )
        with self._lock:
            self._entries.append(entry)
        return entry

    def pick(self, method: str | None) -> Fault | None:
        """The fault for the next call of ``method``, consuming one use of its entry."""
        wanted = (method or "").lower()
        with self._lock:
            for entry in self._entries:
                if entry.exhausted or (entry.method is not None and entry.method != wanted):
                    continue
                if entry.probability < 1.0 and self._random.random() >= entry.probability:
                    continue
                entry.fired += 1
                if entry.remaining is not None:
                    entry.remaining -= 1
                return entry.fault
        return None

    def remove(self, entry: ScheduledFault) -> None:
        """Remove one entry (from :attr:`entries`); nothing when it is already gone."""
        with self._lock:
            self._entries = [e for e in self._entries if e is not entry]

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._entries.clear()

    @property
    def entries(self) -> list[ScheduledFault]:
        """A snapshot of the schedule."""
        with self._lock:
            return list(self._entries)

    @property
    def unused(self) -> list[ScheduledFault]:
        """Entries scheduled for a number of calls that did not all happen."""
        with self._lock:
            return [e for e in self._entries if e.remaining is not None and e.remaining > 0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"FaultPlan(entries={len(self)}, unused={len(self.unused)})"
