"""The batch journal: an append-only JSON-lines record that makes a batch resumable.

For every message a batch writes, flushed to the OS before going on:

* ``{"id": …, "status": "pending", "fp": …, …}`` right before its request goes on the wire;
* ``{"id": …, "status": <final>, …}`` when its outcome is known
  (``accepted``, ``rejected``, ``not_sent``, ``unknown``, ``invalid``, ``refused``);
* ``{"id": …, "status": <status>, "resolved": "receipt" | "user"}`` when an unresolved
  entry is reconciled (``ihuyi-async journal FILE --receipts …`` or ``--mark-…``).

The key (``id``) is the message's own id, or without one a key made of its number, its
content and its occurrence (see :func:`ihuyi_async._batch.message_key`). ``fp`` is the
fingerprint of what was sent (number, and text or template and variables): a rerun
checks it, so an id whose message changed is a conflict, never a silent skip.

On a rerun, a message whose last entry is ``accepted`` is skipped as already
accepted; one whose last entry is ``pending`` (the process died while it was
on the wire) or ``unknown`` is skipped as unknown and listed for the user to
reconcile (e.g. from delivery receipts). Everything else provably did not reach
the provider, or was refused by it, and is sent again. So a batch killed at any
instant and resumed sends each message at most once.

Entries hold the message key, the masked number, digests, the smsid or error code,
the input line when known, and a timestamp: never the content or the full number.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["FINAL_SKIP", "UNRESOLVED", "Journal", "JournalEntry"]

#: Final statuses that mean "do not send again".
FINAL_SKIP = frozenset({"accepted", "unknown", "pending"})
#: Statuses whose outcome nobody knows yet: reconcile these.
UNRESOLVED = frozenset({"unknown", "pending"})
# Fields an entry inherits from the earlier entries of the same key when it does not repeat them.
_STICKY = ("fp", "mobile", "digest", "line")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The last word of a journal on one message key.

    :ivar fp: fingerprint of the message sent under this key (number and content).
    :ivar mobile: the masked number.
    :ivar line: the input line, when the input had one.
    :ivar at: when the entry was written (Unix time).
    """

    id: str
    status: str
    smsid: str | None = None
    code: int | None = None
    reason: str | None = None
    fp: str | None = None
    mobile: str | None = None
    digest: str | None = None
    line: int | None = None
    at: float | None = None
    resolved: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


class Journal:
    """Append-only outcome log of one batch, keyed by message id.

    :param path: the file; created if missing, read and then appended to if present.
    :param fsync: also ``fsync`` each entry (survives power loss, not only a crash; slower).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._last: dict[str, JournalEntry] = {}
        self.corrupt_lines = 0
        if self.path.exists():
            self._load()
        self._file: IO[str] | None = None

    def _load(self) -> None:
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    data = json.loads(line)
                    if not isinstance(data, dict):
                        raise TypeError("not an object")
                    entry = self._entry(str(data["id"]), str(data["status"]), data)
                except (ValueError, KeyError, TypeError):
                    # A line torn by a crash mid-write: the entry before it still stands.
                    self.corrupt_lines += 1
                    continue
                self._last[entry.id] = entry

    def _entry(self, key: str, status: str, data: dict[str, Any]) -> JournalEntry:
        merged = dict(data)
        before = self._last.get(key)
        if before is not None:
            for name in _STICKY:
                if merged.get(name) is None:
                    merged[name] = getattr(before, name)
        code, line, at = merged.get("code"), merged.get("line"), merged.get("at")
        return JournalEntry(
            id=key,
            status=status,
            smsid=_text(merged.get("smsid")),
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            reason=_text(merged.get("reason")),
            fp=_text(merged.get("fp")),
            mobile=_text(merged.get("mobile")),
            digest=_text(merged.get("digest")),
            line=line if isinstance(line, int) and not isinstance(line, bool) else None,
            at=float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None,
            resolved=_text(merged.get("resolved")),
        )

    def previous(self, message_id: str) -> JournalEntry | None:
        """The last entry for ``message_id`` from earlier runs (or this one)."""
        return self._last.get(message_id)

    def open(self) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def write(self, message_id: str, status: str, **fields: Any) -> None:
        """Append one entry and flush it to the OS before returning."""
        if self._file is None:
            self.open()
        assert self._file is not None
        record: dict[str, Any] = {"id": message_id, "status": status, "at": round(time.time(), 3)}
        record.update({k: v for k, v in fields.items() if v is not None})
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._last[message_id] = self._entry(message_id, status, record)

    def entries(self) -> list[JournalEntry]:
        """The last entry of every key, in the order the keys first appeared."""
        return list(self._last.values())

    def counts(self) -> dict[str, int]:
        """How many keys end in each status."""
        counts: dict[str, int] = {}
        for entry in self._last.values():
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts

    def unresolved(self) -> list[JournalEntry]:
        """Entries whose outcome is unknown (``unknown`` or ``pending``): reconcile these."""
        return [e for e in self._last.values() if e.status in UNRESOLVED]

    def resolve(self, message_id: str, status: str, *, by: str, smsid: str | None = None) -> None:
        """Record how an unresolved entry was reconciled.

        :param status: ``"accepted"`` (it arrived: never resend) or ``"not_sent"`` (it did
            not: the next run sends it).
        :param by: ``"receipt"`` (a delivery receipt matched it) or ``"user"``.
        :raises KeyError: no entry has this key.
        :raises ValueError: a status other than those two.
        """
        if message_id not in self._last:
            raise KeyError(f"the journal has no entry {message_id!r}")
        if status not in ("accepted", "not_sent"):
            raise ValueError(f"an entry resolves to 'accepted' or 'not_sent', not {status!r}")
        self.write(message_id, status, smsid=smsid, resolved=by)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, entries={len(self._last)})"


def _text(value: object) -> str | None:
    return None if value is None else str(value)
