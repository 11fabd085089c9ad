"""KTO: unpaired feedback `{"prompt", "completion", "label"}` (thumbs up / down on one answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.train.common import peft_config, trl_args
from posttrain.train.config import TrainConfig


def trl_config(cfg: TrainConfig, out_dir: Path) -> Any:
    """TRL's KTOConfig for posttrain's config."""
    from trl import KTOConfig

    return KTOConfig(**trl_args(cfg, out_dir), max_length=cfg.max_length, beta=cfg.beta_for("kto"),
                     precompute_ref_log_probs=cfg.precompute_ref)


def build(cfg: TrainConfig, model_dir: Path, tokenizer: Any, rows: list[dict[str, Any]], out_dir: Path,
          callbacks: list[Any], **_: Any) -> Any:
    """The KTOTrainer. KTO needs both labels: a one-sided dataset has nothing to contrast."""
    from datasets import Dataset
    from trl import KTOTrainer

    labels = {r["label"] for r in rows}
    if len(labels) < 2:
        raise ValueError(f"kto data needs both desirable (label true) and undesirable (label false) rows; all {len(rows)} rows are {labels.pop()}")
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "completion", "label")} for r in rows])
    return KTOTrainer(model=str(model_dir), args=trl_config(cfg, out_dir), train_dataset=data,
                      processing_class=tokenizer, peft_config=peft_config(cfg, model_dir), callbacks=callbacks)
