"""Which signal moved which eval metric: the base and the trained model run the same small
suites (config `eval_suites`, first `eval_limit` cases, greedy), and per case we compare.

For every suite metric: base, trained, delta. For every (signal, suite grader) pair: the
Pearson correlation, across cases, between the change in the signal (scored on the two models'
answers to the eval prompts) and the change in the grader's score. A signal that moved a metric
shows a strong correlation; |r| >= 0.3 over at least 4 varying cases is listed under "moved".
Greedy decoding and the generation cache make the base model's runs free after the first time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from posttrain.train.rewards import RewardMix

MIN_CASES = 4
MIN_CORR = 0.3


def _corr(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx < 1e-12 or syy < 1e-12:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def _per_case(store: Any, run_id: str) -> dict[str, dict[str, Any]]:
    from posttrain.store import evals as q

    out: dict[str, dict[str, Any]] = {}
    for r in q.get_results(store, run_id):
        rec = out.setdefault(r["case_id"], {"response": r["response"], "scores": {}})
        rec["scores"][r["grader"]] = r["score"]
    return out


def eval_report(store: Any, mix: RewardMix, base: str, name: str, model_dir: Path, suites: list[str],
                limit: int, *, progress: bool = False) -> dict[str, Any]:
    """`{"suites", "metrics": [{suite, metric, base, trained, delta}], "signals": {NAME: {suite:
    {base, trained}}}, "moved": [{signal, suite, grader, corr, n}]}`."""
    from posttrain.evals.runner import load_cases, run_suite
    from posttrain.evals.suite import get_suite
    from posttrain.models.local import LocalBackend

    trained = LocalBackend(path=str(model_dir), name=name)
    report: dict[str, Any] = {"suites": suites, "limit": limit, "metrics": [], "signals": {}, "moved": []}
    for suite_name in suites:
        suite = get_suite(suite_name)
        runs = {"base": run_suite(store, suite, base, limit=limit, progress=progress),
                "trained": run_suite(store, suite, name, limit=limit, progress=progress, backend=trained)}
        for metric, b in runs["base"].metrics.items():
            t = runs["trained"].metrics.get(metric)
            if isinstance(b, (int, float)) and isinstance(t, (int, float)):
                report["metrics"].append({"suite": suite_name, "metric": metric, "base": round(b, 4),
                                          "trained": round(t, 4), "delta": round(t - b, 4)})
        cases = {c.id: c for c in load_cases(suite, None, 0, limit)}
        rows = {k: _per_case(store, r.run_id) for k, r in runs.items()}
        ids = [i for i in cases if i in rows["base"] and i in rows["trained"]]
        prompts = [cases[i].messages for i in ids]
        sig_vals: dict[str, dict[str, list[float]]] = {}
        for side in ("base", "trained"):
            texts = [rows[side][i]["response"] for i in ids]
            data = [{**cases[i].data, "messages": cases[i].messages} for i in ids]
            for s in mix.signals:
                try:
                    sig_vals.setdefault(s.name, {})[side] = s.values(prompts, texts, data)
                except Exception as exc:  # a signal that needs reference columns this suite lacks
                    sig_vals.setdefault(s.name, {})["error"] = [0.0]
                    report["signals"].setdefault(s.name, {})[suite_name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        for s in mix.signals:
            vals = sig_vals[s.name]
            if "error" in vals:
                continue
            report["signals"].setdefault(s.name, {})[suite_name] = {
                "base": round(sum(vals["base"]) / max(1, len(ids)), 4),
                "trained": round(sum(vals["trained"]) / max(1, len(ids)), 4)}
            d_sig = [t - b for b, t in zip(vals["base"], vals["trained"])]
            for grader in {g for i in ids for g in rows["base"][i]["scores"]}:
                pairs = [(ds, rows["trained"][i]["scores"].get(grader), rows["base"][i]["scores"].get(grader))
                         for ds, i in zip(d_sig, ids)]
                pairs = [(ds, t - b) for ds, t, b in pairs if t is not None and b is not None]
                r = _corr([p[0] for p in pairs], [p[1] for p in pairs])
                if r is not None and abs(r) >= MIN_CORR and len(pairs) >= MIN_CASES:
                    report["moved"].append({"signal": s.name, "suite": suite_name, "grader": grader,
                                            "corr": round(r, 3), "n": len(pairs)})
    return report
