"""Masking of phone numbers and digests of content, for logs, reprs and errors.

Pure helpers: nothing here does I/O. The API key never reaches this module.
"""

from __future__ import annotations

import hashlib

__all__ = ["content_digest", "mask_mobile"]


def mask_mobile(mobile: object) -> str:
    """Mask a phone number for display: ``13800138000`` -> ``138****8000``.

    From 11 characters on, the first 3 and the last 4 show. Anything shorter is not a
    mainland mobile, and most of it may be the whole number (a 7- or 8-digit local
    number, a mistyped mobile): at least 6 characters are masked and at most the last
    4 show (``1234567`` -> ``******7``, ``12345678`` -> ``******78``,
    ``0101234567`` -> ``******4567``); 6 characters or fewer are masked entirely.
    """
    text = str(mobile)
    if len(text) >= 11:
        return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}"
    shown = max(0, min(4, len(text) - 6))
    return "*" * (len(text) - shown) + text[len(text) - shown :]


def content_digest(content: str) -> str:
    """A short, stable fingerprint of message content (first 12 hex digits of SHA-256).

    Lets a user match an unknown outcome to the message they sent without the
    content itself appearing in logs or exceptions.
    """
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:12]
