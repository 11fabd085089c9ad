"""Group commit for rows that concurrent requests hand in: one write function for many.

While one group is being committed the next one gathers, so under load each commit carries
many items (one multi-row insert); alone, an item is written at once. If a group fails, its
items are retried one by one, so a bad one fails alone and the others are still stored. Every
caller gets control back only after the transaction holding its item is committed. Used by
feedback ingest (feedback/service.py) and the chat exchanges (serve/exchange_log.py); one
Coalescer per event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from posttrain.store._store import Store


class Coalescer:
    """`write_many(session, items)` returns one result per item (or None: every result None);
    `write_one(session, item)` is the retry of a failed group's items one by one."""

    def __init__(self, store: Store, write_many: Callable[[Any, list[Any]], list[Any] | None],
                 write_one: Callable[[Any, Any], Any]) -> None:
        self.store, self.write_many, self.write_one = store, write_many, write_one
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.running = False
        self.task: asyncio.Task | None = None  # referenced: the loop keeps only a weak one

    async def submit(self, item: Any) -> Any:
        """Return `item`'s result once it is committed (raises what its write raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self.pending.append((item, fut))
        if not self.running:
            self.running = True
            self.task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                items = [item for item, _ in batch]
                try:
                    results = await self.store.awrite(lambda s: self.write_many(s, items))
                except Exception as exc:
                    if len(batch) > 1:
                        await self._one_by_one(batch)
                    elif not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                for (_, fut), result in zip(batch, results if results is not None else [None] * len(batch)):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self.running = False

    async def _one_by_one(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        for item, fut in batch:
            try:
                result = await self.store.awrite(lambda s, item=item: self.write_one(s, item))
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(result)
