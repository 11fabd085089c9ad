"""The GRPO reward mix: named signals, each capped, weighted and summed.

A signal is one of
- `rm:NAME`: a trained reward model (posttrain.reward); a model its audit flagged is refused
  unless the run allows it (`--allow-flagged`, recorded in the lineage);
- a registered grader by name with `args` (`answer_correct`, `ifeval`, `follow_up_offer`,
  `flattery_opener`, `verbosity`, `numeric`, ...): its `score` is the signal's value;
- an OpenAI grader: `openai:FILE.json`, or the grader object inline (`grader = {...}`).

The value of a signal is clipped to [-cap, cap] (when a cap is set), then multiplied by its
weight; the total reward is the sum. Detectors score 1 when the bad thing happened (an offer, a
flattering opener), so they enter the mix with a negative weight.

A grader sees the row's columns as its case, plus `messages` (prompt + the answer), `question`
and `prompt` (the last user message as text), so `answer_correct` finds its `answer` (and
`kind`) and `ifeval` its `instruction_id_list`/`kwargs` in the prompts file's reference columns.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Messages = list[dict[str, str]]
BatchScorer = Callable[[list[Messages], list[str], list[dict[str, Any]]], list[float]]


@dataclass
class Signal:
    """One entry of the mix. `score(prompts, texts, cases)` gives the raw values."""

    name: str
    weight: float
    cap: float | None
    score: BatchScorer
    kind: str  # "rm", "grader" or "openai"
    args: dict[str, Any] = field(default_factory=dict)

    def values(self, prompts: list[Messages], texts: list[str], cases: list[dict[str, Any]]) -> list[float]:
        """Raw values, NaN/None read as 0, clipped to [-cap, cap]."""
        out = []
        for v in self.score(prompts, texts, cases):
            v = 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
            if self.cap is not None:
                v = max(-self.cap, min(self.cap, v))
            out.append(v)
        return out

    def spec(self) -> dict[str, Any]:
        """The `{signal, weight, cap}` entry stored with the run."""
        d: dict[str, Any] = {"signal": self.name, "weight": self.weight, "cap": self.cap}
        if self.args:
            d["args"] = self.args
        return d


def case_for(prompt: Messages, text: str, row: dict[str, Any]) -> dict[str, Any]:
    """What a grader sees for one answer (see the module docstring)."""
    user = next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
    case = {k: v for k, v in row.items() if k != "prompt"}
    case.setdefault("question", user)
    case["prompt"] = user
    case["messages"] = [*prompt, {"role": "assistant", "content": text}]
    return case


def _grader_scorer(name: str, args: dict[str, Any], store: Any) -> BatchScorer:
    from posttrain.evals.grade import grading_store
    from posttrain.graders import get_grader

    try:
        fn = get_grader(name)
    except KeyError as exc:
        raise ValueError(f"reward signal {name!r}: {exc.args[0]}; or use rm:NAME / openai:FILE.json") from None
    try:  # wrong arguments fail now, naming the signal, not at the first generation
        inspect.signature(fn).bind("", {}, **args)
    except TypeError as exc:
        raise ValueError(f"reward signal {name!r}: bad args ({exc})") from None

    def score(prompts: list[Messages], texts: list[str], cases: list[dict[str, Any]]) -> list[float]:
        out = []
        with grading_store(store):  # LLM-judge graders resolve their model through the store
            for p, t, row in zip(prompts, texts, cases):
                g = fn(t, case_for(p, t, row), **args)
                out.append(g.score if g.score is not None else (float(g.passed) if g.passed is not None else 0.0))
        return out

    return score


def _openai_scorer(spec: dict[str, Any], store: Any) -> BatchScorer:
    from posttrain.evals.grade import grading_store
    from posttrain.graders.openai_graders import run_grader_batch, validate_grader

    validate_grader(spec)

    def score(prompts: list[Messages], texts: list[str], cases: list[dict[str, Any]]) -> list[float]:
        items = [{**row, "messages": row.get("messages", p)} for p, row in zip(prompts, cases)]
        # score_model / label_model find their model by registry name through the store.
        with grading_store(store):
            results = run_grader_batch(spec, [{"output_text": t} for t in texts], items)
        return [r["reward"] for r in results]

    return score


def _rm_scorer(store: Any, name: str, allow_flagged: bool, flagged: list[str]) -> BatchScorer:
    try:
        from posttrain.reward import is_flagged, load_reward_model
    except ImportError:
        raise ValueError(f"reward signal rm:{name}: reward models (posttrain.reward) are not available yet") from None
    if store is None:
        raise ValueError(f"reward signal rm:{name} needs a store to find the reward model in")
    try:
        flagged_now = is_flagged(store, name)
    except ValueError as exc:  # never audited: not the same as clean
        if not allow_flagged:
            raise ValueError(f"{exc} (or pass --allow-flagged to train against it unaudited)") from None
        flagged.append(f"rm:{name} (not audited)")
        flagged_now = False
    if flagged_now:
        if not allow_flagged:
            raise ValueError(f"reward model {name!r} is flagged by its bias audit (posttrain reward audit {name}); pass --allow-flagged to train against it anyway (recorded in the lineage)")
        flagged.append(f"rm:{name}")
    rm = load_reward_model(store, name)

    def score(prompts: list[Messages], texts: list[str], cases: list[dict[str, Any]]) -> list[float]:
        return list(rm.score_batch(prompts, texts))

    return score


def load_openai_grader_file(path: str | Path) -> dict[str, Any]:
    """An OpenAI grader object from a JSON file; ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"OpenAI grader file not found: {path}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: an OpenAI grader is a JSON object with a 'type'")
    return spec


