"""Masking of phone numbers (``mask_mobile``) for logs, reprs and errors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ihuyi_async._redact import mask_mobile


def test_mainland_and_longer_numbers_show_three_and_four() -> None:
    assert mask_mobile("13800138000") == "138****8000"
    assert mask_mobile("852 51234567") == "852*****4567"
    assert mask_mobile("010-12345678") == "010*****5678"


def test_short_numbers_show_at_most_the_last_four() -> None:
    # A 7-digit local number was shown in full, an 8-digit one with a single star.
    assert mask_mobile("1234567") == "******7"
    assert mask_mobile("12345678") == "******78"
    assert mask_mobile("123456789") == "******789"
    assert mask_mobile("0101234567") == "******4567"
    assert mask_mobile("123456") == "******"
    assert mask_mobile("12") == "**"
    assert mask_mobile("") == ""


@given(st.text(alphabet="0123456789+- ", max_size=20))
def test_never_shows_more_than_seven_and_hides_at_least_six_below_eleven(text: str) -> None:
    masked = mask_mobile(text)
    assert len(masked) == len(text)
    shown = sum(1 for a, b in zip(masked, text, strict=True) if a == b and b != "*")
    assert shown <= 7
    if len(text) < 11:
        assert masked.count("*") >= min(6, len(text)) and shown <= 4
        assert masked[: max(0, len(text) - 4)] == "*" * max(0, len(text) - 4)
