"""What the candidate's training says: its reward mix, what it was trained against, and the
alarms the gate raises from that (Goodhart, dominance) — see INTERFACES.md for the layout of
`ModelEntry.metrics["train"]`, written by `posttrain.train`.
"""

from __future__ import annotations

import inspect
from typing import Any

from posttrain.graders import get_grader


def lineage(model: Any) -> dict[str, Any]:
    """A model's lineage as the gate stores it (empty `train` for a model not trained here)."""
    metrics = model.metrics or {}
    return {"model": model.name, "parent": model.parent, "data_snapshot": model.data_snapshot,
            "backend": model.backend, "config": model.config, "train": metrics.get("train") or {},
            "audit": metrics.get("audit")}


def trained_against(train: dict[str, Any]) -> dict[str, str | None]:
    """Property name -> detector method it was trained with (None when not said), from the
    record's `trained_against` and `reward_mix` (a signal may be written "name:method")."""
    names = list(train.get("trained_against") or [])
    names += [m.get("signal") for m in train.get("reward_mix") or [] if isinstance(m, dict)]
    out: dict[str, str | None] = {}
    for n in names:
        if not isinstance(n, str) or not n:
            continue
        name, _, method = n.partition(":")
        if name == "rm":  # a reward model: not a gate detector (the Goodhart alarm covers it)
            continue
        out[name] = method or out.get(name)
    return out


def _method_param(grader: str) -> tuple[bool, str | None]:
    """(does the grader take `method`?, its default) — (False, None) for an unknown grader."""
    try:
        param = inspect.signature(get_grader(grader)).parameters.get("method")
    except (KeyError, TypeError, ValueError):
        return False, None
    if param is None:
        return False, None
    return True, None if param.default is inspect.Parameter.empty else param.default


def _detectors_available() -> bool:
    try:
        from posttrain.graders.detectors import detect  # noqa: F401
    except ImportError:
        return False
    return True


def independent_check(prop: str, method: str | None, judge: str | None) -> dict[str, Any]:
    """How the gate measures a trained-against property a second way: the other detector method
    (rules <-> learned) when training used one of them, else an LLM judge when the policy names a
    judge model, else people (the review). The training method is the one the signal named, else
    the grader's default `method`, else "rules" (a grader without methods is a phrase list).
    Returns {"method", "grader", "args"} (grader None for the human review)."""
    takes, default = _method_param(prop)
    trained = method or default or ("rules" if not takes else None)
    others = {"rules": "learned", "learned": "rules"}
    if trained in others:
        other = others[trained]
        if takes:
            return {"method": f"detector method {other!r}", "grader": prop, "args": {"method": other}}
        if _detectors_available():
            return {"method": f"detector method {other!r}", "grader": f"detector:{prop}", "args": {"method": other}}
    if judge:
        try:
            get_grader(f"{prop}_judge")
            return {"method": f"LLM judge {judge!r}", "grader": f"{prop}_judge", "args": {"judge": judge}}
        except KeyError:
            pass
    return {"method": "human review", "grader": None, "args": {}}


def goodhart_warnings(train: dict[str, Any], regressions: list[dict[str, Any]]) -> list[str]:
    """When the training reward rose while any counter-metric got worse (even within its
    margin): one warning per worse metric, naming the reward signals that rose."""
    start, end = train.get("reward_start"), train.get("reward_end")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or end <= start:
        return []
    signals = train.get("attribution", {}).get("signals", {}) if isinstance(train.get("attribution"), dict) else {}
    named = sorted(signals, key=lambda s: -float(signals[s].get("variance_share", 0) or 0)) if signals else []
    named = named or [m.get("signal") for m in train.get("reward_mix") or [] if isinstance(m, dict)]
    named = [s for s in named if s] or ["the training reward"]
    out = []
    for r in regressions:
        out.append(f"Goodhart: training reward rose {start:.3g} -> {end:.3g} (signals: {', '.join(named)}) "
                   f"while {r['metric']} got worse by {r['worse_by']:.3f} ({r['baseline']:.3f} -> {r['candidate']:.3f})")
    return out


def dominance_alarms(train: dict[str, Any]) -> list[dict[str, Any]]:
    """Dominance alarms recorded by training (a signal carrying most of the reward variance)."""
    return [a for a in train.get("alarms") or [] if isinstance(a, dict) and a.get("kind") == "dominance"]
