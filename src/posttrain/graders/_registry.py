"""Graders are small functions registered by name.

A grader takes the model's response and the eval case (a dict) plus keyword arguments, and
returns a Grade. The runner stores the grader's name and arguments with each result so that a
run can be reproduced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Grade:
    """score in [0, 1] where that makes sense (else a raw value); passed when pass/fail applies."""

    score: float | None
    passed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


GraderFn = Callable[..., Grade]
_GRADERS: dict[str, GraderFn] = {}


def grader(name: str) -> Callable[[GraderFn], GraderFn]:
    """Register `fn(response: str, case: dict, **kwargs) -> Grade` under `name`."""

    def deco(fn: GraderFn) -> GraderFn:
        if name in _GRADERS and _GRADERS[name] is not fn:
            raise ValueError(f"grader {name!r} is already registered")
        _GRADERS[name] = fn
        fn.grader_name = name  # type: ignore[attr-defined]
        return fn

    return deco


_BUILTIN_MODULES = ("programmatic", "engagement", "sycophancy", "similarity", "judge",
                    "reward_model", "ifeval", "openai_graders", "detectors.judge", "detectors.suite_graders")


def _load_builtin() -> None:
    """Import the built-in grader modules (they register on import), so a suite mined or written
    elsewhere can name any built-in grader in a fresh process."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(f"posttrain.graders.{module}")


def get_grader(name: str) -> GraderFn:
    if name not in _GRADERS:
        _load_builtin()
    if name not in _GRADERS:
        raise KeyError(f"unknown grader {name!r}; known: {', '.join(sorted(_GRADERS))}")
    return _GRADERS[name]


def grader_names() -> list[str]:
    _load_builtin()
    return sorted(_GRADERS)
