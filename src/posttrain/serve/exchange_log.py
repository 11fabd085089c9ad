"""Committing chat exchanges: the exchanges of concurrent requests share one write function.

A chat request hands its exchange (store/chat.py: conversation, transcript, completions) to
`ExchangeLog.record` and gets control back only after the transaction holding it is committed.
While one group is being committed the next one gathers, so under load each commit carries
many exchanges written as one multi-row insert per table (`record_exchanges`), as feedback
events are; alone, an exchange is written at once. If a group fails, its exchanges are retried
one by one, so a bad one fails alone and the others are still stored.
"""

from __future__ import annotations

import asyncio

from posttrain.store import chat as chat_queries
from posttrain.store._store import Store


class ExchangeLog:
    """Group commit of chat exchanges, one gathering group per event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._groups: dict[asyncio.AbstractEventLoop, _Group] = {}

    async def record(self, exchange: chat_queries.Exchange) -> None:
        """Return once `exchange` is committed (raises what its write raised)."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = _Group(self.store)
        await group.add(exchange)


class _Group:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[tuple[chat_queries.Exchange, asyncio.Future]] = []
        self.running = False
        self.task: asyncio.Task | None = None  # referenced: the loop keeps only a weak one

    async def add(self, exchange: chat_queries.Exchange) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self.pending.append((exchange, fut))
        if not self.running:
            self.running = True
            self.task = loop.create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                exchanges = [ex for ex, _ in batch]
                try:
                    await self.store.awrite(lambda s: chat_queries.record_exchanges(s, exchanges))
                except Exception as exc:
                    if len(batch) > 1:
                        await self._one_by_one(batch)
                    elif not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self.running = False

    async def _one_by_one(self, batch: list[tuple[chat_queries.Exchange, asyncio.Future]]) -> None:
        for ex, fut in batch:
            try:
                await self.store.awrite(lambda s, ex=ex: chat_queries.record_exchange(s, ex))
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(None)
