"""form_quote is quote_plus, byte for byte (the send path's content encoding).

Two implementations: yarl's C quoter (installed with aiohttp) when importable, with
the few characters it keeps fixed up, and the pure per-character one; both are held
to ``quote_plus`` here, the C one by a property test over any text.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ihuyi_async import _forms
from ihuyi_async._forms import form_quote, pure_form_quote

QUOTERS = [pytest.param(pure_form_quote, id="pure"), pytest.param(form_quote, id="default")]


@pytest.mark.parametrize("quote", QUOTERS)
@pytest.mark.parametrize(
    "text",
    [
        "您的验证码是：1234。请不要把验证码泄露给其他人。",
        "hello world 123 &=+%~._-/?#",
        "【互亿无线】您的订单 #123 已发货，请查收！",
        "a b\u00e9\x00\n\r\t",
        "!$'()*, (a), b!",
        "",
    ],
)
def test_same_as_quote_plus(quote: Callable[[str], str], text: str) -> None:
    assert quote(text) == quote_plus(text)
    assert quote(text) == quote_plus(text)  # cached characters too


def test_the_c_quoter_is_used_when_importable() -> None:
    pytest.importorskip("yarl._quoting_c")
    assert _forms._C_QUOTE is not None
    assert form_quote is _forms._fast_form_quote


@settings(max_examples=500, deadline=None)
@given(st.text())
@example("!$'()*,")
@example("a (b), c!")
@example("+ %2B ~*\U0001f600")
def test_c_and_pure_quoters_are_byte_identical(text: str) -> None:
    assert form_quote(text) == pure_form_quote(text) == quote_plus(text)


def test_every_bmp_character() -> None:
    for cp in range(0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        expected = quote_plus(ch + "x" + ch)
        assert form_quote(ch + "x" + ch) == expected
        assert pure_form_quote(ch + "x" + ch) == expected


@pytest.mark.parametrize("quote", QUOTERS)
@pytest.mark.parametrize("text", ["a\ud800", "\udcff", "x\ud83dy"])
def test_lone_surrogate_raises_like_quote_plus(quote: Callable[[str], str], text: str) -> None:
    with pytest.raises(UnicodeEncodeError):
        quote_plus(text)
    with pytest.raises(UnicodeEncodeError):
        quote(text)
