"""The demo behind ``ihuyi-async demo``: a realistic load, the real client, the emulator on loopback.

Owns :func:`run_demo`, :class:`DemoSummary` and :func:`format_summary`. Needs no
credentials and no internet: it starts :class:`~ihuyi_async.testing.Emulator` on
127.0.0.1 (a real socket, uvicorn in a thread) and sends through
:class:`~ihuyi_async.IhuyiClient` with its default limiter, every message at once.

The load (seeded, so a run is reproducible): ``numbers`` recipients, most getting
a few messages each and a few "hot" ones getting more than the provider's 5 per
day; verification codes, notifications, long (multi-segment) messages; a share
of invalid numbers, of messages with emoji, of numbers on the emulator's
blacklist, and of messages with a word the emulator treats as sensitive. Local
rules refuse what the provider would refuse before any request; the emulator
refuses the rest with the provider's codes.

The per-second rule paces each number at 1 message per second, so the run lasts
about as many seconds as the busiest number has messages (5 or so): the
messages-per-second figure is a property of the load, not a benchmark.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from .._batch import ProgressHook
from .._clock import Clock, SystemClock
from .._exceptions import ApiError, LocalRateLimitError

__all__ = ["DemoSummary", "format_summary", "run_demo"]

_ACCOUNT, _KEY = "demo-apiid", "demo-apikey"
_SENSITIVE = "代开发票"
_NOTIFICATIONS = (
    "【互亿无线】您的订单{n}已发货，请注意查收。",
    "【互亿无线】您预约的服务将于明天{h}点开始，请准时到达。",
    "【互亿无线】您的账户于今日{h}点登录，如非本人操作请修改密码。",
)
_LONG = (
    "【互亿无线】尊敬的用户，您的会员权益即将到期。为感谢您一直以来的支持，我们为您准备了专属续费礼包，"
    "包含三个月免费体验和专属客服通道，订单号{n}。详情请登录官网查看，如有疑问请联系客服。"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSummary:
    """What a demo run did and what the emulator saw.

    :ivar attempted: messages the load tried to send.
    :ivar sent: messages the provider (the emulator) accepted.
    :ivar refused_locally: refusals before any request, by ``"<code> <rule or reason>"``.
    :ivar refused_by_provider: refusals by the emulator, by provider code.
    :ivar failed: sends that failed otherwise, by exception class (none expected on loopback).
    :ivar elapsed: wall-clock seconds from the first send to the last answer.
    :ivar arrived_messages: messages in the emulator's log.
    :ivar arrived_numbers: distinct numbers that received at least one.
    :ivar arrived_segments: segments the emulator billed.
    :ivar max_per_number: most messages any one number received.
    """

    attempted: int
    numbers: int
    sent: int
    refused_locally: dict[str, int] = field(default_factory=dict)
    refused_by_provider: dict[int, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    elapsed: float
    url: str
    backend: str
    balance_before: int
    balance_after: int
    arrived_messages: int
    arrived_numbers: int
    arrived_segments: int
    arrived_verification: int
    max_per_number: int

    @property
    def per_second(self) -> float:
        """Accepted messages per wall-clock second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def refused(self) -> int:
        """Refusals, local and by the provider."""
        return sum(self.refused_locally.values()) + sum(self.refused_by_provider.values())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (provider codes become string keys, ``per_second`` included)."""
        return {
            "attempted": self.attempted,
            "numbers": self.numbers,
            "sent": self.sent,
            "refused_locally": dict(self.refused_locally),
            "refused_by_provider": {str(k): v for k, v in self.refused_by_provider.items()},
            "failed": dict(self.failed),
            "elapsed": round(self.elapsed, 3),
            "per_second": round(self.per_second, 1),
            "url": self.url,
            "backend": self.backend,
            "balance_before": self.balance_before,
            "balance_after": self.balance_after,
            "emulator": {
                "messages": self.arrived_messages,
                "numbers": self.arrived_numbers,
                "segments": self.arrived_segments,
                "verification": self.arrived_verification,
                "max_per_number": self.max_per_number,
            },
        }


@dataclass(frozen=True, slots=True)
class _Item:
    mobile: str
    content: str
    kind: str | None


def _load(messages: int, numbers: int, rng: random.Random) -> tuple[list[_Item], list[str]]:
    """Build the load; returns the items and the numbers to blacklist."""
    pool: list[str] = []
    seen: set[str] = set()
    while len(pool) < numbers:  # bounded: 10^9 candidates for at most a few thousand picks
        mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        if mobile not in seen:
            seen.add(mobile)
            pool.append(mobile)
    hot = pool[: max(1, numbers // 50)]  # 2 %: get 8 messages, 3 over the daily 5
    blacklisted = pool[len(hot) : len(hot) + max(1, numbers // 100)]
    recipients: list[str] = []
    for mobile in hot:
        recipients.extend([mobile] * 8)
    rest = pool[len(hot) :]
    index = 0
    while len(recipients) < messages:  # bounded by ``messages``
        recipients.append(rest[index % len(rest)])
        index += 1
    recipients = recipients[:messages]
    items: list[_Item] = []
    for n, mobile in enumerate(recipients):
        roll = rng.random()
        if roll < 0.02:
            mobile = rng.choice(["1234567", "2" + mobile[1:], mobile[:-1], "+1 415 555 0100"])
        if roll < 0.40:
            items.append(_Item(mobile, f"【互亿无线】您的验证码是：{rng.randrange(10**6):06d}。请不要把验证码泄露给其他人。", "verification"))
        elif roll < 0.45:
            items.append(_Item(mobile, _LONG.format(n=20250000 + n), None))
        elif roll < 0.47:
            items.append(_Item(mobile, "【互亿无线】周末大促，全场五折 🎉", None))
        elif roll < 0.48:
            items.append(_Item(mobile, f"【互亿无线】专业{_SENSITIVE}，联系{n}", None))
        else:
            text = rng.choice(_NOTIFICATIONS).format(n=20250000 + n, h=rng.randrange(8, 20))
            items.append(_Item(mobile, text, None))
    rng.shuffle(items)
    return items, blacklisted


class _Tally:
    """The demo's outcomes: sent, refused locally (by reason), by the provider (by code), failed."""

    def __init__(self) -> None:
        self.sent = 0
        self.refused_locally: Counter[str] = Counter()
        self.refused_by_provider: Counter[int] = Counter()
        self.failed: Counter[str] = Counter()

    def add(self, error: BaseException | None) -> None:
        if error is None:
            self.sent += 1
        elif isinstance(error, LocalRateLimitError):
            self.refused_locally[f"{error.code} {error.rule}"] += 1
        elif isinstance(error, ApiError):
            if error.local:
                self.refused_locally[f"{error.code} {_REASONS.get(error.code, 'invalid')}"] += 1
            else:
                self.refused_by_provider[error.code] += 1
        else:
            self.failed[type(error).__name__] += 1


