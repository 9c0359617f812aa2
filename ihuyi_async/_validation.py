"""Local validation of numbers, content and template variables, and the segment rule.

Pure: no I/O. A message this module refuses raises the exception class and code
the provider would have answered (``local=True``), so callers handle one set of
errors whether the provider or this library said no.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

from ._codes import error_for

__all__ = [
    "KINDS",
    "Kind",
    "SINGLE_SEGMENT",
    "MULTI_SEGMENT",
    "TRIAL_TEMPLATE",
    "check_kind",
    "count_segments",
    "find_emoji",
    "join_variables",
    "normalize_mobile",
    "render_template",
    "validate_content",
]

#: Characters in a single-segment message (signature included).
SINGLE_SEGMENT = 70
#: Characters per segment once a message is long.
MULTI_SEGMENT = 67
#: The provider's trial template (id 1), usable by every account.
TRIAL_TEMPLATE = "您的验证码是：【变量】。请不要把验证码泄露给其他人。"
VARIABLE = "【变量】"

_MOBILE = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")  # ASCII digits only, as the provider
# Emoji as the provider refuses them (4074): anything outside the Basic Multilingual
# Plane (4-byte UTF-8, where all pictographic emoji live), plus the emoji
# presentation selector and the keycap combiner that turn BMP symbols into emoji.
_EMOJI = re.compile("[\U00010000-\U0010ffff\ufe0f\u20e3]")


#: What a send is: ``"verification"`` (a code: the 5-per-day verification rule applies)
#: or ``"notification"`` (anything else; the same as no kind).
Kind = Literal["verification", "notification"]
KINDS: frozenset[str] = frozenset(get_args(Kind))


def check_kind(kind: object) -> Kind | None:
    """``kind`` itself when it is one of :data:`KINDS` or ``None``.

    A misspelt kind (``"verfication"``) would silently skip the verification rule, so it
    is refused.

    :raises TypeError: not a string.
    :raises ValueError: not one of :data:`KINDS`.
    """
    if kind is None:
        return None
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str or None, not {type(kind).__name__}")
    if kind == "verification":
        return "verification"
    if kind == "notification":
        return "notification"
    raise ValueError(f"kind must be 'verification', 'notification' or None, not {kind!r}")


def normalize_mobile(mobile: str) -> str:
    """Return the 11-digit mainland number, or raise the provider's error for it.

    Accepts surrounding whitespace and a ``+86``/``86`` prefix; anything else
    that is not ``1[3-9]`` followed by 9 digits is refused.

    :raises TypeError: ``mobile`` is not a string.
    :raises InvalidRequestError: 403 (blank) or 406 (not a mainland mobile number).
    """
    if not isinstance(mobile, str):
        raise TypeError(f"mobile must be a str, not {type(mobile).__name__}")
    text = mobile.strip()
    if not text:
        raise error_for(403, local=True)
    match = _MOBILE.fullmatch(text)
    if match is None:
        raise error_for(406, local=True, mobile=text)
    return match.group(1)


def find_emoji(content: str) -> str | None:
    """The first emoji in ``content``, or ``None``."""
    match = _EMOJI.search(content)
    return match.group(0) if match else None


def validate_content(content: str, *, max_length: int, mobile: str = "") -> None:
    """Refuse blank, emoji-bearing or over-long content as the provider would.

    :raises TypeError: ``content`` is not a string.
    :raises InvalidRequestError: 404, blank content.
    :raises ContentRejectedError: 4074 (emoji, or a character no encoding can carry: a lone
        surrogate) or 4073 (longer than ``max_length``).
    """
    if not isinstance(content, str):
        raise TypeError(f"content must be a str, not {type(content).__name__}")
    if not content.strip():
        raise error_for(404, local=True, mobile=mobile)
    if not content.isascii():
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no bytes can carry it
            raise error_for(
                4074,
                f"短信内容含有无法编码的字符 (position {exc.start}: not encodable as UTF-8)",
                local=True,
                mobile=mobile,
            ) from None
    if _EMOJI.search(content) is not None:
        raise error_for(4074, local=True, mobile=mobile)
    if len(content) > max_length:
        raise error_for(
            4073,
            f"短信内容超出长度限制 ({len(content)} > {max_length} characters)",
            local=True,
            mobile=mobile,
        )


def count_segments(content: str, signature: str = "") -> int:
    """Billed segments: up to 70 characters is one; longer is billed per 67.

    Every character counts 1. ``signature`` (e.g. ``【互亿无线】``) is counted too,
    unless the content already contains it.
    """
    length = len(content)
    if signature and signature not in content:
        length += len(signature)
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // MULTI_SEGMENT)


def join_variables(variables: Iterable[object]) -> str:
    """Validate template variables and join them with ``|`` as the provider expects.

    :raises TypeError: ``variables`` is a plain string (a common slip) or holds a non-scalar.
    :raises ValueError: no variables, an empty variable, or one containing ``|``.
    """
    if isinstance(variables, (str, bytes)):
        raise TypeError("variables must be a list of values, not a single string")
    values: list[str] = []
    for index, value in enumerate(variables):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"template variable {index} must be a str or int, not {type(value).__name__}")
        text = str(value)
        if not text.strip():
            raise ValueError(f"template variable {index} is empty")
        if "|" in text:
            raise ValueError(f"template variable {index} contains '|', the provider's separator")
        if _EMOJI.search(text) is not None:
            raise error_for(4074, local=True)
        values.append(text)
    if not values:
        raise ValueError("a template send needs at least one variable")
    return "|".join(values)


def render_template(template: str, variables: Sequence[str]) -> str:
    """Fill ``【变量】`` placeholders in order (used to count segments locally)."""
    parts = template.split(VARIABLE)
    if len(parts) - 1 != len(variables):
        raise ValueError(
            f"the template has {len(parts) - 1} variable(s) but {len(variables)} were given"
        )
    out = [parts[0]]
    for value, tail in zip(variables, parts[1:], strict=True):
        out.append(value)
        out.append(tail)
    return "".join(out)
