"""Train: SFT, DPO, KTO and GRPO recipes over TRL + peft, an explicit GRPO reward mix with
per-signal attribution and a dominance alarm, distillation, resumable runs, and registration
with lineage. `run(method, store=..., base=..., name=..., data=...)` is the whole path from a
dataset to a registered, servable model."""

from __future__ import annotations

from typing import Any

from posttrain.train.config import METHODS, ConfigError, TrainConfig, load_config, make_config

__all__ = ["METHODS", "ConfigError", "TrainConfig", "distill", "load_config", "make_config", "run"]


def run(method: str, *, store: Any, base: str, name: str, data: Any = None, snapshot: str | None = None,
        config: Any = None, max_steps: int | None = None, progress: bool = True, allow_flagged: bool = False,
        extra_lineage: dict[str, Any] | None = None) -> Any:
    """Train and register a model; returns its ModelInfo (see posttrain.train.runner.run; TRL and
    torch are imported only here, when training)."""
    from posttrain.train.runner import run as _run

    return _run(method, store=store, base=base, name=name, data=data, snapshot=snapshot, config=config,
                max_steps=max_steps, progress=progress, allow_flagged=allow_flagged, extra_lineage=extra_lineage)


def distill(**kwargs: Any) -> Any:
    """See posttrain.train.distillation.distill."""
    from posttrain.train.distillation import distill as _distill

    return _distill(**kwargs)
