"""The training step itself, a thin layer over TRL and transformers.

Pairwise: TRL's RewardTrainer (Bradley–Terry loss, -log sigmoid(r_chosen - r_rejected)) on rows
we have already tokenized (`chosen_ids`/`rejected_ids`, a layout RewardTrainer documents).
Pointwise: a transformers Trainer with a binary cross-entropy loss on the reward logit, so
sigmoid(reward) estimates P(thumbs up) — TRL has no pointwise reward trainer.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitConfig:
    """Our small, stable training config (mapped onto TRL's/transformers' many fields)."""

    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 8
    max_length: int = 256
    seed: int = 0
    warmup: float = 0.1
    weight_decay: float = 0.0
    max_steps: int | None = None
    train_layers: int | None = None  # train only the top N transformer layers (+ head); None: all
    progress: bool = True

    def check(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.train_layers is not None and self.train_layers < 0:
            raise ValueError(f"train_layers must be 0 or more, got {self.train_layers}")


def freeze_below(model: Any, train_layers: int | None) -> int:
    """Freeze the embeddings and all but the top `train_layers` transformer layers (the score head
    always trains); returns how many parameters still train. On a CPU this cuts the backward
    pass, which is most of a step, for a small cost in accuracy."""
    if train_layers is None:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None) or getattr(base, "layers", None)
    if layers is None:
        raise ValueError(f"train_layers: cannot find the transformer layers of {type(model).__name__}")
    keep = {id(p) for layer in list(layers)[len(layers) - train_layers:] for p in layer.parameters()} if train_layers else set()
    for name, p in base.named_parameters():
        # The pooler and final norm sit above the layers: they train with the top ones.
        top = "pooler" in name or name.startswith("norm")
        p.requires_grad = id(p) in keep or top
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class FitResult:
    seconds: float
    steps: int
    losses: list[float] = field(default_factory=list)

    def summary(self, epochs: float) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 2), "seconds_per_epoch": round(self.seconds / max(epochs, 1e-9), 2),
                "steps": self.steps, "loss_start": round(self.losses[0], 4) if self.losses else None,
                "loss_end": round(self.losses[-1], 4) if self.losses else None}


def _common_args(cfg: FitConfig, out_dir: str) -> dict[str, Any]:
    return dict(
        output_dir=out_dir, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay, lr_scheduler_type="linear", seed=cfg.seed,
        # On the CPU: bf16 (TRL's default) is 15-20x slower, and checkpointing only trades compute
        # for memory we have.
        bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False, gradient_checkpointing=None,
        logging_steps=1, logging_strategy="steps", save_strategy="no", report_to=[],
        disable_tqdm=not cfg.progress, dataloader_num_workers=0,
    )


def _losses_callback(losses: list[float]) -> Any:
    from transformers import TrainerCallback

    class _Losses(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return _Losses()


def _run(trainer: Any) -> FitResult:
    losses: list[float] = []
    trainer.add_callback(_losses_callback(losses))
    started = time.perf_counter()
    # Progress is never data: keep stdout clean for --json (transformers prints log dicts there).
    with contextlib.redirect_stdout(sys.stderr):
        state = trainer.train()
    return FitResult(time.perf_counter() - started, int(state.global_step), losses)


def fit_pairwise(model: Any, tok: Any, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                 cfg: FitConfig) -> FitResult:
    """Train `model` in place with TRL's RewardTrainer on tokenized preference pairs."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    cfg.check()
    freeze_below(model, cfg.train_layers)
    data = Dataset.from_dict({"chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
    with tempfile.TemporaryDirectory(prefix="posttrain-rm-") as tmp:
        # max_length=None: rows are already cut to length by our encoder (TRL would drop them).
        args = RewardConfig(**_common_args(cfg, tmp), max_length=None)
        trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
        return _run(trainer)


def fit_pointwise(model: Any, tok: Any, ids: list[list[int]], labels: list[bool], cfg: FitConfig) -> FitResult:
    """Train `model` in place on thumbs: binary cross-entropy of sigmoid(reward) against the label."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    cfg.check()
    freeze_below(model, cfg.train_layers)
    pad = tok.pad_token_id

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": input_ids, "attention_mask": mask,
                "labels": torch.tensor([float(r["label"]) for r in rows])}

    class PointwiseTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits[:, 0], labels)
            return (loss, outputs) if return_outputs else loss

    model.config.pad_token_id = pad
    data = Dataset.from_dict({"input_ids": ids, "label": [bool(x) for x in labels]})
    with tempfile.TemporaryDirectory(prefix="posttrain-rm-") as tmp:
        args = TrainingArguments(**_common_args(cfg, tmp), remove_unused_columns=False)
        trainer = PointwiseTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                                   processing_class=tok)
        return _run(trainer)
