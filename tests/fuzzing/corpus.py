"""Fuzzed inputs and the runs over them, shared by the fuzz tests and ``benchmarks/fuzz.py``.

Three families, each from a seeded :class:`random.Random` so a run is reproducible:

* **answers** for the answer parsers: random bytes; provider answers (Submit, GetNum,
  AddTemplate; JSON and XML; any namespace, declaration, BOM and encoding) mutated by
  flips, insertions of hostile tokens (digit runs past the int-string limit, NULs,
  BOMs, entities, DTDs, deep nesting, unknown encodings), cuts and splices; and JSON
  objects whose fields hold any JSON value;
* **forms** for :func:`parse_push`: provider pushes with fields dropped, added, or
  given hostile values;
* **requests** for the ASGI :class:`PushReceiver`: any method, content type, charset,
  Content-Length and body, sent in random chunks, sometimes cut by a disconnect.

:func:`run_answers`, :func:`run_forms` and :func:`run_requests` count outcomes by kind
(the value returned, or the exception's class name) and collect the inputs whose
outcome was not one of the documented ones: a fuzz test asserts there are none.
"""

from __future__ import annotations

import encodings.aliases
import json
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import anyio

from ihuyi_async import ApiError, ProtocolError
from ihuyi_async._codes import CODES
from ihuyi_async._parsing import Answer, parse_answer, parse_balance, parse_submit, parse_template
from ihuyi_async.pushes import (
    PushParseError,
    PushReceiver,
    parse_push,
)
from ihuyi_async.testing import receipt_form, reply_form, template_review_form

__all__ = [
    "ANSWER_PARSERS",
    "CHARSETS",
    "HOSTILE_CHARSETS",
    "RECEIVER_STATUSES",
    "SMSID",
    "TOKENS",
    "FuzzRun",
    "PushRequest",
    "answer_body",
    "answer_outcome",
    "call_receiver",
    "form_outcome",
    "fuzz_receivers",
    "push_form",
    "push_request",
    "run_answers",
    "run_forms",
    "run_requests",
]

SMSID = "16842079209571524017"

# -- hostile pieces --------------------------------------------------------------------------

#: Charset names that are no usable charset: not codecs, not text encodings, not ASCII-compatible.
HOSTILE_CHARSETS: tuple[str, ...] = (
    "undefined", "base64", "rot13", "idna", "punycode", "unicode_escape", "raw_unicode_escape",
    "utf-16", "utf-32", "utf-7", "hz", "cp500", "mbcs", "x-unknown", "", " ", "utf\x008", '"',
    "a" * 100, "utf-8; q=1", "\u00e9", "../utf-8",
)  # fmt: skip
#: Charset names: every codec Python knows, plus the hostile ones.
CHARSETS: tuple[str, ...] = (
    tuple(sorted(set(encodings.aliases.aliases.values())))
    + ("utf-8", "UTF-8", "gbk", "GB18030", "big5", "latin-1")
    + HOSTILE_CHARSETS
)

#: Byte strings inserted into answers: each one broke, or could break, a parser.
TOKENS: tuple[bytes, ...] = (
    b"\x00", b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf",
    b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\\ud800", b"\\u0000",
    b"&amp;", b"&#0;", b"&#x110000;", b"&#xD800;", b"&lol;", b"&#50;",
    b'<!DOCTYPE r [<!ENTITY lol "lol">]>', b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">',
    b"<![CDATA[2]]>", b"<!-- c -->", b"<?pi x?>", b"]]>", b'"', b"'", b"<", b">", b"</", b"/>",
    b"{", b"}", b"[", b"]", b":", b",", b"1e999", b"-0", b"-1", b"NaN", b"Infinity", b"null",
    b"true", b"2.0", b"9" * 4301, b"7" * 5000, b"4" * 4000, b"0" * 30, b"1" * 10, b" " * 3,
    b"\r\n", b"\t", b"\\", b"\x1f", b"\x7f", b"\x85", "\u3000".encode(), "提交成功".encode(),
    "提交成功".encode("gbk"), b'encoding="undefined"', b'encoding="utf-16"',
    b'<?xml version="1.0" encoding="x-unknown"?>', b"[" * 3000, b"<a>" * 2000,
    b'xmlns="urn:x"', b'xmlns:r="urn:x"', b"r:",
)  # fmt: skip

_CODES = sorted(CODES)
_XML_ROOTS = {"submit": "SubmitResult", "balance": "GetNumResult", "template": "AddTemplateResult"}
_NAMESPACES = (
    'xmlns="http://106.ihuyi.com/"',
    'xmlns="http://106.ihuyi.cn/"',
    'xmlns="106.ihuyi.com"',
    "",
)


