"""form_quote is quote_plus, byte for byte (the send path's content encoding)."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from ihuyi_async._forms import form_quote


@pytest.mark.parametrize(
    "text",
    [
        "您的验证码是：1234。请不要把验证码泄露给其他人。",
        "hello world 123 &=+%~._-/?#",
        "【互亿无线】您的订单 #123 已发货，请查收！",
        "a b\u00e9\x00\n\r\t",
        "",
    ],
)
def test_same_as_quote_plus(text: str) -> None:
    assert form_quote(text) == quote_plus(text)
    assert form_quote(text) == quote_plus(text)  # cached characters too


def test_every_bmp_character() -> None:
    for cp in range(0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        assert form_quote(ch + "x" + ch) == quote_plus(ch + "x" + ch)


def test_lone_surrogate_raises_like_quote_plus() -> None:
    with pytest.raises(UnicodeEncodeError):
        quote_plus("a\ud800")
    with pytest.raises(UnicodeEncodeError):
        form_quote("a\ud800")
