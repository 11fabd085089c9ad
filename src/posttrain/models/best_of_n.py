"""The `best_of_n` backend: sample n answers from a base model, return the one a reward model
scores highest. A training-free baseline that any trained candidate should beat, served and
evaluated like every other registered model.

How it finds its parts without the store: a registry row never changes once written, so
`register_best_of_n` resolves the base model and the reward model when it registers and
copies what a backend needs into the config (the base's backend kind and config, the RM's
checkpoint folder) beside their names. The backend is then built from its config alone, like
every backend, and `load_backend`'s caching applies unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posttrain.models.base import (
    _BACKENDS,
    Backend,
    DecodingParams,
    Generation,
    Messages,
    StreamChunk,
    create_backend,
    register_backend,
)

__all__ = ["BestOfNBackend", "register_best_of_n"]

MAX_N = 64
_bases: dict[str, Backend] = {}  # shared by best_of_n models over the same base in one process
_bases_lock = threading.Lock()


def _base_backend(kind: str, config: dict[str, Any], name: str) -> Backend:
    key = json.dumps([kind, config, name], sort_keys=True)
    with _bases_lock:
        backend = _bases.get(key)
        if backend is None:
            kwargs = dict(config)
            if "name" in inspect.signature(_BACKENDS[kind]).parameters:
                kwargs.setdefault("name", name)
            backend = _bases[key] = create_backend(kind, **kwargs)
        return backend


@register_backend("best_of_n")
class BestOfNBackend:
    """n samples from `base`, the highest-scoring by `reward_model`. Requests at temperature 0
    are sampled at `sample_temperature`: n greedy answers would be one answer n times."""

    def __init__(self, base: str, reward_model: str, base_backend: str, base_config: dict[str, Any],
                 reward_path: str, n: int = 4, sample_temperature: float = 0.7, name: str = "best-of-n") -> None:
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise ValueError(f"n must be an integer from 1 to {MAX_N}, got {n!r}")
        if base_backend not in _BACKENDS:
            raise ValueError(f"unknown base backend {base_backend!r}")
        if sample_temperature <= 0:
            raise ValueError(f"sample_temperature must be positive, got {sample_temperature}")
        from posttrain.reward._model import read_meta

        read_meta(Path(reward_path))  # a missing or foreign folder fails now
        self.name, self.base, self.reward_model, self.n = name, base, reward_model, n
        self.base_backend, self.base_config, self.reward_path = base_backend, dict(base_config), reward_path
        self.sample_temperature = sample_temperature

    @property
    def _base(self) -> Backend:
        return _base_backend(self.base_backend, self.base_config, self.base)

    @property
    def _rm(self) -> Any:
        from posttrain.reward._registry import scorer_for_path

        return scorer_for_path(self.reward_path, self.reward_model)

    def generate(self, conversations: list[Messages], params: DecodingParams) -> list[Generation]:
        """For each conversation, the best of n samples; `extra["best_of_n"]` holds every
        sample's score and which one won."""
        started = time.perf_counter()
        if params.temperature == 0:
            params = DecodingParams.from_dict({**params.to_dict(), "temperature": self.sample_temperature})
        expanded = [conv for conv in conversations for _ in range(self.n)]
        samples = self._base.generate(expanded, params)  # one batched call for all n x conversations
        scores = self._rm.score_batch(expanded, [g.text for g in samples])
        out = []
        for i, conv in enumerate(conversations):
            group, group_scores = samples[i * self.n:(i + 1) * self.n], scores[i * self.n:(i + 1) * self.n]
            best = max(range(self.n), key=lambda k: group_scores[k])
            g = group[best]
            extra = {**g.extra, "best_of_n": {"n": self.n, "chosen": best, "scores": [round(s, 4) for s in group_scores],
                                             "sampled_tokens": sum(s.completion_tokens for s in group),
                                             "reward_model": self.reward_model, "base": self.base}}
            out.append(Generation(g.text, g.prompt_tokens, g.completion_tokens,
                                  (time.perf_counter() - started) * 1000, g.finish_reason, extra))
        return out

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        """The chosen answer in one piece: nothing can be sent before all n are scored."""
        g = self.generate([conversation], params)[0]
        yield StreamChunk(g.text)
        yield StreamChunk("", finish_reason=g.finish_reason, prompt_tokens=g.prompt_tokens,
                          completion_tokens=g.completion_tokens)

    def version(self) -> str:
        parts = [self._base.version(), self._rm.version(), str(self.n), str(self.sample_temperature)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def register_best_of_n(store: Any, name: str, base: str, reward_model: str, n: int = 4,
                       sample_temperature: float = 0.7) -> Any:
    """Register `name` as best-of-`n` over the registered chat model `base`, picked by the
    registered reward model `reward_model`. Returns the ModelInfo; lineage: parent = base,
    metrics["best_of_n"] names the RM (and its audit verdict at registration, when it has one)."""
    from posttrain.models.registry import get_model, register_model

    base_info, rm_info = get_model(store, base), get_model(store, reward_model)
    if rm_info.backend != "reward_model":
        raise ValueError(f"{reward_model!r} is a {rm_info.backend} model, not a reward model")
    if base_info.backend == "reward_model":
        raise ValueError(f"{base!r} is a reward model; the base must be a chat model")
    audit = rm_info.metrics.get("audit")
    config = {"base": base, "reward_model": reward_model, "n": n, "base_backend": base_info.backend,
              "base_config": base_info.config, "reward_path": rm_info.config["path"],
              "sample_temperature": sample_temperature}
    lineage = {"reward_model": reward_model, "n": n,
               "rm_audit_flagged": audit.get("flagged") if isinstance(audit, dict) else None}
    return register_model(store, name, "best_of_n", config, parent=base, metrics={"best_of_n": lineage})
