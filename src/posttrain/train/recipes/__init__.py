"""One recipe per method, TRL-style: `<method>.py` maps posttrain's TrainConfig onto TRL's
`<Method>Config` and builds the `<Method>Trainer`. Each exposes
`build(cfg, model_dir, tokenizer, rows, out_dir, callbacks, **extra) -> Trainer`."""

from __future__ import annotations

import importlib
from typing import Any


def get_recipe(method: str) -> Any:
    """The recipe module for `method` (sft, dpo, kto, grpo)."""
    from posttrain.train.config import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return importlib.import_module(f"posttrain.train.recipes.{method}")
