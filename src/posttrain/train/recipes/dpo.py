"""DPO: preference pairs `{"prompt", "chosen", "rejected"}`; the reference model is the base
itself (LoRA disabled), so no second copy of the weights is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.train.common import peft_config, trl_args
from posttrain.train.config import TrainConfig


def trl_config(cfg: TrainConfig, out_dir: Path) -> Any:
    """TRL's DPOConfig for posttrain's config."""
    from trl import DPOConfig

    # sft_weight > 0 adds the NLL of the chosen answer to the DPO loss (TRL's loss_type list; the
    # RPO recipe): the chosen answers' style is learned, not only the rejected ones' unlearned.
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.sft_weight]} if cfg.sft_weight else {}
    return DPOConfig(**trl_args(cfg, out_dir), max_length=cfg.max_length, beta=cfg.beta_for("dpo"),
                     precompute_ref_log_probs=cfg.precompute_ref, **losses)


def build(cfg: TrainConfig, model_dir: Path, tokenizer: Any, rows: list[dict[str, Any]], out_dir: Path,
          callbacks: list[Any], **_: Any) -> Any:
    """The DPOTrainer."""
    from datasets import Dataset
    from trl import DPOTrainer

    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    return DPOTrainer(model=str(model_dir), args=trl_config(cfg, out_dir), train_dataset=data,
                      processing_class=tokenizer, peft_config=peft_config(cfg, model_dir), callbacks=callbacks)
