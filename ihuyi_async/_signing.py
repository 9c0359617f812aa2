"""The provider's signatures ("dynamic passwords"). Pure: time is passed in, nothing is read.

* Submit: ``md5(account + apikey + mobile + content + time)``, over the content
  actually sent (in template mode the ``|``-joined variables);
* GetNum: ``md5(account + apikey + time)``;
* AddTemplate: ``md5(apikey)`` as the password.

All over UTF-8 bytes, lowercase hex; ``time`` is the 10-digit Unix timestamp
sent in the ``time`` field. With these the API key never leaves the process.
"""

from __future__ import annotations

import hashlib

__all__ = ["Signer", "getnum_password", "key_digest", "submit_password"]


def submit_password(account: str, api_key: str, mobile: str, content: str, timestamp: int) -> str:
    """Dynamic password of a Submit call."""
    raw = f"{account}{api_key}{mobile}{content}{timestamp}"
    return hashlib.md5(raw.encode("utf-8"), usedforsecurity=False).hexdigest()


def getnum_password(account: str, api_key: str, timestamp: int) -> str:
    """Dynamic password of a GetNum call."""
    raw = f"{account}{api_key}{timestamp}"
    return hashlib.md5(raw.encode("utf-8"), usedforsecurity=False).hexdigest()


def key_digest(api_key: str) -> str:
    """The 32-character lowercase MD5 of the API key (AddTemplate's password)."""
    return hashlib.md5(api_key.encode("utf-8"), usedforsecurity=False).hexdigest()


class Signer:
    """Holds one account's credentials and signs calls; the only object that keeps the key.

    The ``account + apikey`` prefix is hashed once; each signature then costs
    one ``copy()`` and one ``update()`` of the MD5 state.
    """

    __slots__ = ("_prefix", "_key_digest", "account")

    def __init__(self, account: str, api_key: str) -> None:
        self.account = account
        self._prefix = hashlib.md5(f"{account}{api_key}".encode(), usedforsecurity=False)
        self._key_digest = key_digest(api_key)

    def submit(self, mobile: str, content: str, timestamp: int) -> str:
        h = self._prefix.copy()
        h.update(f"{mobile}{content}{timestamp}".encode())
        return h.hexdigest()

    def getnum(self, timestamp: int) -> str:
        h = self._prefix.copy()
        h.update(str(timestamp).encode())
        return h.hexdigest()

    @property
    def key_digest(self) -> str:
        return self._key_digest

    def __repr__(self) -> str:
        return f"Signer(account={self.account!r}, api_key=<hidden>)"
