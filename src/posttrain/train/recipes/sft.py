"""SFT: supervised fine-tuning on `{"messages": [...]}` conversations (loss on assistant turns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.train.common import peft_config, trl_args
from posttrain.train.config import TrainConfig


def trl_config(cfg: TrainConfig, out_dir: Path) -> Any:
    """TRL's SFTConfig for posttrain's config."""
    from trl import SFTConfig

    # Only the answers are learned: the prompt is given, not something to imitate.
    return SFTConfig(**trl_args(cfg, out_dir), max_length=cfg.max_length, assistant_only_loss=False,
                     completion_only_loss=None, packing=False)


def build(cfg: TrainConfig, model_dir: Path, tokenizer: Any, rows: list[dict[str, Any]], out_dir: Path,
          callbacks: list[Any], **_: Any) -> Any:
    """The SFTTrainer (LoRA unless cfg.finetune == "full")."""
    from datasets import Dataset
    from trl import SFTTrainer

    # Conversational "messages" rows are turned into prompt/completion so the loss covers only
    # the final assistant turn (TRL's completion_only_loss), as the target the data names.
    data = Dataset.from_list([_split(r["messages"]) for r in rows])
    return SFTTrainer(model=str(model_dir), args=trl_config(cfg, out_dir), train_dataset=data,
                      processing_class=tokenizer, peft_config=peft_config(cfg, model_dir), callbacks=callbacks)


def _split(messages: list[dict[str, str]]) -> dict[str, Any]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": messages[last:last + 1]}
