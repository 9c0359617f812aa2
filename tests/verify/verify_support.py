"""Shared by the verification suites: the ``backend`` fixture's record and the factory type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ihuyi_async.limiter import Store
from ihuyi_async.verify import MemoryVerifyStore, RedisVerifyStore, Verifier, VerifyStore

MakeVerifier = Callable[..., Verifier]


@dataclass
class Backend:
    """One pair of stores: the codes' and the limiter's, and a way to read all they hold."""

    kind: str
    store: VerifyStore
    limiter_store: Store
    client: Any = None  # the redis client, for the redis backend
    prefix: str = ""  # every redis key of the test starts with it

    def twin(self) -> VerifyStore:
        """The code store as another worker sees it: the same data through its own object."""
        if isinstance(self.store, RedisVerifyStore):
            return RedisVerifyStore(self.client, prefix=self.store.prefix)
        return self.store  # memory is one process: the workers are its tasks

    async def contents(self) -> str:
        """Every key and value the stores hold, as one text (to look for clear codes)."""
        if self.client is None:
            assert isinstance(self.store, MemoryVerifyStore)
            records = self.store._records  # test-only look inside: what memory holds
            return " ".join(f"{key}={record.dump()}" for key, record in records.items())
        out: list[str] = []
        async for key in self.client.scan_iter(match=f"{self.prefix}*"):
            out.append(key.decode())
            if (await self.client.type(key)) == b"hash":
                values = await self.client.hgetall(key)
                out.extend(f"{k.decode()}={v.decode()}" for k, v in values.items())
            elif (await self.client.type(key)) == b"string":
                out.append((await self.client.get(key)).decode())
        return " ".join(out)
