"""Recording feedback: the Python API behind POST /v1/feedback.

    service = FeedbackService(store)
    result = service.record(user_id, {"completion_id": cid, "kind": "thumbs", "value": 1})
    result.event, result.created   # created is False for a repeated idempotency key

The hot path does no read when it can avoid one: completion ownership comes from an in-process
LRU (completion id -> owner, request, prompt) filled when completions are created, with a
database read on a miss. The events of concurrent requests are coalesced into one multi-row
Core insert (ON CONFLICT DO NOTHING for idempotency keys) per write of the group-commit writer.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from posttrain.feedback.kinds import Feedback, InvalidFeedback, validate
from posttrain.ids import new_id
from posttrain.store import chat as chat_queries
from posttrain.store import feedback as feedback_queries
from posttrain.store._store import Store
from posttrain.store.coalesce import Coalescer
from posttrain.store.users import iso

__all__ = ["CompletionNotFound", "FeedbackService", "InvalidFeedback", "Recorded"]

CompletionRef = tuple[str, str, str]  # (user_id, request_id, prompt_key)


class CompletionNotFound(LookupError):
    """The completion does not exist or is not the caller's (the API answers 404 for both)."""


@dataclass(frozen=True)
class Recorded:
    event: dict[str, Any]
    created: bool  # False: the idempotency key was used before; `event` is the first one


class CompletionCache:
    """A small thread-safe LRU of completion id -> (user_id, request_id, prompt_key)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._items: OrderedDict[str, CompletionRef] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, completion_id: str) -> CompletionRef | None:
        with self._lock:
            ref = self._items.get(completion_id)
            if ref is not None:
                self._items.move_to_end(completion_id)
            return ref

    def put(self, completion_id: str, ref: CompletionRef) -> None:
        with self._lock:
            self._items[completion_id] = ref
            self._items.move_to_end(completion_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class FeedbackService:
    """Validates and stores feedback events for one store."""

    def __init__(self, store: Store, cache_size: int = 100_000) -> None:
        self.store = store
        self.completions = CompletionCache(cache_size)
        # One batcher per event loop (a test client may run the app on several loops).
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()

    def remember(self, completion_id: str, user_id: str, request_id: str, prompt_key: str) -> None:
        """Tell the cache about a committed completion (the chat server calls this)."""
        self.completions.put(completion_id, (user_id, request_id, prompt_key))

    # -- lookups -----------------------------------------------------------------------------

    def _missing(self, ids: list[str]) -> list[str]:
        return [i for i in ids if self.completions.get(i) is None]

    def _load(self, ids: list[str]) -> None:
        with self.store.session() as s:
            for cid, ref in chat_queries.completion_refs(s, ids).items():
                self.completions.put(cid, ref)

    def _check(self, user_id: str, fb: Feedback) -> None:
        """Ownership and pairwise rules, on cached references."""
        ref = self.completions.get(fb.completion_id)
        if ref is None or ref[0] != user_id:
            raise CompletionNotFound(f"completion {fb.completion_id!r} not found")
        if fb.other_completion_id is not None:
            other = self.completions.get(fb.other_completion_id)
            if other is None or other[0] != user_id:
                raise CompletionNotFound(f"completion {fb.other_completion_id!r} not found")
            if other[1] != ref[1] and other[2] != ref[2]:
                raise InvalidFeedback("other_completion_id: must answer the same prompt as completion_id")

    def _row(self, user_id: str, fb: Feedback) -> dict[str, Any]:
        return {
            "id": new_id(), "user_id": user_id, "completion_id": fb.completion_id, "kind": fb.kind,
            "value": fb.value, "reasons": fb.reasons, "comment": fb.comment,
            "other_completion_id": fb.other_completion_id, "positions": fb.positions,
            "edited_text": fb.edited_text, "signal": fb.signal,
            "idempotency_key": fb.idempotency_key, "created_at": datetime.now(timezone.utc),
        }

    @staticmethod
    def _result(row: dict[str, Any], earlier: dict[str, Any] | None) -> Recorded:
        if earlier is not None:
            return Recorded(earlier, created=False)
        event = feedback_queries.event_dict({**row, "created_at": iso(row["created_at"])})
        return Recorded(event, created=True)

    # -- public API --------------------------------------------------------------------------

    def record(self, user_id: str, payload: dict[str, Any] | Feedback) -> Recorded:
        """Validate and store one event (blocking). Raises InvalidFeedback or CompletionNotFound;
        nothing is stored when it raises."""
        fb = payload if isinstance(payload, Feedback) else validate(payload)
        ids = [fb.completion_id] + ([fb.other_completion_id] if fb.other_completion_id else [])
        missing = self._missing(ids)
        if missing:
            self._load(missing)
        self._check(user_id, fb)
        row = self._row(user_id, fb)
        return self._result(row, self.store.write(lambda s: feedback_queries.insert_event(s, row)))

    async def arecord(self, user_id: str, payload: dict[str, Any] | Feedback) -> Recorded:
        """`record` for async servers: the write is awaited, a cache miss is read in a thread."""
        fb = payload if isinstance(payload, Feedback) else validate(payload)
        ids = [fb.completion_id] + ([fb.other_completion_id] if fb.other_completion_id else [])
        missing = self._missing(ids)
        if missing:
            import anyio.to_thread

            await anyio.to_thread.run_sync(self._load, missing)
        self._check(user_id, fb)
        row = self._row(user_id, fb)
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self.store)
        return self._result(row, await batcher.insert(row))


class _Batcher(Coalescer):
    """Feedback events of concurrent requests in one multi-row insert (store/coalesce.py); a
    failed batch is retried row by row so a bad row fails alone."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, feedback_queries.insert_events, feedback_queries.insert_event)

    async def insert(self, row: dict[str, Any]) -> dict[str, Any] | None:
        return await self.submit(row)
