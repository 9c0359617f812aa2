"""The push receiver answers every request with a status and never raises (#12).

Requests of any method, path, content type, charset, Content-Length and body, in
random chunks, sometimes cut by a disconnect, straight into the ASGI app (asyncio
and trio); ``tests/pushes/test_push_fuzz.py`` does the same over the wire into the
aiohttp adapter. With handlers that succeed,
a request is answered 200, 400, 403, 405, 413 or 415, as ``[start, body]``; a
request whose client went away before its body was read gets no answer.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ihuyi_async.testing import receipt_form

from .corpus import (
    CHARSETS,
    SMSID,
    PushRequest,
    call_receiver,
    fuzz_receivers,
    push_request,
    run_requests,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVERS = fuzz_receivers()


def _assert_answered(request: PushRequest, backend: str = "asyncio") -> None:
    async def main() -> None:
        for name, receiver in RECEIVERS.items():
            outcome, ok = await call_receiver(receiver, request)
            assert ok, (name, outcome, request)

    anyio.run(main, backend=backend)


@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from(["asyncio", "trio"]))
def test_fuzzed_requests(rng: random.Random, backend: str) -> None:
    _assert_answered(push_request(rng), backend)


CONTENT_TYPES = st.one_of(
    st.binary(max_size=80),
    st.sampled_from(CHARSETS).map(
        lambda c: f"application/x-www-form-urlencoded; charset={c}".encode("utf-8", "surrogatepass")
    ),
    st.text(max_size=20).map(
        lambda c: f"application/x-www-form-urlencoded;charset={c}".encode("utf-8", "surrogatepass")
    ),
    st.just(b"application/x-www-form-urlencoded"),
)
LENGTHS = st.one_of(st.none(), st.binary(max_size=8), st.integers(0, 10**30).map(lambda n: str(n).encode()),
                    st.integers(1, 6000).map(lambda n: b"9" * n))  # fmt: skip


def _post(content_type: bytes, length: bytes | None, body: bytes, pieces: int = 1) -> PushRequest:
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", length))
    size = max(1, len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = tuple(
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    )
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": "/t0ken", "query_string": b"", "headers": headers,
        "client": ("127.0.0.1", 1),
    }  # fmt: skip
    return PushRequest(scope=scope, messages=messages, disconnects=False)


FORM = urlencode(receipt_form(smsid=SMSID)).encode()


@FUZZ
@given(CONTENT_TYPES, LENGTHS, st.binary(max_size=3000), st.integers(min_value=1, max_value=4))
@example(b"application/x-www-form-urlencoded; charset=undefined", None, FORM, 1)
@example(b"application/x-www-form-urlencoded", b"9" * 5000, FORM, 1)
@example(b"application/x-www-form-urlencoded; charset=unicode_escape", None, b"a=\\z", 1)
def test_any_content_type_length_and_body(
    content_type: bytes, length: bytes | None, body: bytes, pieces: int
) -> None:
    _assert_answered(_post(content_type, length, body, pieces))


@pytest.mark.parametrize("charset", CHARSETS)
def test_every_charset_name(charset: str) -> None:
    content_type = f"application/x-www-form-urlencoded; charset={charset}".encode(
        "utf-8", "surrogatepass"
    )
    for body in (FORM, FORM + b"&msg=%E4%BD%A0\\z", bytes(range(256))):
        _assert_answered(_post(content_type, None, body))


@pytest.mark.slow
def test_seeded_loop_of_30_000_requests() -> None:
    runs = run_requests(30_000, seed=12)
    for run in runs:
        assert run.unexpected == [], (run.target, run.unexpected[:3])
        assert run.inputs == 30_000
        expected = {"200", "400", "405", "413", "415", "no answer (disconnected)"}
        if run.target.endswith("(guarded)"):
            expected.add("403")
        assert expected <= set(run.outcomes), run.outcomes  # every kind of answer is reached
