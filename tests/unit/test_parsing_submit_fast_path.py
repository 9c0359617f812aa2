"""parse_submit's fast path (a clean JSON acceptance) gives what the full path gives.

The full path is spelled out here from :func:`parse_answer` (decode, code, fields) as
``parse_submit`` ran before the fast path existed; both must agree on every body:
the same ``(smsid, msg)``, or the same exception class, code and reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ihuyi_async import ApiError, ProtocolError
from ihuyi_async._parsing import _check, _fail, parse_answer, parse_submit


def _full(body: bytes, id_field: str) -> tuple[str, str]:
    answer = parse_answer(body, "json", status_code=200)
    _check(answer)
    smsid = answer.fields.get(id_field, "").strip()
    if not smsid or smsid.strip("0") == "":
        raise _fail(f"code 2 without a {id_field}", body, 200, "missing_smsid")
    return smsid, answer.msg


def _outcome(parse: Any, body: bytes, id_field: str) -> tuple[Any, ...]:
    try:
        return ("ok", parse(body, id_field))
    except ApiError as exc:
        return ("api", type(exc), exc.code, exc.message)
    except ProtocolError as exc:
        return ("protocol", exc.reason, exc.status_code)


def _fast(body: bytes, id_field: str) -> tuple[str, str]:
    return parse_submit(body, "json", status_code=200, id_field=id_field)


@pytest.mark.parametrize(
    "body",
    [
        '{"code":2,"msg":"提交成功","smsid":"16842079209571524017"}'.encode(),
        b'{"code":2,"msg":"ok","smsid":" 0001 "}',
        b'{"code":2,"msg":"ok","smsid":"000"}',
        b'{"code":2,"msg":"ok","smsid":""}',
        b'{"code":2,"msg":"ok","smsid":16842079209571524017}',
        b'{"code":"2","msg":"ok","smsid":"1"}',
        b'{"code":true,"msg":"ok","smsid":"1"}',
        b'{"code":2.0,"msg":"ok","smsid":"1"}',
        b'{"code":2,"msg":null,"smsid":"1"}',
        b'{"code":2,"msg":5,"smsid":"1"}',
        b'{"code":2,"smsid":"1"}',
        b'{"code":4085,"msg":"x","smsid":"0"}',
        b'{"code":2,"msg":"ok","smsid":"1"} trailing',
        b'{"code":2,"msg":"ok","smsid":"1","smsid":"0"}',
        b'{"code":2,"msg":"\\ud800","smsid":"1"}',
        b'{"code":2,"msg":"ok","smsid":["1"]}',
        b'{"msg":"ok","smsid":"1"}',
        b"{}",
        b"{",
    ],
)
def test_known_bodies(body: bytes) -> None:
    assert _outcome(_fast, body, "smsid") == _outcome(_full, body, "smsid")


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=False),
    st.text(max_size=8), st.sampled_from(["2", " 2", "0", " 00 ", "16842079209571524017"]),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["code", "msg", "smsid", "voiceid", "x"]), _values, max_size=5),
    st.sampled_from(["smsid", "voiceid"]),
    st.sampled_from(["", " ", "\n", " x"]),
)
@example({"code": 2, "msg": "ok", "smsid": "1"}, "smsid", "")
def test_any_json_object(data: dict[str, Any], id_field: str, tail: str) -> None:
    body = (json.dumps(data, ensure_ascii=False) + tail).encode()
    assert _outcome(_fast, body, id_field) == _outcome(_full, body, id_field)