async def run_demo(
    *,
    messages: int = 2000,
    numbers: int = 500,
    seed: int = 2025,
    balance: int = 100_000,
    backend: Literal["httpx", "aiohttp"] | None = None,
    clock: Clock | None = None,
    on_progress: ProgressHook | None = None,
) -> DemoSummary:
    """Start the emulator on loopback and send a realistic load through the real client.

    :param messages: how many sends to attempt, all at once.
    :param numbers: how many distinct recipients.
    :param seed: seed of the load (same seed, same load).
    :param balance: the emulator account's starting balance.
    :param backend: the client's HTTP backend; default ``"aiohttp"`` when it is installed
        and the event loop is asyncio (about three times faster under this much
        concurrency), else ``"httpx"``.
    :param clock: the clock shared by the client and the emulator (default: the wall
        clock; tests pass a :class:`~ihuyi_async.FakeClock` with ``auto_advance=True``
        so the per-second pacing costs no real time).
    :param on_progress: passed to :meth:`IhuyiClient.send_many` (the CLI draws a progress bar).
    :raises ValueError: ``messages`` or ``numbers`` below 1.
    :raises RuntimeError: the loopback server could not start.

    .. versionadded:: 0.1.0
    """
    if messages < 1 or numbers < 1:
        raise ValueError("messages and numbers must be at least 1")
    from .._client import IhuyiClient
    from ..testing import Emulator, EmulatorServer, Limits

    if backend is None:
        backend = _default_backend()
    rng = random.Random(seed)
    items, blacklisted = _load(messages, numbers, rng)
    clock = clock if clock is not None else SystemClock()
    # The client's limiter paces each number at 1/s; the emulator's own per-second
    # check is off so network jitter on loopback cannot turn that pacing into 4080s.
    emulator = Emulator(
        {_ACCOUNT: _KEY},
        balance,
        clock=clock,
        limits=Limits(per_second=None),
        blacklist=blacklisted,
        sensitive_words=[_SENSITIVE],
    )
    tally = _Tally()
    async with EmulatorServer(emulator) as server:
        async with IhuyiClient(
            _ACCOUNT,
            _KEY,
            base_url=server.url,
            clock=clock,
            backend=backend,
        ) as client:
            started = time.perf_counter()
            batch = ({"mobile": i.mobile, "content": i.content, "kind": i.kind} for i in items)
            async for result in client.send_many(
                batch, concurrency=len(items), on_progress=on_progress
            ):
                tally.add(result.error)
            elapsed = time.perf_counter() - started
        arrived = emulator.messages
        per_number = Counter(m.mobile for m in arrived)
        return DemoSummary(
            attempted=len(items),
            numbers=numbers,
            sent=tally.sent,
            refused_locally=dict(tally.refused_locally.most_common()),
            refused_by_provider=dict(tally.refused_by_provider.most_common()),
            failed=dict(tally.failed.most_common()),
            elapsed=elapsed,
            url=server.url,
            backend=backend,
            balance_before=balance,
            balance_after=emulator.balance_of(_ACCOUNT),
            arrived_messages=len(arrived),
            arrived_numbers=len(per_number),
            arrived_segments=sum(m.segments for m in arrived),
            arrived_verification=sum(m.verification for m in arrived),
            max_per_number=max(per_number.values(), default=0),
        )


