"""The batch journal: an append-only JSON-lines record that makes a batch resumable.

For every message a batch writes, flushed to the OS before going on:

* ``{"id": …, "status": "pending", …}`` right before its request goes on the wire;
* ``{"id": …, "status": <final>, …}`` when its outcome is known
  (``accepted``, ``rejected``, ``not_sent``, ``unknown``, ``invalid``, ``refused``).

On a rerun, a message whose last entry is ``accepted`` is skipped as already
accepted; one whose last entry is ``pending`` (the process died while it was
on the wire) or ``unknown`` is skipped as unknown and listed for the user to
reconcile (e.g. from delivery receipts). Everything else provably did not reach
the provider, or was refused by it, and is sent again. So a batch killed at any
instant and resumed sends each message at most once.

Entries hold the message id, the masked number, a content digest, the smsid or
error code, and a timestamp: never the content or the full number.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["FINAL_SKIP", "Journal", "JournalEntry"]

#: Final statuses that mean "do not send again".
FINAL_SKIP = frozenset({"accepted", "unknown", "pending"})


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The last word of a journal on one message id."""

    id: str
    status: str
    smsid: str | None = None
    code: int | None = None
    reason: str | None = None


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
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    data = json.loads(line)
                    entry = JournalEntry(
                        id=str(data["id"]),
                        status=str(data["status"]),
                        smsid=data.get("smsid"),
                        code=data.get("code"),
                        reason=data.get("reason"),
                    )
                except (ValueError, KeyError, TypeError):
                    # A line torn by a crash mid-write: the entry before it still stands.
                    self.corrupt_lines += 1
                    continue
                self._last[entry.id] = entry

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
        record = {"id": message_id, "status": status, "at": round(time.time(), 3)}
        record.update({k: v for k, v in fields.items() if v is not None})
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._last[message_id] = JournalEntry(
            id=message_id,
            status=status,
            smsid=fields.get("smsid"),
            code=fields.get("code"),
            reason=fields.get("reason"),
        )

    def unresolved(self) -> list[JournalEntry]:
        """Entries whose outcome is unknown (``unknown`` or ``pending``): reconcile these."""
        return [e for e in self._last.values() if e.status in ("unknown", "pending")]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, entries={len(self._last)})"
