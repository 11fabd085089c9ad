"""The generation cache: a re-run of the same suite on the same model is free.

A generation is keyed by sha256 of (model name, backend version, messages, decoding params), so
it is reused only when all four are identical; new weights change `backend.version()` and so
miss the cache. Entries live in the store's generation_cache table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from posttrain.models.base import Backend, DecodingParams, Generation, Messages
from posttrain.store import evals as q
from posttrain.store._store import Store


def cache_key(model: str, version: str, messages: Messages, params: DecodingParams) -> str:
    """The cache key of one generation request."""
    payload = json.dumps(
        [model, version, messages, params.to_dict()], sort_keys=True, ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0


class CachedGenerator:
    """Generates through a backend in batches, serving what it can from the cache.

    `on_batch(n_done, stats)` is called after each cached lookup and each generated batch, which
    is what drives the progress bar.
    """

    def __init__(
        self, store: Store, backend: Backend, model: str, *, batch_size: int = 32, use_cache: bool = True
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.store = store
        self.backend = backend
        self.model = model
        self.version = backend.version()
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.stats = CacheStats()

    def generate(
        self,
        conversations: list[Messages],
        params: DecodingParams,
        on_batch: Callable[[int, CacheStats], None] | None = None,
    ) -> list[Generation]:
        """One generation per conversation, in order; each marked `extra["cached"]`."""
        keys = [cache_key(self.model, self.version, c, params) for c in conversations]
        hits = q.cache_get_many(self.store, keys) if self.use_cache else {}
        out: list[Generation | None] = [None] * len(conversations)
        todo: list[int] = []
        for i, k in enumerate(keys):
            if k in hits:
                h = hits[k]
                out[i] = Generation(
                    text=h["text"], prompt_tokens=h["prompt_tokens"],
                    completion_tokens=h["completion_tokens"], latency_ms=h["latency_ms"],
                    extra={"cached": True},
                )
            else:
                todo.append(i)
        self.stats.hits += len(conversations) - len(todo)
        if on_batch and len(todo) < len(conversations):
            on_batch(len(conversations) - len(todo), self.stats)

        # The same request twice in one call is generated once.
        unique: dict[str, list[int]] = {}
        for i in todo:
            unique.setdefault(keys[i], []).append(i)
        pending = list(unique.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            t0 = time.perf_counter()
            gens = self.backend.generate([conversations[idx[0]] for _, idx in chunk], params)
            self.stats.generate_seconds += time.perf_counter() - t0
            if len(gens) != len(chunk):
                raise RuntimeError(
                    f"backend {self.model!r} returned {len(gens)} generations for {len(chunk)} prompts"
                )
            entries = []
            for (key, idxs), g in zip(chunk, gens):
                g.extra = {**(g.extra or {}), "cached": False}
                for i in idxs:
                    out[i] = g
                self.stats.misses += len(idxs)
                self.stats.generated_tokens += g.completion_tokens
                entries.append(
                    {
                        "key": key, "model": self.model, "text": g.text,
                        "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                        "latency_ms": g.latency_ms,
                    }
                )
            # Stored batch by batch so an interrupted run keeps what it already paid for.
            q.cache_put_many(self.store, entries)
            if on_batch:
                on_batch(sum(len(i) for _, i in chunk), self.stats)
        return out  # type: ignore[return-value]
