"""Usefulness beside engagement: per model and ISO week, what people did with its answers and
how well it does its job.

Engagement (conversations, turns, time spent, regenerations, abandonment) is shown so people can
see it; nothing in posttrain optimizes it by default — no training signal, gate metric or
experiment uses these figures unless someone configures it to. Task success sits beside it:
the model's eval scores and the share of its thumbs-down marked "wrong".
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from posttrain.store import experiments as q
from posttrain.store._store import Store

STATEMENT = ("Engagement figures are shown so you can see them; nothing in posttrain optimizes them by default "
             "(no training reward, gate metric or experiment uses them unless you configure it to).")


def _week(t: datetime) -> str:
    y, w, _ = t.isocalendar()
    return f"{y}-W{w:02d}"


def _rate(x: float, n: int) -> float | None:
    return round(x / n, 4) if n else None


def dashboard(store: Store, *, weeks: int | None = None) -> dict[str, Any]:
    """{"statement", "rows": [one per (model, week)], "evals": {model: {suite: metrics}}}."""
    with store.session() as s:
        comps = q.completions_since(s)
        events = q.feedback_on(s)
        runs = q.finished_eval_runs(s)
    info = {c["id"]: c for c in comps}
    key_of = {c["id"]: (c["model"], _week(c["created_at"])) for c in comps}
    acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {
        "conversations": set(), "requests": set(), "spans": defaultdict(list), "completions": 0,
        "regenerations": 0, "abandoned": 0, "up": 0, "down": 0, "reasons": defaultdict(int),
        "wrong": 0, "pair_wins": 0.0, "pair_n": 0})
    for c in comps:
        a = acc[key_of[c["id"]]]
        a["completions"] += 1
        a["conversations"].add(c["conversation_id"])
        a["requests"].add(c["request_id"])
        a["spans"][c["conversation_id"]].append(c["created_at"].timestamp())
        if c["finish_reason"] == "abandoned":
            a["abandoned"] += 1
    thumbs: dict[str, dict[str, Any]] = {}
    for e in events:
        cid = e["completion_id"]
        if cid not in key_of:
            continue
        a = acc[key_of[cid]]
        if e["kind"] == "thumbs":
            thumbs[cid] = e  # the latest thumbs on a completion counts
        elif e["kind"] == "implicit" and e["signal"] == "regenerate":
            a["regenerations"] += 1
        elif e["kind"] == "implicit" and e["signal"] == "abandon" and info[cid]["finish_reason"] != "abandoned":
            a["abandoned"] += 1
        elif e["kind"] == "pairwise" and e["other_completion_id"] in info:
            ma, mb = info[cid]["model"], info[e["other_completion_id"]]["model"]
            if ma == mb:
                continue
            for model, side in ((ma, "a"), (mb, "b")):
                b = acc[(model, key_of[cid][1] if model == ma else key_of[e["other_completion_id"]][1])]
                b["pair_n"] += 1
                b["pair_wins"] += 1.0 if e["value"] == side else 0.5 if e["value"] == "tie" else 0.0
    for cid, e in thumbs.items():
        a = acc[key_of[cid]]
        if e["value"] == 1:
            a["up"] += 1
        else:
            a["down"] += 1
            a["wrong"] += "wrong" in (e["reasons"] or [])
            for r in e["reasons"] or []:
                a["reasons"][r] += 1
    evals: dict[str, dict[str, Any]] = {}
    for r in runs:  # newest first: keep each (model, suite)'s latest run
        evals.setdefault(r["model"], {}).setdefault(r["suite"], {k: v for k, v in r["metrics"].items()
                                                                   if isinstance(v, (int, float))})
    rows = []
    for (model, week), a in sorted(acc.items(), key=lambda kv: (kv[0][1], kv[0][0]), reverse=True):
        n_conv = len(a["conversations"])
        spent = [max(ts) - min(ts) for ts in a["spans"].values()]
        thumbs_n = a["up"] + a["down"]
        rows.append({
            "model": model, "week": week,
            "engagement": {
                "conversations": n_conv,
                "turns_per_conversation": round(len(a["requests"]) / n_conv, 2) if n_conv else None,
                "minutes_per_conversation": round(sum(spent) / len(spent) / 60, 2) if spent else None,
                "regenerations": a["regenerations"], "regeneration_rate": _rate(a["regenerations"], a["completions"]),
                "abandoned": a["abandoned"], "abandonment_rate": _rate(a["abandoned"], a["completions"]),
            },
            "feedback": {"thumbs_up": a["up"], "thumbs_down": a["down"],
                         "thumbs_up_rate": _rate(a["up"], thumbs_n), "down_reasons": dict(sorted(a["reasons"].items())),
                         "pairwise_votes": a["pair_n"], "pairwise_win_rate": _rate(a["pair_wins"], a["pair_n"])},
            "task_success": {"wrong_rate": _rate(a["wrong"], thumbs_n), "evals": evals.get(model, {})},
        })
    if weeks is not None:
        keep = sorted({r["week"] for r in rows}, reverse=True)[:weeks]
        rows = [r for r in rows if r["week"] in keep]
    return {"statement": STATEMENT, "rows": rows, "evals": evals}