def _default_backend() -> Literal["httpx", "aiohttp"]:
    import importlib.util

    import sniffio

    if sniffio.current_async_library() == "asyncio" and importlib.util.find_spec("aiohttp"):
        return "aiohttp"
    return "httpx"


_REASONS = {
    403: "empty number",
    404: "empty content",
    406: "invalid number",
    4073: "too long",
    4074: "emoji",
}


def format_summary(summary: DemoSummary) -> str:
    """Render a :class:`DemoSummary` as plain text (no colours, fixed-width friendly)."""
    from .._codes import lookup

    lines = [
        f"ihuyi-async demo: {summary.attempted} messages to {summary.numbers} numbers, all at once,",
        f"through the real client ({summary.backend} backend, default limiter)",
        f"to the emulator on {summary.url} (a real loopback socket)",
        "",
        f"  sent (accepted by the provider)   {summary.sent:>6}",
        f"  refused locally, no request made  {sum(summary.refused_locally.values()):>6}",
    ]
    for reason, count in summary.refused_locally.items():
        lines.append(f"      {reason:<30}{count:>6}")
    lines.append(f"  refused by the provider           {sum(summary.refused_by_provider.values()):>6}")
    for code, count in summary.refused_by_provider.items():
        lines.append(f"      {code:<6}{lookup(code).description[:40]:<24}{count:>6}")
    for name, count in summary.failed.items():
        lines.append(f"  failed: {name:<25}{count:>6}")
    lines += [
        "",
        f"  wall time {summary.elapsed:.2f} s, {summary.per_second:.0f} messages/s accepted "
        "(each number is paced at 1/s)",
        "",
        "what the emulator saw:",
        f"  messages {summary.arrived_messages} to {summary.arrived_numbers} numbers "
        f"({summary.arrived_verification} verification codes), "
        f"at most {summary.max_per_number} per number",
        f"  segments billed {summary.arrived_segments}; balance "
        f"{summary.balance_before} -> {summary.balance_after}",
    ]
    return "\n".join(lines)
