"""Gate policies: which metrics block a release, by how much they may regress, and what else the
gate requires (power, review, replay, lineage alarms). Policies are TOML files; the default ships
in this package (`default_policy.toml`) and is documented line by line in docs/gate.md.

Every error names the field: `policy: metric "x": margin must be a number >= 0`.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_POLICY = Path(__file__).with_name("default_policy.toml")


class PolicyError(ValueError):
    """A policy file that cannot be used (the message names the field)."""


@dataclass(frozen=True)
class SuiteRun:
    """How the gate runs one suite: how many cases, which decoding overrides."""

    name: str
    limit: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None  # relative to the gate's data dir (suites differ in what they expect)

    def resolve_data_dir(self, base: str | None) -> str | None:
        if base is None or not self.data_dir:
            return base
        return str(Path(base) / self.data_dir)


@dataclass(frozen=True)
class Metric:
    """One gated metric: per-case values of `grader` over `suites` (regraded from the stored
    answers when a suite does not run that grader itself), filtered by `where` on case data."""

    name: str
    suites: tuple[str, ...]
    grader: str | None
    args: dict[str, Any]
    value: str  # "passed" (pass/fail, 1/0), "score", or "log_words" (log(1 + answer words))
    direction: str  # "higher" or "lower": which way is better
    margin: float  # largest tolerated regression, in the value's units
    action: str  # "block" or "warn"
    missing: str  # what a metric that cannot be measured does: "block" or "warn"
    where: dict[str, Any] = field(default_factory=dict)
    property: str | None = None  # detector property for the independence check


@dataclass(frozen=True)
class Policy:
    text: str
    hash: str
    source: str
    alpha: float
    power: float
    underpowered: str
    dominance: str
    goodhart: str
    seed: int
    data_dir: str | None
    suites: dict[str, SuiteRun]
    metrics: tuple[Metric, ...]
    review_required: int
    review_items: int
    review_from_replay: int
    review_wait_seconds: float
    replay_conversations: int
    replay_graders: tuple[str, ...]
    replay_margin: float
    replay_action: str
    replay_params: dict[str, Any]
    judge: str | None

    def suite_run(self, name: str) -> SuiteRun:
        return self.suites.get(name, SuiteRun(name))


def _err(msg: str) -> PolicyError:
    return PolicyError(f"policy: {msg}")


def _num(tbl: dict, key: str, where: str, default: float, lo: float, hi: float, *, strict: bool = False) -> float:
    v = tbl.get(key, default)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi and not (strict and v in (lo,))
    if not ok:
        raise _err(f"{where}{key} must be a number in {'(' if strict else '['}{lo}, {hi}]")
    return float(v)


def _int(tbl: dict, key: str, where: str, default: int, lo: int = 0) -> int:
    v = tbl.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise _err(f"{where}{key} must be an integer >= {lo}")
    return v


def _choice(tbl: dict, key: str, where: str, default: str, options: tuple[str, ...]) -> str:
    v = tbl.get(key, default)
    if v not in options:
        raise _err(f"{where}{key} must be one of {', '.join(options)} (got {v!r})")
    return v


def _only(tbl: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(tbl) - allowed)
    if unknown:
        raise _err(f"{where}unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _metric(m: Any, i: int) -> Metric:
    if not isinstance(m, dict):
        raise _err(f"metric #{i + 1} must be a table")
    name = m.get("name")
    if not isinstance(name, str) or not name:
        raise _err(f"metric #{i + 1}: name is required")
    w = f'metric "{name}": '
    _only(m, {"name", "suite", "suites", "grader", "args", "value", "direction", "margin", "action",
              "missing", "where", "property"}, w)
    suites = m.get("suites", [m["suite"]] if "suite" in m else None)
    if not suites or not all(isinstance(s, str) and s for s in suites):
        raise _err(f"{w}suite (or suites, a list) is required")
    if "margin" not in m:
        raise _err(f"{w}margin is required (the largest regression tolerated)")
    for key, typ in (("args", dict), ("where", dict)):
        if not isinstance(m.get(key, {}), typ):
            raise _err(f"{w}{key} must be a table")
    grader = m.get("grader")
    if grader is not None and not isinstance(grader, str):
        raise _err(f"{w}grader must be a grader name")
    if grader is None and m.get("value") != "log_words" and len(suites) > 1:
        raise _err(f"{w}grader is required for a metric over several suites")
    return Metric(
        name=name, suites=tuple(suites), grader=grader, args=dict(m.get("args", {})),
        value=_choice(m, "value", w, "passed", ("passed", "score", "log_words")),
        direction=_choice(m, "direction", w, "higher", ("higher", "lower")),
        margin=_num(m, "margin", w, 0.0, 0.0, 1e9),
        action=_choice(m, "action", w, "block", ("block", "warn")),
        missing=_choice(m, "missing", w, "block", ("block", "warn")),
        where=dict(m.get("where", {})), property=m.get("property"),
    )


def parse_policy(text: str, source: str = "<text>") -> Policy:
    """Validate a policy's TOML text; raises PolicyError naming the bad field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _err(f"{source} is not valid TOML: {exc}") from None
    _only(raw, {"gate", "review", "replay", "independence", "suites", "metric"}, "")
    gate, review = raw.get("gate", {}), raw.get("review", {})
    replay, indep = raw.get("replay", {}), raw.get("independence", {})
    _only(gate, {"alpha", "power", "underpowered", "dominance", "goodhart", "seed", "data_dir"}, "gate.")
    _only(review, {"required", "items", "from_replay", "wait_seconds"}, "review.")
    _only(replay, {"conversations", "graders", "margin", "action", "params"}, "replay.")
    _only(indep, {"judge"}, "independence.")
    suites: dict[str, SuiteRun] = {}
    for name, tbl in raw.get("suites", {}).items():
        if not isinstance(tbl, dict):
            raise _err(f"suites.{name} must be a table")
        _only(tbl, {"limit", "params", "data_dir"}, f"suites.{name}.")
        limit = tbl.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise _err(f"suites.{name}.limit must be an integer >= 1")
        if not isinstance(tbl.get("params", {}), dict):
            raise _err(f"suites.{name}.params must be a table")
        sub = tbl.get("data_dir")
        if sub is not None and (not isinstance(sub, str) or not sub):
            raise _err(f"suites.{name}.data_dir must be a folder name")
        suites[name] = SuiteRun(name, limit, dict(tbl.get("params", {})), sub)
    metrics = tuple(_metric(m, i) for i, m in enumerate(raw.get("metric", [])))
    if not metrics:
        raise _err("at least one [[metric]] is required")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise _err(f"metric names must be unique ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    graders = replay.get("graders", ["follow_up_offer", "flattery_opener"])
    if not isinstance(graders, list) or not all(isinstance(g, str) for g in graders):
        raise _err("replay.graders must be a list of grader names")
    data_dir = gate.get("data_dir") or None
    judge = indep.get("judge") or None
    return Policy(
        text=text, hash=hashlib.sha256(text.encode()).hexdigest(), source=source,
        alpha=_num(gate, "alpha", "gate.", 0.05, 0.0, 0.5, strict=True),
        power=_num(gate, "power", "gate.", 0.8, 0.5, 0.999),
        underpowered=_choice(gate, "underpowered", "gate.", "block", ("block", "warn")),
        dominance=_choice(gate, "dominance", "gate.", "block", ("block", "warn")),
        goodhart=_choice(gate, "goodhart", "gate.", "warn", ("block", "warn")),
        seed=_int(gate, "seed", "gate.", 0), data_dir=str(data_dir) if data_dir else None,
        suites=suites, metrics=metrics,
        review_required=_int(review, "required", "review.", 1),
        review_items=_int(review, "items", "review.", 8),
        review_from_replay=_int(review, "from_replay", "review.", 2),
        review_wait_seconds=_num(review, "wait_seconds", "review.", 3600.0, 0.0, 1e9),
        replay_conversations=_int(replay, "conversations", "replay.", 20),
        replay_graders=tuple(graders),
        replay_margin=_num(replay, "margin", "replay.", 0.1, 0.0, 1.0),
        replay_action=_choice(replay, "action", "replay.", "warn", ("block", "warn")),
        replay_params=dict(replay.get("params", {})),
        judge=str(judge) if judge else None,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at `path`, or the default one; raises PolicyError (bad file or content)."""
    p = Path(path) if path else DEFAULT_POLICY
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise _err(f"cannot read {p}: {exc.strerror or exc}") from None
    return parse_policy(text, str(p))
