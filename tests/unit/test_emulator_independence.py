"""The emulator's rules are its own, and they agree with the client's (#14).

The emulator is written from the provider's documentation (``testing/_rules.py``), not
from the client's ``_validation`` / ``_signing``: a double that shares the code under
test mirrors its bugs. These properties check the two readings agree on segments,
lengths, emoji, numbers, templates and signatures, and the last test keeps the
emulator from importing the client again.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ihuyi_async import ApiError
from ihuyi_async._signing import getnum_password, key_digest, submit_password
from ihuyi_async._validation import (
    TRIAL_TEMPLATE,
    VARIABLE,
    count_segments,
    find_emoji,
    join_variables,
    normalize_mobile,
    render_template,
    validate_content,
)
from ihuyi_async.testing import _rules

TESTING = Path(__file__).parents[2] / "ihuyi_async" / "testing"
# Characters a message really holds: CJK, ASCII, full-width punctuation, BMP symbols,
# the emoji selectors and pictographs beyond the BMP (no lone surrogates: those are
# refused by the client before anything, and cannot arrive as UTF-8).
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("验证码您的是：。，！【】变量 \t\n"),
        st.characters(max_codepoint=0x7F, exclude_categories=["Cs"]),
        st.characters(min_codepoint=0x2000, max_codepoint=0x2BFF),
        st.sampled_from("\ufe0f\u20e3\u200d\u3000"),
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=520,
)


def client_code(content: str, max_length: int) -> int:
    try:
        validate_content(content, max_length=max_length)
    except ApiError as exc:
        return exc.code
    return 0


@settings(max_examples=250, deadline=None)
@given(TEXT, st.sampled_from([300, 500]))
@example("a" * 70, 300)
@example("a" * 71, 300)
@example("好" * 134, 300)
@example("好" * 135, 300)
@example("x" * 301, 300)
@example("😀", 300)
@example("1\u20e3", 300)
@example(" \t\n", 300)
def test_content_checks_lengths_and_segments_agree(content: str, max_length: int) -> None:
    assert _rules.content_code(content, max_length) == client_code(content, max_length)
    assert _rules.segments(content) == count_segments(content)
    assert _rules.has_emoji(content) == (find_emoji(content) is not None)


NUMBER = st.one_of(
    st.from_regex(r"\A[ \t]*(\+?86)?1[0-9]{10}[ \t]*\Z"),
    st.text(alphabet="0123456789+ 86", max_size=16),
    st.from_regex(r"\A1[3-9][0-9]{9}\Z"),
)


@settings(max_examples=150, deadline=None)
@given(NUMBER)
@example("")
@example("   ")
@example("+8613800138000")
@example("8613800138000")
@example("12800138000")
@example("1380013800")
def test_number_acceptance_agrees(text: str) -> None:
    code, number = _rules.mobile_code(text)
    try:
        expected = normalize_mobile(text)
    except ApiError as exc:
        assert (code, number) == (exc.code, "")
    else:
        assert (code, number) == (0, expected)


def test_the_client_refuses_non_ascii_digits_as_the_emulator_does() -> None:
    text = "138" + "\u0660" * 8  # ARABIC-INDIC DIGIT ZERO
    assert _rules.mobile_code(text) == (406, "")
    with pytest.raises(ApiError):
        normalize_mobile(text)


VARIABLES = st.lists(
    st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="|"), min_size=1, max_size=10)
    .filter(lambda v: v.strip() and _rules.has_emoji(v) is False),
    min_size=1,
    max_size=4,
)
TEMPLATES = st.lists(st.text(max_size=12).filter(lambda t: VARIABLE not in t), min_size=1, max_size=5).map(
    VARIABLE.join
)


@settings(max_examples=120, deadline=None)
@given(TEMPLATES, VARIABLES)
@example(TRIAL_TEMPLATE, ["4821"])
def test_template_rendering_and_variable_joining_agree(template: str, variables: list[str]) -> None:
    joined = join_variables(variables)
    received = joined.split("|")  # what the emulator does with the content field
    assert received == variables
    try:
        expected: str | None = render_template(template, variables)
    except ValueError:
        expected = None
    assert _rules.fill_template(template, received) == expected
    assert _rules.TRIAL_TEMPLATE_TEXT == TRIAL_TEMPLATE and _rules.PLACEHOLDER == VARIABLE


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.text(max_size=40), st.text(max_size=12), TEXT, st.integers(0, 2**33))
def test_signatures_agree(account: str, key: str, mobile: str, content: str, timestamp: int) -> None:
    assert _rules.md5_hex(account + key + mobile + content + str(timestamp)) == submit_password(
        account, key, mobile, content, timestamp
    )
    assert _rules.md5_hex(f"{account}{key}{timestamp}") == getnum_password(account, key, timestamp)
    digest = key_digest(key)
    assert _rules.md5_hex(key) == digest
    assert _rules.same_hex(digest.upper(), digest) and not _rules.same_hex("", "")


def test_md5_matches_the_documented_example() -> None:
    # GetNum's worked example attributed to the provider's API document (unverified):
    # account test, apikey 1q78..., time 1451544941.
    text = "test1q784322ba1d9bb88d50cf5cdfd89k7d1451544941"
    assert _rules.md5_hex(text) == hashlib.md5(text.encode()).hexdigest()


def test_the_emulator_imports_nothing_from_the_client_but_codes_and_the_clock() -> None:
    """``_codes`` (the registry of answers) and ``_clock`` (the time source a test hands to
    both client and emulator, no provider rule in it) are the only client modules shared;
    ``pushes._asgi`` is ASGI plumbing (type aliases, the lifespan handshake) shared with
    the push receiver, not the client."""
    allowed = {
        "ihuyi_async._codes", "ihuyi_async._clock", "ihuyi_async._china", "ihuyi_async._exports",
        "ihuyi_async.pushes._asgi",
    }
    found: dict[str, set[str]] = {}
    for path in sorted(TESTING.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 2:
                    name = "ihuyi_async" + ("." + node.module if node.module else "")
                elif node.level == 0 and (node.module or "").startswith("ihuyi_async"):
                    name = node.module or ""
                else:
                    continue
                if name.startswith("ihuyi_async.testing"):
                    continue
                found.setdefault(name, set()).add(path.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("ihuyi_async") and not alias.name.startswith("ihuyi_async.testing"):
                        found.setdefault(alias.name, set()).add(path.name)
    # The pytest plugin builds an IhuyiClient (and a Verifier on it) for the user: it is the
    # one module allowed to import the client and the verifier themselves (lazily), and it
    # holds no provider rule.
    for built_for_the_user in ("ihuyi_async", "ihuyi_async.verify"):
        if found.get(built_for_the_user) == {"pytest_plugin.py"}:
            del found[built_for_the_user]
    assert set(found) <= allowed, {k: sorted(v) for k, v in found.items() if k not in allowed}
