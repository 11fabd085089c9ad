"""Per-arm metrics of an experiment, read from the completions that logged its assignment.

The unit is one completion. Each metric has a direction; guardrails are the detectors run on
the live answers (follow-up offers, flattery openers) and the answer length, so a candidate
that wins thumbs by flattering shows it here.
"""

from __future__ import annotations

import math
from typing import Any

from posttrain.experiments._sequential import diff_interval
from posttrain.store import experiments as q
from posttrain.store._store import Store

# name -> (higher is better?, binary?, kind)
METRICS: dict[str, tuple[bool, bool, str]] = {
    "thumbs_up_rate": (True, True, "metric"),
    "regenerate_rate": (False, True, "metric"),
    "abandon_rate": (False, True, "metric"),
    "follow_up_offer_rate": (False, True, "guardrail"),
    "flattery_rate": (False, True, "guardrail"),
    "length_words": (False, False, "guardrail"),
}
# Harm margins for the guardrails (candidate − baseline); length is relative to the baseline's mean.
DEFAULT_MARGINS = {"follow_up_offer_rate": 0.05, "flattery_rate": 0.05, "length_words": 0.25}


def _detect(prop: str, text: str) -> bool:
    """The detectors' verdict on one answer: the learned+rules detectors when they are
    installed (posttrain.graders.detectors), else the rule-based graders."""
    try:
        from posttrain.graders.detectors import detect
    except ImportError:
        detect = None
    if detect is not None:
        return bool(detect(prop, text, method="rules"))
    from posttrain.graders import engagement

    grade = (engagement.follow_up_offer if prop == "follow_up_offer" else engagement.flattery_opener)(text, {})
    return not grade.passed