@dataclass
class RewardMix:
    """The resolved mix. `flagged` lists flagged reward models the run was allowed to use."""

    signals: list[Signal]
    flagged: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.signals]

    @property
    def weights(self) -> list[float]:
        return [s.weight for s in self.signals]

    def specs(self) -> list[dict[str, Any]]:
        return [s.spec() for s in self.signals]

    def contributions(self, prompts: list[Messages], texts: list[str], cases: list[dict[str, Any]]) -> list[list[float]]:
        """Per signal, weight x capped value for each answer (rows: signals)."""
        return [[s.weight * v for v in s.values(prompts, texts, cases)] for s in self.signals]


def build_mix(entries: list[dict[str, Any]], *, store: Any = None, allow_flagged: bool = False,
              base_dir: Path | None = None) -> RewardMix:
    """Resolve config entries `{signal, weight, cap, args}` (or `{grader: {...}}`) into signals.
    `base_dir` anchors relative `openai:FILE.json` paths (the config file's folder)."""
    if not entries:
        raise ValueError("config field 'reward_mix': GRPO needs at least one signal, e.g. [[reward_mix]] signal = \"answer_correct\"")
    flagged: list[str] = []
    signals = []
    for e in entries:
        weight, cap, args = float(e.get("weight", 1.0)), e.get("cap"), dict(e.get("args", {}))
        cap = None if cap is None else float(cap)
        if "grader" in e:
            spec = e["grader"]
            signals.append(Signal(e.get("signal") or spec.get("name") or spec["type"], weight, cap,
                                  _openai_scorer(spec, store), "openai", {"grader": spec}))
            continue
        sig = e["signal"]
        if sig.startswith("rm:"):
            signals.append(Signal(sig, weight, cap, _rm_scorer(store, sig[3:], allow_flagged, flagged), "rm", args))
        elif sig.startswith("openai:"):
            path = Path(sig[len("openai:"):]).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            spec = load_openai_grader_file(path)
            signals.append(Signal(sig, weight, cap, _openai_scorer(spec, store), "openai", {"grader": spec}))
        else:
            signals.append(Signal(sig, weight, cap, _grader_scorer(sig, args, store), "grader", args))
    return RewardMix(signals, flagged)
