"""The fault matrix's runner, shared by ``test_faults.py`` and ``benchmarks/reliability.py``.

One case: a fresh client (public API only) against :class:`FaultServer` with one
fault; it records what a user would see (exception type, reason, ``.sent``), what
the server saw (request heads per method), the wall time, whether the limiter slot
was kept or given back, and whether the next call on the same client works once
the server is healthy again. The tests assert on the record; the benchmark prints it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from ihuyi_async import DeliveryUnknownError, FakeClock, IhuyiClient, IhuyiError, TransportError
from ihuyi_async.limiter import Limiter

from .fault_server import FaultServer

__all__ = ["ACCOUNT", "API_KEY", "TEXT", "FaultCase", "make_client", "number", "run_fault_case"]

ACCOUNT = "fault-apiid"
API_KEY = "fault-apikey"
TEXT = "您的验证码是：1234。请不要把验证码泄露给其他人。"
TIMEOUT = 0.5
#: The documented default deadline for ``timeout=0.5``: twice the largest phase.
DEADLINE = 1.0
#: A hang guard well past the deadline: a call still running then is reported as a hang.
GUARD = DEADLINE + 4.0

_numbers = iter(range(10**7))


def number() -> str:
    """A fresh mainland mobile number (each used once per process)."""
    return f"139{next(_numbers):08d}"


def make_client(server: FaultServer, backend: str, **kwargs: Any) -> IhuyiClient:
    """A client on ``server`` with small timeouts and a limiter on a frozen clock.

    The limiter's clock never moves, so a slot kept by a failed send still blocks
    a second send to the same number (per-second rule), and a refunded one does not.
    """
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("limiter", Limiter(clock=FakeClock(), wait=False))
    return IhuyiClient(ACCOUNT, API_KEY, base_url=server.url, backend=backend, **kwargs)  # type: ignore[arg-type]


@dataclass
class FaultCase:
    """What one faulted call did."""

    kind: str
    backend: str
    call: str  # "send", "balance" or "add_template"
    error: str = "-"  # exception class name, "-" when the call succeeded, "hang" past the guard
    reason: str = ""  # DeliveryUnknownError.reason, or the TransportError's message
    sent: object = "n/a"  # the exception's .sent (False / None), "n/a" if none
    seen: dict[str, int] = field(default_factory=dict)  # request heads by method / path
    wall: float = 0.0
    slot: str = "-"  # "kept" / "refunded" / "-" (no limiter involved)
    next_ok: bool = False
    next_error: str = ""
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def submits(self) -> int:
        return self.seen.get("Submit", 0)

    def row(self) -> str:
        sent = str(self.sent)  # False, None, True or "n/a"
        reason = f" ({self.reason})" if self.reason else ""
        heads = ", ".join(f"{k} {v}" for k, v in sorted(self.seen.items())) or "0"
        nxt = "ok" if self.next_ok else f"FAILS: {self.next_error}"
        return (
            f"| {self.kind} | {self.backend} | {self.call} | {self.error}{reason} | {sent} | "
            f"{heads} | {self.wall:.2f} s | {self.slot} | {nxt} |"
        )


ROW_HEADER = (
    "| fault | backend | call | exception (reason) | .sent | requests seen | wall | "
    "limiter slot | next call |\n|---|---|---|---|---|---|---|---|---|"
)


def _describe(case: FaultCase, exc: BaseException) -> None:
    case.exception = exc
    case.error = type(exc).__name__
    if isinstance(exc, DeliveryUnknownError):
        case.reason = exc.reason
        case.sent = exc.sent
    elif isinstance(exc, TransportError):
        case.reason = str(exc)[:80]
        case.sent = exc.sent
    else:
        case.reason = str(exc)[:80]


async def _guarded_call(
    client: IhuyiClient, call: str, mobile: str, guard: float
) -> BaseException | None:
    """Run one call under the hang guard; the exception it raised (``None``: success)."""
    with anyio.move_on_after(guard) as scope:
        try:
            if call == "send":
                await client.send(mobile, TEXT)
            elif call == "add_template":
                await client.add_template("您的验证码是：【变量】。")
            else:
                await client.balance()
        except IhuyiError as exc:
            return exc
        except Exception as exc:  # a foreign exception is a finding, recorded as such
            return exc
    if scope.cancelled_caught:
        return TimeoutError(f"no outcome within {guard:g} s: the call hangs")
    return None


async def run_fault_case(
    server: FaultServer,
    kind: str,
    backend: str,
    *,
    call: str = "send",
    guard: float = GUARD,
    **client_kwargs: Any,
) -> FaultCase:
    """One faulted call on a fresh client, then a healthy one on the same client."""
    case = FaultCase(kind=kind, backend=backend, call=call)
    server.set_fault("healthy")
    client = make_client(server, backend, **client_kwargs)
    limiter = client.limiter
    try:
        if kind == "keepalive_race":
            warm = await _guarded_call(client, call, number(), guard)
            if warm is not None:
                raise AssertionError(f"the warm-up call failed: {warm!r}")
        server.reset_counts()
        server.set_fault(kind)
        mobile = number()
        start = time.monotonic()
        exc = await _guarded_call(client, call, mobile, guard)
        case.wall = time.monotonic() - start
        if exc is not None:
            _describe(case, exc)
        if isinstance(exc, TimeoutError):
            case.error = "hang"
        case.seen = dict(server.seen)
        if call == "send" and limiter is not None:
            probe = await limiter.try_acquire(mobile)
            if probe is None:
                case.slot = "kept"
            else:
                case.slot = "refunded"
                await probe.refund()
        server.set_fault("healthy")
        nxt = await _guarded_call(client, call, number(), guard)
        case.next_ok = nxt is None
        case.next_error = "" if nxt is None else f"{type(nxt).__name__}: {str(nxt)[:80]}"
    finally:
        with anyio.move_on_after(5, shield=True):
            await client.aclose()
        server.set_fault("healthy")
    return case


def limits(**kwargs: Any) -> httpx.Limits:
    """``httpx.Limits`` with the library's pool sizes and the given overrides."""
    values: dict[str, Any] = {"max_connections": 100, "max_keepalive_connections": 100}
    values.update(kwargs)
    return httpx.Limits(**values)
