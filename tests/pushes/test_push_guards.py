"""Each guard, through the ASGI app in-process (asyncio and trio).

Every test posts something the guard must stop and checks both the status and
that no handler ran: a guard that is bypassed fails its test.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from ihuyi_async.pushes import (
    DeliveryReceipt,
    PushReceiver,
    Reply,
)
from ihuyi_async.testing import post_push, receipt_form, reply_form

pytestmark = pytest.mark.anyio

SMSID = "16842079209571524017"
FORM = receipt_form(smsid=SMSID, mobile="13800138000", report_time="2026-01-01 12:00:00")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Calls:
    def __init__(self) -> None:
        self.receipts: list[DeliveryReceipt] = []
        self.replies: list[Reply] = []

    async def on_receipt(self, receipt: DeliveryReceipt) -> None:
        self.receipts.append(receipt)

    async def on_reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def receiver(self, **kwargs: Any) -> PushReceiver:
        return PushReceiver(self.on_receipt, self.on_reply, **kwargs)


def client(app: PushReceiver, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://push.test")


# -- token ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("/", False),
        ("/s3cret-T0ken/", True),
        ("/s3cret-T0ken", True),
        ("/s3cret-T0ke", False),
        ("/s3cret-T0ken-", False),
        ("/s3cret-T0ken/extra", False),
        ("/?token=s3cret-T0ken", True),
        ("/?token=S3CRET-T0KEN", False),
        ("/?token=", False),
        ("/?tok=s3cret-T0ken", False),
        ("/other?x=1&token=s3cret-T0ken", True),
    ],
)
async def test_token_must_match_in_path_or_query(path: str, accepted: bool) -> None:
    calls = Calls()
    async with client(calls.receiver(token="s3cret-T0ken")) as c:
        answer = await post_push(c, FORM, url=path)
    if accepted:
        assert answer.acknowledged
        assert len(calls.receipts) == 1
    else:
        assert answer.status_code == 403
        assert answer.body == "forbidden"
        assert calls.receipts == []


async def test_token_query_parameter_name_is_configurable() -> None:
    calls = Calls()
    async with client(calls.receiver(token="abc", token_param="key")) as c:
        assert (await post_push(c, FORM, url="/?token=abc")).status_code == 403
        assert (await post_push(c, FORM, url="/?key=abc")).acknowledged


async def test_token_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # looked up at call time
    calls = Calls()
    async with client(calls.receiver(token="tok")) as c:
        assert (await post_push(c, FORM, url="/tok")).acknowledged
    assert (b"tok", b"tok") in seen


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        PushReceiver(on_receipt=print, token="")


# -- source networks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "accepted"),
    [
        ("10.1.2.3", None, True),
        ("127.0.0.1", None, False),
        # X-Forwarded-For from a peer that is not a trusted proxy: ignored.
        ("198.51.100.9", "10.1.2.3", False),
        # From the trusted proxy: the right-most untrusted hop is the client.
        ("192.0.2.1", "10.1.2.3", True),
        ("192.0.2.1", "198.51.100.9", False),
        # An attacker prepending an allowed address gains nothing.
        ("192.0.2.1", "10.1.2.3, 198.51.100.9", False),
        # Trusted hops are skipped from the right.
        ("192.0.2.1", "10.1.2.3, 192.0.2.7", True),
        ("192.0.2.1", "garbage", False),
        ("192.0.2.1", "", False),  # the proxy itself is not allowed
        ("::ffff:10.9.9.9", None, True),
        ("2001:db8::5", None, True),
        ("2001:db9::5", None, False),
    ],
)
async def test_allow_list_and_forwarded_for(
    peer: str, forwarded: str | None, accepted: bool
) -> None:
    calls = Calls()
    receiver = calls.receiver(
        allowed_networks=["10.0.0.0/8", "2001:db8::/32"],
        trusted_proxies=["192.0.2.0/28"],
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else None
    async with client(receiver, peer=peer) as c:
        answer = await post_push(c, FORM, headers=headers)
    assert answer.status_code == (200 if accepted else 403)
    assert len(calls.receipts) == (1 if accepted else 0)


async def test_several_forwarded_for_headers_are_read_as_one_list() -> None:
    calls = Calls()
    receiver = calls.receiver(allowed_networks=["10.0.0.0/8"], trusted_proxies=["192.0.2.1"])
    transport = httpx.ASGITransport(app=receiver, client=("192.0.2.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = urlencode(FORM).encode()
        headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-for", "10.0.0.5"),
            ("x-forwarded-for", "198.51.100.9"),
        ]
        answer = await c.post("/", content=body, headers=headers)
    assert answer.status_code == 403
    assert calls.receipts == []


async def test_unknown_peer_is_refused_when_an_allow_list_is_set() -> None:
    calls = Calls()
    receiver = calls.receiver(allowed_networks=["0.0.0.0/0", "::/0"])
    sent: list[dict[str, Any]] = []
    await _call_raw(receiver, _scope(client=None), [_body(urlencode(FORM).encode())], sent)
    assert sent[0]["status"] == 403
    assert calls.receipts == []


def test_empty_or_bad_allow_list_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        PushReceiver(on_receipt=print, allowed_networks=[])
    with pytest.raises(ValueError):
        PushReceiver(on_receipt=print, allowed_networks=["10.0.0.300/8"])
    with pytest.raises(TypeError):
        PushReceiver(on_receipt=print, allowed_networks=[42])  # type: ignore[list-item]


# -- body size -------------------------------------------------------------------


def _padded(size: int) -> bytes:
    body = urlencode({**FORM, "pad": ""}).encode()
    return body + b"x" * (size - len(body))


async def test_body_at_the_limit_is_read_and_over_it_is_refused() -> None:
    calls = Calls()
    receiver = calls.receiver(max_body=1024)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    async with client(receiver) as c:
        at_limit = await c.post("/", content=_padded(1024), headers=headers)
        over = await c.post("/", content=_padded(1025), headers=headers)
    assert at_limit.status_code == 200
    assert over.status_code == 413
    assert over.text == "payload too large"
    assert len(calls.receipts) == 1


async def test_default_limit_is_64_kib() -> None:
    calls = Calls()
    receiver = calls.receiver()
    assert receiver.max_body == 65536
    headers = {"content-type": "application/x-www-form-urlencoded"}
    async with client(receiver) as c:
        over = await c.post("/", content=_padded(65537), headers=headers)
        at = await c.post("/", content=_padded(65536), headers=headers)
    assert (over.status_code, at.status_code) == (413, 200)


async def test_limit_is_enforced_while_streaming_without_content_length() -> None:
    """An endless chunked body: the receiver must stop reading past the limit."""
    calls = Calls()
    receiver = calls.receiver(max_body=4096)
    pulled = 0
    chunk = b"pad=" + b"x" * 1020

    def endless() -> Any:
        nonlocal pulled
        for _ in range(10_000):  # bounded: 10 MB would mean the limit was ignored
            pulled += 1
            yield _body(chunk, more=True)
        pytest.fail("the receiver read the whole stream")

    sent: list[dict[str, Any]] = []
    await _call_raw(receiver, _scope(), endless(), sent)
    assert sent[0]["status"] == 413
    assert pulled == 5  # 4 chunks fit in 4096 bytes, the 5th goes over
    assert calls.receipts == []


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    calls = Calls()
    receiver = calls.receiver(max_body=100)
    headers = {"content-type": "application/x-www-form-urlencoded", "content-length": "101"}
    sent: list[dict[str, Any]] = []
    read = 0

    def no_body() -> Iterator[dict[str, Any]]:
        nonlocal read
        read += 1
        yield _body(b"code=2")

    await _call_raw(receiver, _scope(headers=headers), no_body(), sent)
    assert sent[0]["status"] == 413
    assert read == 0  # refused before reading
    bad = {"content-type": "application/x-www-form-urlencoded", "content-length": "1e3"}
    sent.clear()
    await _call_raw(receiver, _scope(headers=bad), no_body(), sent)
    assert sent[0]["status"] == 400


def test_bad_limit_is_refused() -> None:
    for limit in (0, -1, True):
        with pytest.raises(ValueError, match="max_body"):
            PushReceiver(on_receipt=print, max_body=limit)


# -- method and media type ---------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "PATCH"])
async def test_only_post_is_accepted(method: str) -> None:
    calls = Calls()
    async with client(calls.receiver()) as c:
        answer = await c.request(
            method,
            "/",
            content=urlencode(FORM).encode() if method not in ("GET", "HEAD") else None,
            params=FORM if method in ("GET", "HEAD") else None,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.text != "success"
    assert calls.receipts == []


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        "application/x-www-form-urlencoded-evil",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "application/x-www-form-urlencoded; charset=base64",
    ],
)
async def test_only_forms_are_accepted(content_type: str | None) -> None:
    calls = Calls()
    headers = {"content-type": content_type} if content_type else {}
    sent: list[dict[str, Any]] = []
    await _call_raw(
        calls.receiver(),
        _scope(headers=headers),
        [_body(urlencode(FORM).encode())],
        sent,
    )
    assert sent[0]["status"] == 415
    assert calls.receipts == []


async def test_declared_charset_is_honoured() -> None:
    calls = Calls()
    form = reply_form(content="好的，谢谢", reply_time="2026-01-01 12:00:00")
    async with client(calls.receiver()) as c:
        gbk = await post_push(
            c,
            form,
            encoding="gbk",
            content_type="application/x-www-form-urlencoded; charset=GBK",
        )
        utf8 = await post_push(
            c,
            reply_form(content="你好", reply_time="2026-01-01 12:00:00"),
            content_type="application/x-www-form-urlencoded; charset=UTF-8",
        )
    assert gbk.acknowledged and utf8.acknowledged
    assert [r.content for r in calls.replies] == ["好的，谢谢", "你好"]


# -- malformed -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello=world",
        b"code=2&smsid=1&mobilephone=%FF%FE",  # not UTF-8
        "code=2&smsid=1&mobilephone=138\udcff".encode("utf-8", "surrogateescape"),
        b"code=abc&smsid=1&mobilephone=13800138000",
        b"code=2&smsid=&mobilephone=13800138000",
        b"code=2&smsid=1",
        b"templateid=x1&code=2",
        b"&".join(b"f%d=1" % i for i in range(200)),  # too many fields
    ],
)
async def test_malformed_forms_get_400_never_success(body: bytes) -> None:
    calls = Calls()
    async with client(calls.receiver()) as c:
        answer = await c.post(
            "/", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert answer.status_code == 400
    assert answer.text.startswith("bad request")
    assert "success" not in answer.text
    assert "13800138000" not in answer.text
    assert calls.receipts == [] and calls.replies == []


async def test_the_first_of_repeated_fields_wins() -> None:
    calls = Calls()
    body = urlencode([*FORM.items(), ("code", "0")]).encode()
    async with client(calls.receiver()) as c:
        answer = await c.post(
            "/", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert answer.status_code == 200
    assert calls.receipts[0].code == 2


# -- raw ASGI helpers ----------------------------------------------------------------


def _scope(
    *,
    method: str = "POST",
    path: str = "/",
    headers: dict[str, str] | None = None,
    client: tuple[str, int] | None = ("127.0.0.1", 40000),
) -> dict[str, Any]:
    if headers is None:
        headers = {"content-type": "application/x-www-form-urlencoded"}
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def _body(data: bytes, *, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


async def _call_raw(
    app: Callable[[Any, Any, Any], Awaitable[None]],
    scope: dict[str, Any],
    messages: Any,
    sent: list[dict[str, Any]],
) -> None:
    source = iter(messages)

    async def receive() -> dict[str, Any]:
        return dict(next(source))

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
