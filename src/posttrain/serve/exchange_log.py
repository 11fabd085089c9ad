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
from posttrain.store.coalesce import Coalescer


class ExchangeLog:
    """Group commit of chat exchanges, one gathering group per event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._groups: dict[asyncio.AbstractEventLoop, Coalescer] = {}

    async def record(self, exchange: chat_queries.Exchange) -> None:
        """Return once `exchange` is committed (raises what its write raised)."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = _group(self.store)
        await group.submit(exchange)


def _group(store: Store) -> Coalescer:
    return Coalescer(store, chat_queries.record_exchanges, chat_queries.record_exchange)
