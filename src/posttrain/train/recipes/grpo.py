"""GRPO (reinforcement fine-tuning): the model answers each prompt `num_generations` times and
learns from the answers' rewards relative to their group, the reward being posttrain's explicit
mix of signals (train/rewards.py), attributed signal by signal (train/attribution.py).

Each signal is its own TRL reward function (so TRL logs `rewards/<signal>/mean`) and its
weight is TRL's `reward_weights`: TRL's total is exactly the mix's sum. `batch_size` counts
prompts per device step here; TRL's batch counts answers, so it gets batch_size x
num_generations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrain.train.attribution import Attribution
from posttrain.train.common import peft_config, trl_args
from posttrain.train.config import TrainConfig
from posttrain.train.rewards import RewardMix, Signal


def trl_config(cfg: TrainConfig, out_dir: Path, weights: list[float]) -> Any:
    """TRL's GRPOConfig for posttrain's config (vLLM generation when cfg.use_vllm is set)."""
    from trl import GRPOConfig

    args = trl_args(cfg, out_dir)
    args["per_device_train_batch_size"] = cfg.batch_size * cfg.num_generations
    extra: dict[str, Any] = {}
    if cfg.use_vllm:
        extra = {"use_vllm": True, "vllm_mode": cfg.use_vllm}
    return GRPOConfig(**args, num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature, beta=cfg.beta_for("grpo"), reward_weights=weights,
                      log_completions=False, **extra)


def reward_function(signal: Signal, attribution: Attribution) -> Any:
    """A TRL reward function for one signal: capped values, also handed to the attribution."""

    def reward(prompts: list[Any], completions: list[Any], _case: list[str] | None = None, **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        msgs = [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts]
        cases = [json.loads(c) for c in _case] if _case is not None else [{} for _ in texts]
        values = signal.values(msgs, texts, cases)
        attribution.add(signal.name, msgs, values)
        return values

    reward.__name__ = signal.name  # TRL logs rewards/<name>/mean under it
    return reward


def build(cfg: TrainConfig, model_dir: Path, tokenizer: Any, rows: list[dict[str, Any]], out_dir: Path,
          callbacks: list[Any], *, mix: RewardMix, attribution: Attribution, **_: Any) -> Any:
    """The GRPOTrainer with one reward function per signal of the mix."""
    from datasets import Dataset
    from trl import GRPOTrainer

    # Reference columns differ by task (answer, instruction_id_list, kwargs...); one JSON column
    # carries them to the reward functions whatever their types (Arrow wants one type per column).
    data = Dataset.from_list([{"prompt": r["prompt"], "_case": json.dumps({k: v for k, v in r.items() if k != "prompt"})}
                              for r in rows])
    tokenizer.padding_side = "left"  # generation continues from the last position
    return GRPOTrainer(model=str(model_dir), reward_funcs=[reward_function(s, attribution) for s in mix.signals],
                       args=trl_config(cfg, out_dir, mix.weights), train_dataset=data,
                       processing_class=tokenizer, peft_config=peft_config(cfg, model_dir), callbacks=callbacks)
