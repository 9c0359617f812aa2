"""The provider's content, number, template and signature rules, as the emulator applies them.

Owns the emulator's own reading of the provider's documentation: its SMS interface
document (v3.3) and usage guide for the dynamic password, the 300-character limit, emoji,
mainland numbers and the trial template; public integrations of the JSON interface
(``api.ihuyi.com/sms/Submit.json``) for template sends; common industry practice (*not
published by the provider*) for the 70/67 segment rule. It is written apart from the
client's ``_validation`` and ``_signing`` on purpose: a test double that shares the code
under test passes every test when that code is wrong.
``tests/unit/test_emulator_independence.py`` checks with hypothesis that the two agree.
Pure functions; nothing here imports the client.

* **Length**: every character (Chinese, letter, digit, symbol) counts 1; up to 70 is one
  message, longer is billed per 67 (71-134 -> 2, 135-201 -> 3, ...).
* **Emoji** (4074): a character that takes four bytes in UTF-8 (everything beyond the
  Basic Multilingual Plane, where the pictographs are; storage in MySQL's 3-byte
  ``utf8`` is the usual reason Chinese platforms refuse them), and the two BMP code
  points that only occur inside emoji sequences: U+FE0F (emoji presentation) and
  U+20E3 (keycap). *A guess*: the provider does not publish its test.
* **Numbers**: 11 ASCII digits ``1[3-9]xxxxxxxxx`` after trimming whitespace and an
  optional ``+86`` / ``86`` prefix (*a guess* for the prefix); full-width or other
  non-ASCII digits are refused (406), as PHP's ``\\d`` without ``/u`` does.
* **Templates**: ``【变量】`` placeholders filled in order by the ``|``-separated
  variables; a count that does not match is 4072.
* **Signatures**: ``md5`` hex of the fields concatenated in the documented order; the
  check ignores the case of the hex digits (the vendor's Java ``MD5Encode`` is upper case).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "PLACEHOLDER",
    "TRIAL_TEMPLATE_TEXT",
    "content_code",
    "extract_code",
    "fill_template",
    "has_emoji",
    "is_verification",
    "md5_hex",
    "mobile_code",
    "same_hex",
    "segments",
]

#: The placeholder of a template variable.
PLACEHOLDER = "【变量】"
#: The provider's trial template (id 1).
TRIAL_TEMPLATE_TEXT = "您的验证码是：" + PLACEHOLDER + "。请不要把验证码泄露给其他人。"

_ONE_MESSAGE = 70
_PER_SEGMENT = 67
_EMOJI_ONLY = frozenset("\ufe0f\u20e3")
_ASCII_DIGITS = frozenset("0123456789")
_CODE = re.compile(r"(?<![0-9])([0-9]{4,10})(?![0-9])")
_KEYWORDS = ("验证码", "校验码", "动态码", "确认码", "激活码", "code")


def segments(text: str) -> int:
    """Billed messages for ``text``: 1 up to 70 characters, else one per 67 started."""
    length = len(text)
    if length <= _ONE_MESSAGE:
        return 1
    return (length + _PER_SEGMENT - 1) // _PER_SEGMENT


def has_emoji(text: str) -> bool:
    """Whether the provider would refuse ``text`` with 4074."""
    return any(ord(ch) > 0xFFFF or ch in _EMOJI_ONLY for ch in text)


def content_code(text: str, max_length: int) -> int:
    """0 when full content is acceptable, else the provider's code: 404 blank, 4074
    emoji, 4073 longer than ``max_length``."""
    if not text.strip():
        return 404
    if has_emoji(text):
        return 4074
    if len(text) > max_length:
        return 4073
    return 0


def mobile_code(text: str) -> tuple[int, str]:
    """``(0, number)`` for an acceptable mainland mobile number, else ``(403 or 406, "")``."""
    number = text.strip()
    if not number:
        return 403, ""
    if number.startswith("+86"):
        number = number[3:]
    elif number.startswith("86") and len(number) == 13:
        number = number[2:]
    if (
        len(number) == 11
        and number[0] == "1"
        and number[1] in "3456789"
        and all(ch in _ASCII_DIGITS for ch in number)
    ):
        return 0, number
    return 406, ""


def fill_template(template: str, variables: list[str]) -> str | None:
    """``template`` with each placeholder replaced, in order; ``None`` when the count differs."""
    pieces = template.split(PLACEHOLDER)
    if len(pieces) != len(variables) + 1:
        return None
    out = pieces[0]
    for index, value in enumerate(variables):
        out += value + pieces[index + 1]
    return out


def md5_hex(text: str, encoding: str = "utf-8") -> str:
    """Lower-case hex MD5 of ``text`` in ``encoding`` (``""`` when it cannot be encoded)."""
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        return ""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def same_hex(given: str, expected: str) -> bool:
    """Whether ``given`` is the hex digest ``expected`` in any letter case."""
    return bool(expected) and given.lower() == expected


def is_verification(content: str) -> bool:
    """The emulator's heuristic for a verification-code message: a standalone run of 4
    to 8 digits and one of 验证码, 校验码, 动态码, 确认码, 激活码 or ``code`` (any case)."""
    lowered = content.lower()
    return any(word in lowered for word in _KEYWORDS) and _CODE.search(content) is not None


def extract_code(content: str) -> str | None:
    """The first run of 4 to 10 digits after the first verification keyword (or anywhere)."""
    lowered = content.lower()
    for word in _KEYWORDS:
        index = lowered.find(word)
        if index >= 0:
            match = _CODE.search(content, index)
            if match is not None:
                return match.group(1)
    match = _CODE.search(content)
    return match.group(1) if match else None
