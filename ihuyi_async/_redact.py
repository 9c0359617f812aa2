"""Masking of phone numbers and digests of content, for logs, reprs and errors.

Pure helpers: nothing here does I/O. The API key never reaches this module.
"""

from __future__ import annotations

import hashlib

__all__ = ["content_digest", "mask_mobile"]


def mask_mobile(mobile: object) -> str:
    """Mask a phone number for display: ``13800138000`` -> ``138****8000``.

    Anything shorter than 7 characters is masked entirely, so a malformed
    number never leaks through either.
    """
    text = str(mobile)
    if len(text) < 7:
        return "*" * len(text)
    return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}"


def content_digest(content: str) -> str:
    """A short, stable fingerprint of message content (first 12 hex digits of SHA-256).

    Lets a user match an unknown outcome to the message they sent without the
    content itself appearing in logs or exceptions.
    """
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:12]
