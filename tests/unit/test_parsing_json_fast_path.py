"""The JSON fast path (UTF-8 body starting with ``{``) decodes exactly as ``json.loads(bytes)``."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ihuyi_async import ProtocolError
from ihuyi_async._parsing import _decode_json, parse_submit

PIECES = [b"{", b"}", b'"', b"a", b":", b"1", b",", b"\xed", b"\xa0", b"\x80", b"\xff", b"\xe6",
          b"\x8f", b"\x00", b" ", b"\\", b"u", b"d", b"8", b"0", b"[", b"]", b"\xef\xbb\xbf", b"\n"]


def _reference(body: bytes) -> tuple[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ("error", None)
    return ("ok", data) if isinstance(data, dict) else ("error", None)


def _fast(body: bytes) -> tuple[str, Any]:
    try:
        return ("ok", _decode_json(body, 200))
    except ProtocolError:
        return ("error", None)


@pytest.mark.parametrize(
    "body",
    [b'{"a":1}', b'{"a":"\xed\xa0\x80"}', b'{"a":1} x', b"{", b'{\x00"', b'{"a":"\\ud800"}',
     b'{"a":NaN}', '{"msg":"提交成功"}'.encode(), b'{"a":1}\n', b'{"a":"\xff"}', b"{}"],
)
def test_known_bodies(body: bytes) -> None:
    assert _fast(body) == _reference(body)


def test_random_bodies() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        body = b"{" + b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10)))
        assert _fast(body) == _reference(body), body


def test_submit_answer_values_unchanged() -> None:
    assert parse_submit('{"code":2,"msg":"提交成功","smsid":"16842079209571524017"}'.encode(), "json") == (
        "16842079209571524017",
        "提交成功",
    )
    assert parse_submit(b'{"code":"2","msg":"ok","smsid":16842079209571524017}', "json") == (
        "16842079209571524017",
        "ok",
    )
    with pytest.raises(ProtocolError):
        parse_submit(b'{"code":2,"msg":"ok","smsid":true}', "json")