def observations(store: Store, exp: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """arm -> metric -> one value per completion (the pairwise win rate is the candidate's, per vote)."""
    from posttrain.graders.engagement import word_count

    with store.session() as s:
        rows = q.experiment_completions(s, exp["id"], exp["created_at"])
        events = q.feedback_on(s, exp["created_at"])
    arm_of = {r["id"]: r["params"]["experiment"].get("arm") for r in rows}
    thumbs: dict[str, int] = {}
    signals: dict[str, set[str]] = {}
    pair_wins: list[float] = []
    for e in events:
        cid = e["completion_id"]
        if e["kind"] == "thumbs" and cid in arm_of:
            thumbs[cid] = e["value"]  # the latest thumbs of a completion counts
        elif e["kind"] == "implicit" and cid in arm_of:
            signals.setdefault(cid, set()).add(e["signal"])
        elif e["kind"] == "pairwise" and cid in arm_of and e["other_completion_id"] in arm_of:
            arms = (arm_of[cid], arm_of[e["other_completion_id"]])
            if set(arms) == {"candidate", "baseline"}:
                cand_is_a = arms[0] == "candidate"
                pair_wins.append({"a": 1.0 if cand_is_a else 0.0, "b": 0.0 if cand_is_a else 1.0}.get(e["value"], 0.5))
    out: dict[str, dict[str, list[float]]] = {"baseline": {m: [] for m in METRICS}, "candidate": {m: [] for m in METRICS}}
    for r in rows:
        arm = arm_of[r["id"]]
        if arm not in out:
            continue
        o = out[arm]
        if r["id"] in thumbs:
            o["thumbs_up_rate"].append(1.0 if thumbs[r["id"]] == 1 else 0.0)
        sig = signals.get(r["id"], set())
        o["regenerate_rate"].append(1.0 if "regenerate" in sig else 0.0)
        o["abandon_rate"].append(1.0 if ("abandon" in sig or r["finish_reason"] == "abandoned") else 0.0)
        o["follow_up_offer_rate"].append(1.0 if _detect("follow_up_offer", r["text"]) else 0.0)
        o["flattery_rate"].append(1.0 if _detect("flattery_opener", r["text"]) else 0.0)
        o["length_words"].append(float(word_count(r["text"])))
    out["candidate"]["pairwise_win_rate"] = pair_wins
    return out


def _moments(xs: list[float], binary: bool) -> tuple[float, float, int]:
    n = len(xs)
    if not n:
        return float("nan"), float("nan"), 0
    mean = sum(xs) / n
    if binary:
        p = (sum(xs) + 0.5) / (n + 1.0)  # smoothed: 0/n must not claim zero variance
        return mean, p * (1 - p), n
    var = sum((x - mean) ** 2 for x in xs) / max(n - 1, 1)
    # Floor: answers of one length exactly would give a zero-width interval.
    return mean, max(var, (0.05 * abs(mean)) ** 2, 1e-6), n


# Fewer observations per arm than this decide nothing: the sequences are asymptotic (they
# estimate the variance), and a handful of identical answers would claim a zero variance.
MIN_SAMPLES = 20


def summarize(obs: dict[str, dict[str, list[float]]], *, alpha: float, margins: dict[str, float],
              min_samples: int = MIN_SAMPLES) -> list[dict[str, Any]]:
    """One row per metric: each arm's mean and n, the difference with its confidence sequence,
    whether it is decided, and for guardrails whether harm beyond the margin is shown."""
    out = []
    for name, (higher, binary, kind) in METRICS.items():
        mc, vc, nc = _moments(obs["candidate"][name], binary)
        mb, vb, nb = _moments(obs["baseline"][name], binary)
        iv = diff_interval(mc, vc, nc, mb, vb, nb, alpha=alpha)
        row: dict[str, Any] = {"metric": name, "kind": kind, "higher_is_better": higher,
                               "baseline": None if nb == 0 else round(mb, 4), "n_baseline": nb,
                               "candidate": None if nc == 0 else round(mc, 4), "n_candidate": nc,
                               "delta": None if iv["delta"] is None else round(iv["delta"], 4),
                               "cs": None if iv["cs"] is None else [round(x, 4) for x in iv["cs"]],
                               "fixed_ci": None if iv["fixed_ci"] is None else [round(x, 4) for x in iv["fixed_ci"]]}
        verdict = "undecided"
        if iv["cs"] is not None and min(nc, nb) >= min_samples:
            lo, hi = iv["cs"]
            if lo > 0:
                verdict = "candidate better" if higher else "candidate worse"
            elif hi < 0:
                verdict = "candidate worse" if higher else "candidate better"
        row["decided"] = verdict != "undecided"
        row["verdict"] = verdict
        if kind == "guardrail":
            margin = margins.get(name, DEFAULT_MARGINS.get(name, 0.0))
            absolute = margin * mb if name == "length_words" and nb else margin
            row["margin"] = round(absolute, 4)
            row["harm"] = bool(iv["cs"] is not None and min(nc, nb) >= min_samples and iv["cs"][0] > absolute)
        out.append(row)
    wins = obs["candidate"].get("pairwise_win_rate") or []
    row = {"metric": "pairwise_win_rate", "kind": "metric", "higher_is_better": True, "n_candidate": len(wins),
           "candidate": round(sum(wins) / len(wins), 4) if wins else None, "cs": None, "decided": False,
           "verdict": "undecided", "note": "candidate's share of candidate-vs-baseline pairwise votes (vs 0.5)"}
    if len(wins) >= min_samples:
        from posttrain.experiments._sequential import TAU_SD, mixture_halfwidth

        m = sum(wins) / len(wins)
        var = max(sum((w - m) ** 2 for w in wins) / (len(wins) - 1), 0.25 / (len(wins) + 1))
        half = float(mixture_halfwidth(var / len(wins), (TAU_SD * math.sqrt(var)) ** 2, alpha))
        row["cs"] = [round(m - half, 4), round(m + half, 4)]
        if m - half > 0.5 or m + half < 0.5:
            row["decided"], row["verdict"] = True, "candidate better" if m - half > 0.5 else "candidate worse"
    out.append(row)
    return out