def _digits(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.7:
        return str(rng.randrange(1, 10 ** rng.randint(1, 20)))
    if kind < 0.85:
        return "9" * rng.choice([9, 10, 18, 19, 20, 4299, 4300, 4301, 6000])
    return rng.choice(["0", "00", "-1", "-4082", "+2", " 2 ", "2.0", "١٢", "²", "", "0x2"])


def _fields(rng: random.Random) -> tuple[str, dict[str, str]]:
    kind = rng.choice(["submit", "submit", "balance", "template"])
    code = rng.choice(["2", "2", "2", "2", str(rng.choice(_CODES)), _digits(rng)])
    fields = {"code": code, "msg": rng.choice(["提交成功", "查询成功", "ok", "", "busy <x>"])}
    if kind == "submit":
        fields[rng.choice(["smsid", "smsid", "smsid", "ismsid"])] = rng.choice(
            [SMSID, SMSID, "0", "", _digits(rng)]
        )
    elif kind == "balance":
        fields["num"] = _digits(rng)
    else:
        fields["templateid"] = _digits(rng)
    return kind, fields


def _json_answer(rng: random.Random, fields: dict[str, str]) -> bytes:
    parts = []
    for key, value in fields.items():
        numeric = value.isascii() and value.isdigit() and rng.random() < 0.5
        shown = value if numeric else json.dumps(value, ensure_ascii=rng.random() < 0.5)
        parts.append(f"{json.dumps(key)}:{rng.choice(['', ' '])}{shown}")
    rng.shuffle(parts)
    text = "{" + ",".join(parts) + "}"
    encoding = rng.choice(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
    return text.encode(encoding)


def _xml_answer(rng: random.Random, kind: str, fields: dict[str, str]) -> bytes:
    root = _XML_ROOTS[kind]
    ns = rng.choice(_NAMESPACES)
    children = "".join(f"<{k}>{v}</{k}>\n" for k, v in fields.items())
    body = f"<{root}{' ' + ns if ns else ''}>\n{children}</{root}>"
    roll = rng.random()
    if roll < 0.6:  # as the provider writes it
        declared = encoding = "utf-8"
    elif roll < 0.85:  # a real encoding, declared
        declared = encoding = rng.choice(
            ["gbk", "gb18030", "big5", "latin-1", "cp1252", "utf-16", "utf-32"]
        )
    else:  # any name declared, UTF-8 written
        declared, encoding = rng.choice(CHARSETS), "utf-8"
    if rng.random() < 0.2:
        text = body
    else:
        quote_mark = rng.choice(['"', "'"])
        text = f'<?xml version="1.0" encoding={quote_mark}{declared}{quote_mark}?>\n{body}'
    if rng.random() < 0.1:
        text = rng.choice(["\ufeff", " \r\n", "\n\n"]) + text
    return text.encode(encoding, "xmlcharrefreplace")


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        at = rng.randint(0, len(data))
        if op < 0.35:
            data[at:at] = rng.choice(TOKENS)
        elif op < 0.55 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op < 0.7:
            del data[at : at + rng.randint(1, 16)]
        elif op < 0.8:
            data[at:] = b""  # cut
        elif op < 0.9:
            data[at:at] = data[rng.randint(0, len(data)) :][: rng.randint(1, 64)]
        else:  # replace a digit run with a long one
            start = next((i for i in range(at, len(data)) if 48 <= data[i] <= 57), None)
            if start is not None:
                end = start
                while end < len(data) and 48 <= data[end] <= 57:
                    end += 1
                data[start:end] = b"8" * rng.choice([10, 19, 4000, 4301, 5000])
    return bytes(data)


def _json_value(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if roll < 0.2:
        return _digits(rng) if rng.random() < 0.7 else rng.choice(["1e999", "-0.0", "2.5", "1E2"])
    if roll < 0.45:
        return json.dumps(rng.choice([_digits(rng), "提交成功", "\ud800", "\x00", "", " 2"]))
    if roll < 0.6:
        return rng.choice(["null", "true", "false"])
    if roll < 0.8 and depth < 3:
        return "[" + ",".join(_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    if depth < 3:
        items = (f'"{rng.choice(["code", "a"])}":{_json_value(rng, depth + 1)}' for _ in range(2))
        return "{" + ",".join(items) + "}"
    return "0"


def _json_object(rng: random.Random) -> bytes:
    keys = rng.sample(
        ["code", "msg", "smsid", "num", "templateid", "ismsid", "x"], rng.randint(0, 6)
    )
    text = "{" + ",".join(f'"{key}":{_json_value(rng)}' for key in keys) + "}"
    if rng.random() < 0.1:
        text = rng.choice(["[", '"', "3", "null"]) + text[1:]
    return text.encode("utf-8", "surrogatepass")


def answer_body(rng: random.Random) -> bytes:
    """One fuzzed answer body."""
    roll = rng.random()
    if roll < 0.15:
        return rng.randbytes(rng.randint(0, 300))
    if roll < 0.3:
        return _json_object(rng)
    kind, fields = _fields(rng)
    body = _json_answer(rng, fields) if rng.random() < 0.5 else _xml_answer(rng, kind, fields)
    return body if rng.random() < 0.5 else _mutate(rng, body)


# -- forms and requests ----------------------------------------------------------------------

_FORM_VALUES: tuple[str, ...] = (
    "2", "0", "-1", "+2", " 2 ", "2.0", "9" * 9, "9" * 10, "9" * 5000, "", " ", "\x00",
    "\ud800", "\u200b", "١٢", "13800138000", "138\n00138000", "x" * 5000, "DELIVRD",
    "2026-01-01 12:00:00", "2026-02-30 12:00:00", "9999-12-31 23:59:59", "0001-01-01 00:00:00",
    "0000000000", "9999999999", "1767240000", "2026-01-01T12:00:00+23:59",
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "20260101120000", "2026/01/01 12:00:00",
    SMSID, "0" * 20, "收到，谢谢", "<script>",
)  # fmt: skip
_FORM_NAMES = (
    "code", "msg", "mobilephone", "smsid", "task_id", "report_time", "content", "reply_time",
    "replyTime", "templateid",
)  # fmt: skip


def push_form(rng: random.Random) -> dict[str, str]:
    """One fuzzed push form (decoded fields)."""
    roll = rng.random()
    if roll < 0.3:
        form = receipt_form(smsid=SMSID) if rng.random() < 0.7 else receipt_form(task_id="77")
    elif roll < 0.55:
        form = reply_form(
            smsid=rng.choice([None, SMSID]), time_field=rng.choice(["reply_time", "replyTime"])
        )
    elif roll < 0.7:
        form = template_review_form(template_id=rng.choice(["1", "12345", _digits(rng)]))
    else:
        form = {}
    for _ in range(rng.randint(0, 4)):
        op = rng.random()
        name = (
            rng.choice(_FORM_NAMES)
            if rng.random() < 0.8
            else rng.choice(["x", "", "\ud800", "a" * 50])
        )
        if op < 0.6:
            form[name] = rng.choice(_FORM_VALUES) if rng.random() < 0.85 else _digits(rng)
        elif form:
            del form[rng.choice(list(form))]
    return form


def _charset(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(["utf-8", "UTF-8", "gbk", "GB18030", "latin-1"])
    return rng.choice(HOSTILE_CHARSETS) if roll < 0.7 else rng.choice(CHARSETS)


def _content_type(rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.1:
        return rng.choice([b"application/json", b"text/plain", b"multipart/form-data; boundary=x"])
    if roll < 0.15:
        return rng.randbytes(rng.randint(0, 60))
    media = rng.choice(["application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded"])
    if rng.random() < 0.4:
        return media.encode()
    charset = _charset(rng)
    shown = f'"{charset}"' if rng.random() < 0.2 else charset
    return f"{media}; charset={shown}".encode("utf-8", "surrogatepass")


def _form_body(rng: random.Random) -> bytes:
    form = push_form(rng)
    charset = rng.choice(["utf-8", "utf-8", "gbk", "latin-1", "utf-16"])
    pairs = [(k, v) for k, v in form.items()]
    try:
        body = urlencode(
            pairs,
            encoding=charset,
            errors="surrogatepass" if charset.startswith("utf") else "replace",
        )
    except (UnicodeError, LookupError):
        body = urlencode(
            [(quote(k, errors="replace"), quote(v, errors="replace")) for k, v in pairs]
        )
    data = body.encode("ascii")
    if rng.random() < 0.2:  # raw (unquoted) bytes, as some clients send
        raw = "&".join(f"{k}={v}" for k, v in pairs)
        data = raw.encode(rng.choice(["utf-8", "gbk", "latin-1"]), "replace")
    if rng.random() < 0.3:
        data = _mutate(rng, data)
    return data


def _body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randint(0, 200))
    if roll < 0.15:
        return b"a=1&" * rng.choice(
            [70, 600]
        )  # too many fields, and over the fuzz receiver's max_body
    return _form_body(rng)


def _content_length(rng: random.Random, body: bytes) -> bytes | None:
    roll = rng.random()
    if roll < 0.6:
        return str(len(body)).encode()
    if roll < 0.75:
        return None
    return rng.choice(
        [b"9" * 5000, b"0" * 5000 + str(len(body)).encode(), b"-1", b"1e3", b" 12 ", b"", b"\xd9\xa3",
         str(len(body) + 5).encode(), b"0", b"99999999999999999999"]
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class PushRequest:
    """One ASGI request: its scope and the messages ``receive`` gives, in order."""

    scope: dict[str, Any]
    messages: tuple[dict[str, Any], ...]
    disconnects: bool


def push_request(rng: random.Random) -> PushRequest:
    """One fuzzed ASGI request to a receiver."""
    body = _body(rng)
    headers: list[tuple[bytes, bytes]] = []
    content_type = _content_type(rng)
    if content_type is not None:
        headers.append((rng.choice([b"content-type", b"Content-Type"]), content_type))
    length = _content_length(rng, body)
    if length is not None:
        headers.append((b"content-length", length))
    if rng.random() < 0.2:
        headers.append(
            (b"x-forwarded-for", rng.choice([b"10.0.0.1", b"::1, 10.1.1.1", b"junk", b"[::1]:80"]))
        )
    method = rng.choice(["POST"] * 12 + ["GET", "PUT", "post", "", "P\u00d6ST"])
    path = rng.choice(["/", "/", "/t0ken", "/x/t0ken/", "/\ud800", "/%00"])
    query = rng.choice([b"", b"", b"token=t0ken", b"token=%ff", b"a=1&" * 50, rng.randbytes(10)])
    messages: list[dict[str, Any]] = []
    rest = body
    while True:
        size = rng.choice([len(rest), len(rest), rng.randint(0, max(len(rest), 1))])
        chunk, rest = rest[:size], rest[size:]
        messages.append({"type": "http.request", "body": chunk, "more_body": bool(rest)})
        if not rest:
            break
    disconnects = rng.random() < 0.05
    if disconnects:
        messages.insert(rng.randint(0, len(messages)), {"type": "http.disconnect"})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": rng.choice([("127.0.0.1", 40000), ("10.0.0.7", 1), ("::1", 2), None]),
        "server": ("127.0.0.1", 8000),
    }
    return PushRequest(scope=scope, messages=tuple(messages), disconnects=disconnects)


# -- runs ------------------------------------------------------------------------------------


@dataclass(slots=True)
class FuzzRun:
    """Outcomes of one target over a run: counts by outcome, and the inputs that broke it."""

    target: str
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[tuple[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, outcome: str, ok: bool, sample: object) -> None:
        self.inputs += 1
        self.outcomes[outcome] += 1
        if not ok and len(self.unexpected) < 20:
            self.unexpected.append((outcome, sample))

    @property
    def unexpected_count(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome.startswith("UNEXPECTED "))


def _submit_json(body: bytes) -> object:
    return parse_submit(body, "json", mobile="13800138000")


def _submit_xml(body: bytes) -> object:
    return parse_submit(body, "xml")


def _submit_ismsid(body: bytes) -> object:
    return parse_submit(body, "json", id_field="ismsid")


def _submit_status(body: bytes) -> object:
    return parse_submit(body, "json", status_code=502)


#: Every answer parser, as the client calls it (both formats, another product's id field,
#: a non-200 status): name -> callable over the body.
ANSWER_PARSERS: dict[str, Callable[[bytes], object]] = {
    "parse_answer (json)": lambda body: parse_answer(body, "json"),
    "parse_answer (xml)": lambda body: parse_answer(body, "xml"),
    "parse_submit (json)": _submit_json,
    "parse_submit (xml)": _submit_xml,
    "parse_submit (ismsid)": _submit_ismsid,
    "parse_submit (502)": _submit_status,
    "parse_balance (json)": lambda body: parse_balance(body, "json"),
    "parse_balance (xml)": lambda body: parse_balance(body, "xml"),
    "parse_template (json)": lambda body: parse_template(body, "json"),
    "parse_template (xml)": lambda body: parse_template(body, "xml"),
}


def _check_value(name: str, value: object) -> bool:
    """What a parser returns must be what it documents."""
    if isinstance(value, Answer):
        return 0 <= value.code < 10**9 and isinstance(value.msg, str)
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)):
        return False
    first = value[0]
    if name.startswith("parse_submit"):
        return isinstance(first, str) and first.strip("0") != ""
    low = 1 if name.startswith("parse_template") else 0
    return isinstance(first, int) and low <= first < 10**18


def answer_outcome(name: str, parse: Callable[[bytes], object], body: bytes) -> tuple[str, bool]:
    try:
        value = parse(body)
    except ProtocolError as exc:
        return f"ProtocolError ({exc.reason})", True
    except ApiError as exc:
        return "ApiError", 0 <= exc.code < 10**9 and exc.code != 2
    except Exception as exc:  # noqa: BLE001 - what the run is looking for
        return f"UNEXPECTED {type(exc).__name__}", False
    return ("returned", True) if _check_value(name, value) else ("UNEXPECTED value", False)


def run_answers(
    bodies: int, seed: int, parsers: Mapping[str, Callable[[bytes], object]] = ANSWER_PARSERS
) -> list[FuzzRun]:
    """Feed ``bodies`` fuzzed answers to every parser; warnings count as failures."""
    rng = random.Random(seed)
    runs = {name: FuzzRun(name) for name in parsers}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(bodies):
            body = answer_body(rng)
            for name, parse in parsers.items():
                started = time.perf_counter()
                outcome, ok = answer_outcome(name, parse, body)
                runs[name].seconds += time.perf_counter() - started
                runs[name].record(outcome, ok, body)
    return list(runs.values())


def form_outcome(form: dict[str, str]) -> tuple[str, bool]:
    try:
        push = parse_push(form)
        # What a receiver does with a push: its key, its repr (logged), its times.
        checks = [push.dedupe_key, repr(push)]
        times = [getattr(push, name, None) for name in ("report_time", "reply_time")]
    except PushParseError:
        return "PushParseError", True
    except Exception as exc:  # noqa: BLE001 - what the run is looking for
        return f"UNEXPECTED {type(exc).__name__}", False
    ok = all(checks) and all(t is None or t.utcoffset() is not None for t in times)
    return (type(push).__name__, True) if ok else ("UNEXPECTED value", False)


def run_forms(forms: int, seed: int) -> FuzzRun:
    """Feed ``forms`` fuzzed forms to :func:`parse_push`."""
    rng = random.Random(seed)
    run = FuzzRun("parse_push")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(forms):
            form = push_form(rng)
            started = time.perf_counter()
            outcome, ok = form_outcome(form)
            run.seconds += time.perf_counter() - started
            run.record(outcome, ok, form)
    return run


#: Statuses a receiver with handlers that succeed may answer (no 500, no 503).
RECEIVER_STATUSES = frozenset({200, 400, 403, 405, 413, 415})


async def _no_op(push: object) -> None:
    return None


def fuzz_receivers() -> dict[str, PushReceiver]:
    """The receivers requests are sent to: open, and guarded by a token and an allow-list."""
    return {
        "PushReceiver (open)": PushReceiver(_no_op, _no_op, _no_op, max_body=2048),
        "PushReceiver (guarded)": PushReceiver(
            _no_op,
            _no_op,
            _no_op,
            token="t0ken",
            allowed_networks=["127.0.0.0/8", "::1"],
            max_body=2048,
        ),
    }


async def call_receiver(receiver: PushReceiver, request: PushRequest) -> tuple[str, bool]:
    """Send one request to the ASGI app: (outcome, whether it is a documented one)."""
    messages: Iterator[dict[str, Any]] = iter(request.messages)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    try:
        await receiver(request.scope, receive, send)
    except Exception as exc:  # noqa: BLE001 - what the run is looking for
        return f"UNEXPECTED {type(exc).__name__}", False
    if not sent:  # the client went away before its body was read: nobody to answer
        return "no answer (disconnected)", request.disconnects
    kinds = [message["type"] for message in sent]
    if kinds != ["http.response.start", "http.response.body"]:
        return f"UNEXPECTED messages {kinds}", False
    status = sent[0]["status"]
    return str(status), status in RECEIVER_STATUSES


def run_requests(requests: int, seed: int) -> list[FuzzRun]:
    """Send ``requests`` fuzzed requests to each fuzz receiver, on one asyncio loop."""
    receivers = fuzz_receivers()
    runs = {name: FuzzRun(name) for name in receivers}

    async def main() -> None:
        rng = random.Random(seed)
        for _ in range(requests):
            request = push_request(rng)
            for name, receiver in receivers.items():
                started = time.perf_counter()
                outcome, ok = await call_receiver(receiver, request)
                runs[name].seconds += time.perf_counter() - started
                runs[name].record(outcome, ok, request)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        anyio.run(main)
    return list(runs.values())
