"""Every fault kind × both backends, against a real loopback server written for it (#12).

For each: the exception type and its "could it have arrived?" semantics, how many
requests the server saw (never two for one send), the wall time bounded by the
call's deadline, whether the limiter slot was kept or given back, and that the
next call on the same client works once the server is healthy again.

The client runs with ``timeout=0.5`` and the documented default deadline (twice
the largest phase: 1.0 s); bounds are generous (deadline + 1 s): they catch hangs
and unbounded calls, they are not speed claims.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from ihuyi_async import DeliveryUnknownError, IhuyiClient, RetryPolicy, TransportError

from .fault_server import FAULTS, REDIRECT_TARGET, FaultServer
from .trials import DEADLINE, TEXT, FaultCase, make_client, number, run_fault_case

pytestmark = pytest.mark.anyio

BACKENDS = ("httpx", "aiohttp", "native")
BOUND = DEADLINE + 1.0

#: fault -> the reasons a DeliveryUnknownError may give (None: any).
UNKNOWN_REASONS: dict[str, set[str] | None] = {
    "hang": {"read_timeout", "deadline"},
    "close_after_read": None,
    "garbage": None,
    "trickle": {"deadline"},
    "http_5xx": {"http_status"},
    "reset_mid_body": None,
    "truncated": None,
    "oversized": {"oversized"},
    "oversized_chunked": {"oversized"},
    "redirect": {"http_status"},
    "chunked_endless_fast": {"oversized", "deadline"},
    "chunked_endless_slow": {"deadline"},
    "chunked_slow_finite": {"deadline"},
    "keepalive_race": None,
}
assert set(UNKNOWN_REASONS) | {"refused"} == set(FAULTS)


@pytest.fixture(params=["asyncio", pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    # the aiohttp and native backends are asyncio only; trio is covered by the cancellation
    # test; the whole matrix runs on uvloop too (#19)
    if isinstance(request.param, tuple):
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def _explain(case: FaultCase) -> str:
    return f"{case.row()}  [{case.exception!r}]"


# --------------------------------------------------------------------------- Submit


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", FAULTS)
async def test_send_under_fault(server: FaultServer, kind: str, backend: str) -> None:
    case = await run_fault_case(server, kind, backend)
    why = _explain(case)
    assert case.error != "hang", why
    assert case.wall <= BOUND, why
    if kind == "refused":
        assert isinstance(case.exception, TransportError), why
        assert case.exception.sent is False, why
        assert case.submits == 0, why
        assert case.slot == "refunded", why
    else:
        assert isinstance(case.exception, DeliveryUnknownError), why
        reasons = UNKNOWN_REASONS[kind]
        assert reasons is None or case.exception.reason in reasons, why
        assert case.submits == 1, why  # seen once: never twice for one send
        assert case.slot == "kept", why
    if kind == "redirect":
        assert case.seen.get(REDIRECT_TARGET, 0) == 0, why  # never followed
    assert set(case.seen) <= {"Submit"}, why
    assert case.next_ok, why


@pytest.mark.parametrize("backend", BACKENDS)
async def test_explicit_deadline_ends_a_trickled_answer(server: FaultServer, backend: str) -> None:
    """``deadline=`` is the bound, not the read timeout: 0.6 s against a 12 s trickle."""
    case = await run_fault_case(server, "trickle", backend, timeout=5.0, deadline=0.6)
    why = _explain(case)
    assert isinstance(case.exception, DeliveryUnknownError), why
    assert case.exception.reason == "deadline", why
    assert 0.5 <= case.wall <= 0.6 + 1.0, why
    assert case.submits == 1 and case.slot == "kept" and case.next_ok, why


@pytest.mark.parametrize("backend", BACKENDS)
async def test_waiting_for_a_pooled_connection_is_not_sent(
    server: FaultServer, backend: str
) -> None:
    """One connection, held by a hung send: a second send waits for the pool (pool
    timeout 0.3 s, retried while provably unsent), ends as not sent with its slot given
    back, and the server saw only the first request."""
    server.set_fault("hang")
    server.reset_counts()
    client = make_client(
        server,
        backend,
        timeout=httpx.Timeout(2.0, pool=0.3),
        limits=httpx.Limits(max_connections=1),
        retry=RetryPolicy(backoff=0.01),
    )
    limiter = client.limiter
    assert limiter is not None
    first, second = number(), number()
    holder = anyio.CancelScope()
    waited: BaseException | None = None

    async def hold() -> None:
        with holder:
            try:
                await client.send(first, TEXT)
            except DeliveryUnknownError:
                pass  # its read timeout came first: the assertions below say what the other did

    try:
        start = time.monotonic()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                await anyio.sleep(0.1)
                try:
                    await client.send(second, TEXT)
                except Exception as exc:
                    waited = exc
                wall = time.monotonic() - start
                holder.cancel()  # the hung send, cancelled after writing: keeps its slot
        why = f"{waited!r}, seen {dict(server.seen)}, {wall:.2f} s"
        assert isinstance(waited, TransportError) and waited.sent is False, why
        assert server.count("Submit") == 1, why
        assert wall <= 0.1 + BOUND + 1.0, why
        assert await limiter.try_acquire(first) is None, "the written send gave its slot back"
        probe = await limiter.try_acquire(second)
        assert probe is not None, "the unsent send kept its slot"
        server.set_fault("healthy")
        with anyio.fail_after(5):
            result = await client.send(number(), TEXT)
        assert result.smsid.isdigit()
    finally:
        server.set_fault("healthy")
        await client.aclose()


# --------------------------------------------------------------------------- GetNum

BALANCE_FAULTS = ("refused", "hang", "close_after_read", "trickle", "chunked_endless_slow")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", BALANCE_FAULTS)
async def test_balance_under_fault(server: FaultServer, kind: str, backend: str) -> None:
    """GetNum is safe to retry: retried on any transport failure, within the deadline,
    then a TransportError (``.sent`` False when nothing left, None when it may have)."""
    case = await run_fault_case(server, kind, backend, call="balance")
    why = _explain(case)
    assert case.error != "hang", why
    assert isinstance(case.exception, TransportError), why
    assert case.wall <= BOUND, why
    seen = case.seen.get("GetNum", 0)
    if kind == "refused":
        assert case.exception.sent is False and seen == 0, why
    else:
        assert case.exception.sent is None, why
        assert 1 <= seen <= RetryPolicy().max_attempts, why
    assert set(case.seen) <= {"GetNum"}, why
    assert case.next_ok, why


@pytest.mark.parametrize("backend", BACKENDS)
async def test_balance_is_retried_after_a_lost_answer(server: FaultServer, backend: str) -> None:
    """A closed connection on the first GetNum, a healthy server after: the retry answers."""
    server.set_fault("healthy")
    client = make_client(server, backend, retry=RetryPolicy(backoff=0.05))
    try:
        with anyio.fail_after(5):
            await client.balance()  # warm: one pooled connection
        server.reset_counts()
        server.set_fault("keepalive_race")  # the reused connection is dropped once …
        with anyio.fail_after(BOUND + 1):
            balance = await client.balance()  # … and the retry opens a new one
        assert balance.num == 100
        assert server.count("GetNum") == 2
    finally:
        server.set_fault("healthy")
        await client.aclose()


# --------------------------------------------------------------------------- AddTemplate

TEMPLATE_FAULTS = ("refused", "close_after_read", "trickle", "oversized", "http_5xx")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", TEMPLATE_FAULTS)
async def test_add_template_under_fault(server: FaultServer, kind: str, backend: str) -> None:
    """AddTemplate is not idempotent either: as a send, unknown once it may have left."""
    case = await run_fault_case(server, kind, backend, call="add_template")
    why = _explain(case)
    assert case.error != "hang", why
    assert case.wall <= BOUND, why
    seen = case.seen.get("AddTemplate", 0)
    if kind == "refused":
        assert isinstance(case.exception, TransportError), why
        assert case.exception.sent is False and seen == 0, why
    else:
        assert isinstance(case.exception, DeliveryUnknownError), why
        assert seen == 1, why  # never retried once it may have left
    assert set(case.seen) <= {"AddTemplate"}, why
    assert case.next_ok, why


# --------------------------------------------------------------------------- keep-alive timing race


async def _reuse_after(client: IhuyiClient, idle: float) -> BaseException | None:
    with anyio.fail_after(5):
        await client.send(number(), TEXT)
    await anyio.sleep(idle)
    try:
        with anyio.fail_after(5):
            await client.send(number(), TEXT)
    except DeliveryUnknownError as exc:
        return exc
    return None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_keepalive_race_when_expiry_equals_the_server_idle_timeout(backend: str) -> None:
    """Scaled down (server idle timeout 1.5 s, 0.5 s link latency): a client whose expiry
    equals the server's idle timeout reuses a connection the server already gave up,
    and the send ends unknown; at 0.8 × (the default's 4 s : 5 s) it opens a new one."""
    with FaultServer(idle_timeout=1.5, close_lag=0.5) as srv:
        equal = make_client(srv, backend, limits=httpx.Limits(keepalive_expiry=1.5))
        try:
            lost = await _reuse_after(equal, 1.25)
        finally:
            await equal.aclose()
        assert isinstance(lost, DeliveryUnknownError), "expected the race to lose the send"
        assert srv.dropped == 1 and srv.count("Submit") == 2

        srv.reset_counts()
        below = make_client(srv, backend, limits=httpx.Limits(keepalive_expiry=1.2))
        try:
            assert await _reuse_after(below, 1.25) is None
        finally:
            await below.aclose()
        assert srv.dropped == 0 and srv.count("Submit") == 2


async def test_default_keepalive_expiry_avoids_uvicorns_idle_timeout() -> None:
    """A server with uvicorn's 5 s keep-alive timeout (0.5 s link latency): a send 4.75 s
    after the previous one finds the default client already dropped that connection
    (both backends at once, so the test waits 5 s once)."""
    with FaultServer(idle_timeout=5.0, close_lag=0.5) as srv:
        clients = [make_client(srv, backend) for backend in BACKENDS]
        results: list[BaseException | None] = [None] * len(BACKENDS)

        async def trial(i: int) -> None:
            results[i] = await _reuse_after(clients[i], 4.75)

        try:
            async with anyio.create_task_group() as tg:
                for i in range(len(clients)):
                    tg.start_soon(trial, i)
        finally:
            for client in clients:
                await client.aclose()
        assert results == [None] * len(BACKENDS), results
        assert srv.dropped == 0 and srv.count("Submit") == 2 * len(BACKENDS)
