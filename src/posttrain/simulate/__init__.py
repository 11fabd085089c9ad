"""Simulated users for rehearsing a launch: personas with biases driving the real HTTP API.

    from posttrain.simulate import load_personas, run
    summary = run("http://127.0.0.1:8000", keys, load_personas(), users=20, conversations=4, seed=0)

`variants` registers the `styled` backend (the product's plain and warm arms); it is imported
here and by the CLI, and the rest loads on first use (the HTTP client is not needed to serve).
"""

from __future__ import annotations

import importlib
from typing import Any

from posttrain.simulate import variants  # noqa: F401  (registers the `styled` backend kind)
from posttrain.simulate.personas import Arm, Persona, Settings, Simulation, default_personas_path, load_personas
from posttrain.simulate.variants import register_arms

_LAZY = {"SimulationError": "driver", "allocate": "driver", "run": "driver", "build_pools": "prompts"}

__all__ = ["Arm", "Persona", "Settings", "Simulation", "SimulationError", "allocate", "build_pools",
           "default_personas_path", "load_personas", "register_arms", "run"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'posttrain.simulate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"posttrain.simulate.{_LAZY[name]}"), name)
