"""Simulated users for rehearsing a launch: personas with biases driving the real HTTP API.

    from posttrain.simulate import load_personas, run
    summary = run("http://127.0.0.1:8000", keys, load_personas(), users=20, conversations=4, seed=0)

`variants` registers the `styled` backend (the product's plain and warm arms).
"""

from posttrain.simulate import variants  # noqa: F401  (registers the `styled` backend kind)
from posttrain.simulate.personas import Arm, Persona, Settings, Simulation, default_personas_path, load_personas
from posttrain.simulate.prompts import build_pools
from posttrain.simulate.run import SimulationError, allocate, run
from posttrain.simulate.variants import register_arms

__all__ = ["Arm", "Persona", "Settings", "Simulation", "SimulationError", "allocate", "build_pools",
           "default_personas_path", "load_personas", "register_arms", "run"]
