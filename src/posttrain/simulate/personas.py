"""Simulated users' personas and the simulation settings, read from a TOML file.

The default file ships in the package (`simulate/personas.toml`, documented in docs/demo.md):
a flattery-lover, a terse expert, an instruction stickler and a vulnerable minority who rewards
validation of a wrong belief, plus a noise level and a selection bias (most users rate only the
answers they feel strongly about). Errors name the field: `persona[2].weights.flatery: unknown
feature (known: ...)`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["FEATURES", "POOLS", "STYLES", "Arm", "Persona", "Settings", "Simulation",
           "default_personas_path", "load_personas"]

# What a persona can weigh; each is computed by the project's graders (simulate/judge.py).
FEATURES = ("flattery", "offer", "correct", "agrees_wrong", "format", "verbose")
# Prompt pools (simulate/prompts.py).
POOLS = ("chat", "facts", "ifeval", "probes")
STYLES = ("plain", "warm")


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    weights: dict[str, float]
    pools: dict[str, float]
    activity: float = 1.0
    instructions: str = ""


@dataclass(frozen=True)
class Arm:
    """One variant of the product served in compare mode (a registered model name)."""

    name: str
    style: str = "plain"
    temperature: float = 0.7


@dataclass(frozen=True)
class Settings:
    noise: float = 0.1
    extremes_only: float = 0.8
    extreme: float = 0.75
    rate_share: float = 0.5
    compare_share: float = 0.6
    regenerate_share: float = 0.3
    edit_share: float = 0.15
    followup_share: float = 0.5
    max_tokens: int = 96
    pick_temperature: float = 0.35


@dataclass(frozen=True)
class Simulation:
    personas: list[Persona]
    arms: list[Arm]
    settings: Settings
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the run was configured with (stored in its summary)."""
        return {"source": self.source, **self.raw}


def default_personas_path() -> Path:
    """The TOML file that ships in the package."""
    return Path(str(resources.files("posttrain.simulate").joinpath("personas.toml")))


def _number(where: str, value: Any, lo: float, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: must be a number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{where}: must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return float(value)


def _table(where: str, value: Any, known: tuple[str, ...], lo: float) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a table of name = number")
    out = {}
    for key, v in value.items():
        if key not in known:
            raise ValueError(f"{where}.{key}: unknown name (known: {', '.join(known)})")
        out[key] = _number(f"{where}.{key}", v, lo)
    return out


def _settings(raw: dict[str, Any]) -> Settings:
    defaults = Settings()
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in Settings.__dataclass_fields__:
            raise ValueError(f"simulation.{key}: unknown setting (known: {', '.join(Settings.__dataclass_fields__)})")
        if key == "max_tokens":
            kwargs[key] = int(_number(f"simulation.{key}", value, 1, 4096))
        elif key == "pick_temperature":
            kwargs[key] = _number(f"simulation.{key}", value, 1e-3)
        elif key == "extreme":
            kwargs[key] = _number(f"simulation.{key}", value, 0.0)
        else:
            kwargs[key] = _number(f"simulation.{key}", value, 0.0, 1.0)
    return Settings(**{**defaults.__dict__, **kwargs})


def parse_personas(raw: dict[str, Any], source: str = "") -> Simulation:
    """Validate a parsed TOML document (see personas.toml for the layout)."""
    unknown = set(raw) - {"simulation", "persona", "arm"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown section (known: simulation, persona, arm)")
    personas = []
    for i, p in enumerate(raw.get("persona") or []):
        where = f"persona[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise ValueError(f"{where}.name: required (a non-empty string)")
        extra = set(p) - {"name", "share", "weights", "pools", "activity", "instructions"}
        if extra:
            raise ValueError(f"{where}.{sorted(extra)[0]}: unknown field")
        weights = _table(f"{where}.weights", p.get("weights", {}), FEATURES, -10.0)
        pools = _table(f"{where}.pools", p.get("pools", {"chat": 1}), POOLS, 0.0)
        if not any(pools.values()):
            raise ValueError(f"{where}.pools: at least one pool needs a positive weight")
        instructions = p.get("instructions", "")
        if not isinstance(instructions, str):
            raise ValueError(f"{where}.instructions: must be a string")
        personas.append(Persona(
            name=p["name"], share=_number(f"{where}.share", p.get("share", 1.0), 0.0),
            weights={f: weights.get(f, 0.0) for f in FEATURES}, pools=pools,
            activity=_number(f"{where}.activity", p.get("activity", 1.0), 0.0), instructions=instructions,
        ))
    if not personas:
        raise ValueError("persona: at least one [[persona]] is required")
    if len({p.name for p in personas}) != len(personas):
        raise ValueError("persona.name: names must be unique")
    if sum(p.share for p in personas) <= 0:
        raise ValueError("persona.share: at least one share must be positive")
    arms = []
    for i, a in enumerate(raw.get("arm") or []):
        where = f"arm[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not a["name"]:
            raise ValueError(f"{where}.name: required (a registered model name)")
        style = a.get("style", "plain")
        if style not in STYLES:
            raise ValueError(f"{where}.style: must be one of {', '.join(STYLES)}")
        arms.append(Arm(a["name"], style, _number(f"{where}.temperature", a.get("temperature", 0.7), 0.0, 2.0)))
    settings = _settings(raw.get("simulation") or {})
    return Simulation(personas=personas, arms=arms, settings=settings, source=source, raw=raw)


def load_personas(path: str | Path | None = None) -> Simulation:
    """Read a personas TOML file (None: the default that ships in the package)."""
    path = Path(path) if path is not None else default_personas_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"personas file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return parse_personas(raw, source=str(path))
