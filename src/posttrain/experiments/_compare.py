"""`posttrain compare`: several models on the same suites — quality, latency, cost — with a
Pareto plot and a recommendation: the cheapest model that is not worse than the first one.

"Not worse" is a paired non-inferiority check of our own (posttrain.gate needs a human review
and its whole policy, which a quick comparison cannot wait for): on every grader of every suite,
the 95 % paired-bootstrap interval of (model − first) must stay above −margin (pass rates, in
fraction of cases; scores, relative to the first model's mean). Run `posttrain gate` on the
recommended model before shipping it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.store._store import Store

DEFAULT_SUITES = ("capability", "engagement")
DEFAULT_MARGIN = 0.05


class _Timed:
    """Wraps a backend to record each answer's latency and token counts."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.latency_ms: list[float] = []
        self.tokens: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def generate(self, conversations: Any, params: Any) -> Any:
        t = time.perf_counter()
        gens = self.backend.generate(conversations, params)
        wall = (time.perf_counter() - t) * 1000
        for g in gens:
            # A batch's answers all wait for the batch: its wall time is each one's latency
            # unless the backend measured its own.
            self.latency_ms.append(g.latency_ms if g.latency_ms else wall)
            self.tokens.append((g.prompt_tokens, g.completion_tokens))
        return gens


def parse_price(text: str) -> tuple[str, float, float]:
    """"MODEL=IN/OUT" (dollars per 1M input / output tokens) → (model, in, out)."""
    model, sep, rest = text.rpartition("=")
    a, slash, b = rest.partition("/")
    try:
        if not (sep and model and slash):
            raise ValueError
        return model, float(a), float(b)
    except ValueError:
        raise ValueError(f"price: expected MODEL=IN/OUT dollars per 1M tokens, e.g. big=3/15, got {text!r}") from None


def compare(store: Store, models: list[str], *, suites: list[str] | None = None,
            prices: dict[str, tuple[float, float]] | None = None, limit: int | None = None,
            margin: float = DEFAULT_MARGIN, seed: int = 0, progress: bool = False,
            use_cache: bool = False) -> dict[str, Any]:
    """Run `suites` on every model and compare each with the first. Generation is not cached by
    default, so latency is measured. ValueError/KeyError for bad input."""
    from posttrain.evals.compare import compare_runs
    from posttrain.evals.lifecycle import resolve_suite
    from posttrain.evals.runner import run_suite
    from posttrain.models.registry import get_model, load_backend

    if len(models) < 2:
        raise ValueError("compare needs at least two models (the first is the reference)")
    if len(set(models)) != len(models):
        raise ValueError("models: each model once")
    suites = list(suites or DEFAULT_SUITES)
    prices = prices or {}
    for m in [*models, *prices]:
        get_model(store, m)
    resolved = {s: resolve_suite(store, s) for s in suites}
    rows: list[dict[str, Any]] = []
    runs: dict[str, dict[str, str]] = {}
    for m in models:
        timed = _Timed(load_backend(store, m))
        runs[m] = {}
        quality = {}
        for s, suite in resolved.items():
            summary = run_suite(store, suite, m, limit=limit, seed=seed, progress=progress, backend=timed,
                                use_cache=use_cache)
            runs[m][s] = summary.run_id
            metric = suite.primary_metric or next(iter(summary.metrics), None)
            value = summary.metrics.get(metric) if metric else None
            quality[s] = {"metric": metric, "value": value, "higher_is_better": suite.higher_is_better}
        lat = np.array(timed.latency_ms) if timed.latency_ms else None
        tok = np.array(timed.tokens, dtype=float) if timed.tokens else np.zeros((0, 2))
        price = prices.get(m)
        cost = None
        if price is not None and len(tok):
            cost = float((tok[:, 0] * price[0] + tok[:, 1] * price[1]).mean() / 1e6 * 1000)
        goods = [(q["value"] if q["higher_is_better"] else 1 - q["value"]) for q in quality.values()
                 if q["value"] is not None]
        rows.append({
            "model": m, "quality": quality, "score": round(float(np.mean(goods)), 4) if goods else None,
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1) if lat is not None else None,
                           "p95": round(float(np.percentile(lat, 95)), 1) if lat is not None else None,
                           "answers": int(len(lat)) if lat is not None else 0},
            "tokens": {"input_mean": round(float(tok[:, 0].mean()), 1) if len(tok) else None,
                       "output_mean": round(float(tok[:, 1].mean()), 1) if len(tok) else None},
            "price_per_1m": {"input": price[0], "output": price[1]} if price else None,
            "cost_per_1k_requests": round(cost, 6) if cost is not None else None,
        })
    first = models[0]
    for r in rows:
        if r["model"] == first:
            r["noninferior"], r["failing"] = True, []
            continue
        failing = []
        for s in suites:
            cmp = compare_runs(store, runs[first][s], runs[r["model"]][s])
            for c in cmp["metrics"]:
                lo = c["ci"][0]
                allowed = margin if c["kind"] == "pass_rate" else margin * max(abs(c["mean_a"]), 1e-9)
                if c["kind"] == "score" and not resolved[s].higher_is_better:
                    bad = c["ci"][1] > allowed  # a rate of something unwanted must not go up
                else:
                    bad = math.isnan(lo) or lo < -allowed
                if bad:
                    failing.append({"suite": s, "metric": c["metric"], "delta": round(c["delta"], 4),
                                    "ci": [round(x, 4) for x in c["ci"]], "margin": round(allowed, 4)})
        r["noninferior"], r["failing"] = not failing, failing
    _pareto(rows)
    ok = [r for r in rows if r["noninferior"]]
    ok.sort(key=lambda r: (r["cost_per_1k_requests"] is None, r["cost_per_1k_requests"] or 0.0,
                           r["latency_ms"]["p50"] if r["latency_ms"]["p50"] is not None else math.inf))
    best = ok[0]["model"]
    return {
        "reference": first, "suites": suites, "margin": margin, "models": rows,
        "recommended": best,
        "reason": (f"{best} is the cheapest model not worse than {first} on any grader (margin {margin})"
                   if best != first else f"no cheaper model is within the margin of {first}: keep {first}"),
        "check": "paired non-inferiority per grader (95 % bootstrap, posttrain.evals.compare); "
                 "run `posttrain gate` before shipping",
        "runs": runs,
    }


def _pareto(rows: list[dict[str, Any]]) -> None:
    """Mark the models no other model beats on both cost (or p50 latency) and score."""
    def axis(r: dict[str, Any]) -> float:
        c = r["cost_per_1k_requests"]
        return c if c is not None else (r["latency_ms"]["p50"] or 0.0)

    for r in rows:
        r["pareto"] = r["score"] is not None and not any(
            o is not r and o["score"] is not None and axis(o) <= axis(r) and o["score"] >= r["score"]
            and (axis(o) < axis(r) or o["score"] > r["score"]) for o in rows)


def write_report(result: dict[str, Any], out: str | Path) -> Path:
    """The comparison as one self-contained HTML file (written atomically)."""
    from posttrain.experiments._compare_html import render

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".html.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render(result))
    os.replace(tmp, out)
    return out
