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
    trainer_class = _length_grouped(DPOTrainer) if cfg.group_by_length else DPOTrainer
    return trainer_class(model=str(model_dir), args=trl_config(cfg, out_dir), train_dataset=data,
                         processing_class=tokenizer, peft_config=peft_config(cfg, model_dir), callbacks=callbacks)


def pair_lengths(dataset: Any) -> list[int]:
    """Each tokenized pair's padded length in a batch: its prompt and the longer answer."""
    return [len(p) + max(len(c), len(r))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]


def length_batches(lengths: list[int], batch_size: int) -> list[int]:
    """One epoch's order: pairs sorted by length (ties in random order) cut into batches, the
    batches in random order. transformers' LengthGroupedSampler sorts within random megabatches
    of `len // (4 * batch)` batches: one batch (no grouping) for the quick demo's 14 pairs,
    three for the full demo's 60. Random numbers from torch's global generator, which the
    trainer seeds and checkpoints."""
    import torch

    perm = torch.randperm(len(lengths)).tolist()
    ranked = sorted(perm, key=lambda i: lengths[i])  # stable: equal lengths keep the random order
    chunks = [ranked[i : i + batch_size] for i in range(0, len(ranked), batch_size)]
    return [i for k in torch.randperm(len(chunks)).tolist() for i in chunks[k]]


def _length_grouped(base: type) -> type:
    """`base` (DPOTrainer) drawing its batches by length (length_batches). transformers' own
    `train_sampling_strategy="group_by_length"` reads a `length` column or `input_ids`, which a
    tokenized preference dataset has neither of (and the trainer drops unknown columns before
    the sampler sees them)."""
    from torch.utils.data import Sampler

    class _Sampler(Sampler):  # type: ignore[type-arg]
        def __init__(self, lengths: list[int], batch_size: int) -> None:
            self.lengths, self.batch_size = lengths, batch_size

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self) -> Any:
            return iter(length_batches(self.lengths, self.batch_size))

    class LengthGroupedDPOTrainer(base):  # type: ignore[misc, valid-type]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            return _Sampler(pair_lengths(dataset), self.args.train_batch_size * self.args.gradient_accumulation_steps)

    return LengthGroupedDPOTrainer
