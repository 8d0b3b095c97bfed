"""asyncio variant: the same client, its network calls run in worker threads; cache hits stay
on the event loop (no thread hop)."""

from __future__ import annotations

import asyncio
import time
from typing import Dict, Iterable, List, Optional

from .client import Secret, SecretInfo, SecretsClient


class AsyncSecretsClient:
    def __init__(self, url: str, token: str, **options) -> None:
        self._sync = SecretsClient(url, token, **options)

    async def get(self, tenant: str, key: str) -> str:
        e = self._sync._cache.get((tenant, key))
        if e is not None and time.monotonic() < e.fresh_until:
            self._sync._stats["hits"] += 1
            return e.value
        return (await asyncio.to_thread(self._sync.get_entry, tenant, key)).value

    async def get_entry(self, tenant: str, key: str) -> Secret:
        return await asyncio.to_thread(self._sync.get_entry, tenant, key)

    async def get_many(self, tenant: str, keys: Iterable[str]) -> Dict[str, str]:
        return await asyncio.to_thread(self._sync.get_many, tenant, list(keys))

    async def list(self, tenant: str) -> List[SecretInfo]:
        return await asyncio.to_thread(self._sync.list, tenant)

    async def set(self, tenant: str, key: str, value: str, *, cas: Optional[int] = None) -> int:
        return await asyncio.to_thread(self._sync.set, tenant, key, value, cas=cas)

    async def delete(self, tenant: str, key: str) -> None:
        await asyncio.to_thread(self._sync.delete, tenant, key)

    def stats(self) -> dict:
        return self._sync.stats()

    async def aclose(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> "AsyncSecretsClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "Async" + repr(self._sync)
