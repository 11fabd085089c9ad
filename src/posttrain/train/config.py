"""posttrain's own small training config: about fifteen fields, validated, loaded from TOML.

TRL's configs have ~80 fields each and change between releases; users see only this one, and
each recipe maps it onto its TRL config (`recipes.py`). Command-line flags override the file.
Every error names the field: `config field 'lora_r': must be a positive integer, got -1`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("sft", "dpo", "kto", "grpo")

# The beta each method starts from when the config leaves it unset: TRL's DPO/KTO default, and
# no KL term for GRPO (TRL's default too: the reference model costs a second forward pass).
DEFAULT_BETA = {"sft": 0.0, "dpo": 0.1, "kto": 0.1, "grpo": 0.0}


class ConfigError(ValueError):
    """A bad config value; the message names the field."""


@dataclass
class TrainConfig:
    """What a user may set. Everything else is TRL's default or fixed by posttrain (CPU flags)."""

    learning_rate: float = 1e-4
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 4
    grad_accum: int = 1
    finetune: str = "lora"  # "lora" (peft, merged at the end) or "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] | str = "all-linear"
    # Adapters on the last N transformer layers only (0: every layer). The frozen layers below
    # need no backward pass, which is most of a LoRA step's cost on a CPU (docs/train.md).
    lora_layers: int = 0
    max_length: int = 512  # prompt + answer tokens (SFT/DPO/KTO)
    beta: float | None = None  # DPO/KTO/GRPO KL strength; None: the method's default
    sft_weight: float = 0.0  # DPO only: weight of the NLL on the chosen answer (TRL's "sft" loss; RPO)
    # DPO/KTO: the reference model's log-probabilities computed once before training (TRL's
    # precompute_ref_log_probs) instead of a reference forward pass in every step.
    precompute_ref: bool = False
    # DPO only: batches of pairs of similar length (recipes/dpo.py's length_batches) instead of
    # random ones, so less of each step is padding (docs/train.md).
    group_by_length: bool = False
    # "auto": bf16 on a GPU that supports it, fp32 on the CPU. "bf16": bf16 autocast on the CPU too,
    # refused where the CPU has no native bf16 (train/common.py, cpu_bf16_speedup). "fp32": fp32.
    precision: str = "auto"
    seed: int = 0
    save_steps: int = 50  # checkpoint interval (steps); a killed run resumes from the last one
    # GRPO only
    reward_mix: list[dict[str, Any]] = field(default_factory=list)
    num_generations: int = 4
    max_completion_length: int = 64
    temperature: float = 1.0
    dominance_threshold: float = 0.6  # alarm when one signal's variance share stays above this
    dominance_steps: int = 3  # ... for this many logged steps in a row
    use_vllm: str = ""  # "", "colocate" or "server" (TRL's use_vllm / vllm_mode; GPU only)
    eval_suites: list[str] = field(default_factory=list)  # run before/after for the attribution report
    eval_limit: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the lineage)."""
        return dataclasses.asdict(self)

    def beta_for(self, method: str) -> float:
        """The beta this run uses."""
        return DEFAULT_BETA[method] if self.beta is None else self.beta


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _bad(name: str, why: str, value: Any) -> ConfigError:
    return ConfigError(f"config field {name!r}: {why}, got {value!r}")


def _check_number(name: str, value: Any, *, integer: bool, positive: bool = True, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise _bad(name, f"must be {'an integer' if integer else 'a number'}", value)
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise _bad(name, "must be positive" if not allow_zero else "must be >= 0", value)


def _check_reward_mix(mix: Any) -> None:
    if not isinstance(mix, list):
        raise _bad("reward_mix", "must be a list of {signal, weight, cap} tables", mix)
    seen = set()
    for i, entry in enumerate(mix):
        where = f"reward_mix[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"config field {where!r}: must be a table with signal, weight, cap")
        unknown = set(entry) - {"signal", "weight", "cap", "args", "grader"}
        if unknown:
            raise ConfigError(f"config field '{where}.{sorted(unknown)[0]}': unknown key; use signal, weight, cap, args (or grader)")
        if "grader" in entry:
            if not isinstance(entry["grader"], dict) or "type" not in entry["grader"]:
                raise ConfigError(f"config field '{where}.grader': must be an OpenAI grader object with a 'type'")
        elif not isinstance(entry.get("signal"), str) or not entry["signal"]:
            raise ConfigError(f"config field '{where}.signal': needs a signal name (rm:NAME, a grader name, or openai:FILE.json)")
        w = entry.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise ConfigError(f"config field '{where}.weight': must be a number, got {w!r}")
        cap = entry.get("cap")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0):
            raise ConfigError(f"config field '{where}.cap': must be a positive number, got {cap!r}")
        if not isinstance(entry.get("args", {}), dict):
            raise ConfigError(f"config field '{where}.args': must be a table of grader arguments")
        label = entry.get("signal") or entry["grader"].get("name") or entry["grader"]["type"]
        if label in seen:
            raise ConfigError(f"config field '{where}.signal': {label!r} appears twice in the mix")
        seen.add(label)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ConfigError naming the first bad field; return cfg."""
    _check_number("learning_rate", cfg.learning_rate, integer=False)
    _check_number("epochs", cfg.epochs, integer=False)
    if cfg.max_steps is not None:
        _check_number("max_steps", cfg.max_steps, integer=True)
    for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "max_length", "save_steps",
                 "max_completion_length", "dominance_steps", "eval_limit"):
        _check_number(name, getattr(cfg, name), integer=True)
    _check_number("seed", cfg.seed, integer=True, allow_zero=True)
    _check_number("temperature", cfg.temperature, integer=False, allow_zero=True)
    if cfg.beta is not None:
        _check_number("beta", cfg.beta, integer=False, allow_zero=True)
    _check_number("sft_weight", cfg.sft_weight, integer=False, allow_zero=True)
    _check_number("lora_layers", cfg.lora_layers, integer=True, allow_zero=True)
    for name in ("precompute_ref", "group_by_length"):
        if not isinstance(getattr(cfg, name), bool):
            raise _bad(name, "must be true or false", getattr(cfg, name))
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise _bad("precision", "must be 'auto', 'fp32' or 'bf16'", cfg.precision)
    if cfg.finetune not in ("lora", "full"):
        raise _bad("finetune", "must be 'lora' or 'full'", cfg.finetune)
    targets = cfg.lora_targets
    if not (targets == "all-linear" or (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets))):
        raise _bad("lora_targets", "must be 'all-linear' or a list of module names like ['q_proj', 'v_proj']", targets)
    _check_number("num_generations", cfg.num_generations, integer=True)
    if cfg.num_generations < 2:
        raise _bad("num_generations", "GRPO compares answers within a group: must be at least 2", cfg.num_generations)
    if not (isinstance(cfg.dominance_threshold, (int, float)) and 0 < cfg.dominance_threshold <= 1):
        raise _bad("dominance_threshold", "must be a share in (0, 1]", cfg.dominance_threshold)
    if cfg.use_vllm not in ("", "colocate", "server"):
        raise _bad("use_vllm", "must be '', 'colocate' or 'server'", cfg.use_vllm)
    if not isinstance(cfg.eval_suites, list) or not all(isinstance(s, str) for s in cfg.eval_suites):
        raise _bad("eval_suites", "must be a list of suite names", cfg.eval_suites)
    _check_reward_mix(cfg.reward_mix)
    return cfg


def make_config(values: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """A validated TrainConfig from a dict (a TOML file's content) plus overrides (flags; None
    means "not given"). Unknown keys are refused, naming the key."""
    merged = dict(values or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(merged) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config field {unknown[0]!r}: unknown; known fields: {', '.join(_FIELDS)}")
    if isinstance(merged.get("max_steps"), int) and merged["max_steps"] == -1:
        merged["max_steps"] = None  # TRL's spelling of "no limit"
    return validate(TrainConfig(**merged))


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a TOML file (top-level keys are the fields; `[[reward_mix]]` tables the signals),
    then apply the overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return make_config(values, **overrides)
