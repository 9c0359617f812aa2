"""Every answer parser and the push parser raise only their documented exceptions (#12).

Documented: the answer parsers return a value or raise :class:`ProtocolError` (or the
registry's :class:`ApiError` subclass for a well-formed rejection, its code a result
code: 0 to 9 digits, not 2); :func:`parse_push` returns a push or raises
:class:`PushParseError`. Anything else, warnings included, fails. Property tests
(hypothesis) run in every suite; the seeded loop of 100,000 bodies is marked ``slow``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ihuyi_async.pushes._guards import Guards

from .corpus import (
    ANSWER_PARSERS,
    CHARSETS,
    SMSID,
    TOKENS,
    answer_body,
    answer_outcome,
    form_outcome,
    push_form,
    run_answers,
    run_forms,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_documented(body: bytes) -> None:
    for name, parse in ANSWER_PARSERS.items():
        outcome, ok = answer_outcome(name, parse, body)
        assert ok, (name, outcome, body[:200])


# -- answers: property tests ----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(body: bytes) -> None:
    _assert_documented(body)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_provider_answers(rng: random.Random) -> None:
    _assert_documented(answer_body(rng))


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_NAMES = st.sampled_from(["code", "msg", "smsid", "ismsid", "num", "templateid", "x"])


@FUZZ
@given(
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6),
    st.sampled_from(["utf-8", "utf-16", "utf-32"]),
)
def test_json_objects_with_any_field_values(fields: dict[str, object], encoding: str) -> None:
    _assert_documented(json.dumps(fields, ensure_ascii=False).encode(encoding, "surrogatepass"))


@FUZZ
@given(
    st.sampled_from(["code", "num", "templateid"]),
    st.integers(min_value=1, max_value=6000),
    st.sampled_from(['"{}"', "{}", '" {} "']),
)
def test_long_digit_runs_in_any_numeric_field(name: str, digits: int, shape: str) -> None:
    value = shape.format("9" * digits)
    body = f'{{"code":{"2" if name != "code" else value},"{name}":{value},"smsid":"{SMSID}"}}'
    _assert_documented(body.encode())
    _assert_documented(f"<r><code>2</code><{name}>{'9' * digits}</{name}></r>".encode())


@FUZZ
@given(
    st.dictionaries(FIELD_NAMES, st.text(max_size=30), max_size=6),
    st.sampled_from(CHARSETS) | st.text(max_size=12),
    st.sampled_from(["utf-8", "gbk", "latin-1", "utf-16", "utf-32-le", "big5"]),
    st.booleans(),
)
def test_xml_with_any_declared_and_actual_encoding(
    fields: dict[str, str], declared: str, actual: str, with_declaration: bool
) -> None:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    text = f"<SubmitResult>{children}</SubmitResult>"
    if with_declaration:
        text = f'<?xml version="1.0" encoding="{declared}"?>{text}'
    _assert_documented(
        text.encode(actual, "surrogatepass" if actual.startswith("utf") else "replace")
    )


@FUZZ
@given(st.randoms(use_true_random=False), st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4))
def test_hostile_tokens_anywhere(rng: random.Random, tokens: list[bytes]) -> None:
    body = bytearray(answer_body(rng))
    for token in tokens:
        at = rng.randint(0, len(body))
        body[at:at] = token
    _assert_documented(bytes(body))


# -- push forms: property tests ------------------------------------------------------------------

FORM_NAMES = st.sampled_from(
    ["code", "msg", "mobilephone", "smsid", "task_id", "report_time", "content", "reply_time",
     "replyTime", "templateid"]
) | st.text(max_size=8)  # fmt: skip
FORM_VALUES = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789-+ ", max_size=12),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.datetimes().map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.integers(min_value=0, max_value=10**11).map(str),
)


@FUZZ
@given(st.dictionaries(FORM_NAMES, FORM_VALUES, max_size=8))
def test_any_form(form: dict[str, str]) -> None:
    outcome, ok = form_outcome(form)
    assert ok, (outcome, form)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_provider_pushes(rng: random.Random) -> None:
    form = push_form(rng)
    outcome, ok = form_outcome(form)
    assert ok, (outcome, form)


@FUZZ
@given(
    st.text(max_size=80)
    | st.sampled_from(CHARSETS).map(lambda c: f"application/x-www-form-urlencoded; charset={c}")
)
def test_form_charset_of_any_content_type(content_type: str) -> None:
    charset = Guards.form_charset(content_type)
    if charset is not None:
        assert b"a=1&b=%E4+x".decode(charset) == "a=1&b=%E4+x"


# -- the seeded loop -------------------------------------------------------------------------------

#: The parsers of the seeded loop: parse_answer runs inside each of them.
SLOW_PARSERS: dict[str, Callable[[bytes], object]] = {
    name: parse for name, parse in ANSWER_PARSERS.items() if not name.startswith("parse_answer")
}


@pytest.mark.slow
def test_seeded_loop_of_100_000_answers() -> None:
    runs = run_answers(100_000, seed=12, parsers=SLOW_PARSERS)
    for run in runs:
        assert run.unexpected == [], (run.target, run.unexpected[:3])
        assert run.inputs == 100_000
        if run.target != "parse_submit (502)":
            # The corpus reaches every outcome: a generator gone dull would pass vacuously.
            assert {"returned", "ApiError", "ProtocolError (malformed_answer)",
                    "ProtocolError (missing_code)"} <= set(run.outcomes), run.outcomes  # fmt: skip
    submit = next(run for run in runs if run.target == "parse_submit (json)")
    assert submit.outcomes["ProtocolError (missing_smsid)"] > 0


@pytest.mark.slow
def test_seeded_loop_of_100_000_push_forms() -> None:
    run = run_forms(100_000, seed=12)
    assert run.unexpected == [], run.unexpected[:3]
    assert {"DeliveryReceipt", "Reply", "TemplateReview", "PushParseError"} <= set(run.outcomes)
