"""The leaderboard: one call from votes to ratings, intervals, ranks and integrity figures."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.arena import _bt
from posttrain.arena._extras import fragility, position_bias, style_control
from posttrain.arena._quality import QualityRules, quality_weights
from posttrain.arena.votes import Votes, from_records, read_votes

PROVISIONAL_VOTES = 100  # a model is "provisional" until it has this many votes


def _canonical(v: Votes) -> Votes:
    """Models indexed in name order, so nothing downstream depends on the order votes came in."""
    order = sorted(range(len(v.models)), key=lambda i: v.models[i])
    if order == list(range(len(order))):
        return v
    remap = np.empty(len(order), dtype=np.int32)
    remap[order] = np.arange(len(order))
    return dataclasses.replace(v, models=[v.models[i] for i in order], a=remap[v.a], b=remap[v.b])


def unique_outcomes(v: Votes, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FastChat's collapse: (a, b, outcome) triples with their summed weights (sorted)."""
    m = len(v.models)
    key = (v.a * m + v.b).astype(np.int64) * 3 + (v.outcome * 2).astype(np.int64)  # outcome 0, 1 (tie), 2
    unweighted = bool(w.min() == 1.0 and w.max() == 1.0)  # the usual case; bincount is faster without weights
    summed = np.bincount(key, weights=None if unweighted else w, minlength=m * m * 3).astype(np.float64)
    idx = np.flatnonzero(summed > 0)
    return idx // 3 // m, idx // 3 % m, (idx % 3) / 2.0, summed[idx]


def win_matrix(a: np.ndarray, b: np.ndarray, y: np.ndarray, weight: np.ndarray, m: int) -> np.ndarray:
    """W[i, j] = weighted wins of i over j (ties half); weight may be (U,) or (R, U)."""
    weight = np.atleast_2d(weight)
    r = weight.shape[0]
    base = (np.arange(r) * m * m)[:, None]
    flat = np.bincount((base + a * m + b).ravel(), weights=(weight * y).ravel(), minlength=r * m * m)
    flat += np.bincount((base + b * m + a).ravel(), weights=(weight * (1 - y)).ravel(), minlength=r * m * m)
    return flat.reshape(r, m, m)


def unordered_outcomes(a, b, y, weight):
    """Merge (a, b, y) with (b, a, 1 − y): which model was "model_a" does not enter the
    likelihood, and summing categories of a multinomial gives the multinomial of the merged
    categories, so resampling these is the same bootstrap with half the categories to draw."""
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    yy = np.where(swap, 1.0 - y, y)
    m = int(max(a.max(), b.max())) + 1 if len(a) else 0
    key = (lo * m + hi) * 3 + (yy * 2).astype(np.int64)
    summed = np.bincount(key, weights=weight, minlength=m * m * 3)
    idx = np.flatnonzero(summed > 0)
    return idx // 3 // m, idx // 3 % m, (idx % 3) / 2.0, summed[idx]


def bootstrap(a, b, y, weight, m: int, rounds: int, seed: int, batch: int = 50) -> np.ndarray:
    """θ for `rounds` multinomial resamples of the vote counts (FastChat's scheme, drawn over
    unordered outcomes), fitted in batches by one vectorised Newton."""
    a, b, y, weight = unordered_outcomes(a, b, y, weight)
    rng = np.random.default_rng(seed)
    n = int(round(weight.sum()))
    draws = rng.multinomial(n, weight / weight.sum(), size=rounds).astype(np.float64)
    out = []
    for i in range(0, rounds, batch):
        theta, _ = _bt.fit_counts(win_matrix(a, b, y, draws[i:i + batch], m))
        out.append(theta)
    return np.concatenate(out) if out else np.zeros((0, m))


def _anchor(models: list[str], anchor: tuple[str, float] | None) -> tuple[int | None, float]:
    if anchor is None:
        return None, _bt.INIT
    name, rating = anchor
    if name not in models:
        raise ValueError(f"anchor: model {name!r} has no votes; models: {', '.join(models)}")
    return models.index(name), float(rating)


def _ratings(theta: np.ndarray, k: int | None, offset: float) -> np.ndarray:
    shift = theta[..., [k]] if k is not None else 0.0
    return _bt.SCALE * (theta - shift) + offset


def fit(votes: Votes | list[dict[str, Any]] | str | Path, *, rounds: int = 100, ci: str = "bootstrap",
        style: bool = False, anchor: tuple[str, float] | str | None = None, seed: int = 0,
        rules: QualityRules | None = None, provisional_votes: int = PROVISIONAL_VOTES) -> dict[str, Any]:
    """Fit the leaderboard (the `posttrain arena fit --json` shape).

    `votes`: a Votes, a list of vote dicts, or a JSONL path. `ci`: "bootstrap" (percentile
    intervals of `rounds` multinomial resamples of the counts) or "sandwich" (robust covariance,
    ±1.96 SE). `anchor`: (MODEL, RATING) or "MODEL=RATING" pins that model's rating instead of a
    mean of 1000. Raises ValueError for bad input."""
    if ci not in ("bootstrap", "sandwich"):
        raise ValueError(f"ci: must be bootstrap or sandwich, got {ci!r}")
    if rounds < 1 and ci == "bootstrap":
        raise ValueError("rounds: must be at least 1")
    if isinstance(anchor, str):
        name, sep, value = anchor.rpartition("=")
        try:
            anchor = (name, float(value)) if sep and name else None
        except ValueError:
            anchor = None
        if anchor is None:
            raise ValueError("anchor: expected MODEL=RATING, e.g. gpt4=1200")
    t0 = time.perf_counter()
    if isinstance(votes, (str, Path)):
        votes = read_votes(votes)
    elif isinstance(votes, list):
        votes = from_records(votes)
    read_s = time.perf_counter() - t0
    if len(votes) == 0:
        raise ValueError("no votes to fit")
    t1 = time.perf_counter()
    v = _canonical(votes)
    m = len(v.models)
    w, removed = quality_weights(v, rules or QualityRules())
    a, b, y, cnt = unique_outcomes(v, w)
    wins = win_matrix(a, b, y, cnt, m)[0]
    theta, converged = _bt.fit_counts(wins)
    k, offset = _anchor(v.models, anchor)
    rating = _ratings(theta, k, offset)
    fit_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    if ci == "bootstrap":
        boot = _ratings(bootstrap(a, b, y, cnt, m, rounds, seed), k, offset)
        low, high = np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)
    else:
        cov = _bt.sandwich_cov(theta, a, b, y, cnt, wins)
        if k is not None:  # the variance of θi − θk
            d = np.diag(cov)
            var = d + d[k] - 2 * cov[:, k]
        else:
            var = np.diag(cov)
        se = _bt.SCALE * np.sqrt(np.maximum(var, 0.0))
        low, high = rating - 1.96 * se, rating + 1.96 * se
    boot_s = time.perf_counter() - t2
    rank = _bt.rank_from_intervals(low, high)
    appearances = np.bincount(v.a, minlength=m) + np.bincount(v.b, minlength=m)
    rows = [
        {"model": v.models[i], "rating": round(float(rating[i]), 2), "ci_low": round(float(low[i]), 2),
         "ci_high": round(float(high[i]), 2), "rank": int(rank[i]), "votes": int(appearances[i]),
         "share": round(float(appearances[i]) / len(v), 4), "provisional": bool(appearances[i] < provisional_votes)}
        for i in np.argsort(-rating, kind="stable")
    ]
    return {
        "models": rows,
        "style": style_control(v, w, theta, anchor_index=k, offset=offset) if style else {"enabled": False},
        "position": position_bias(v, w),
        "removed": removed,
        "fragility": fragility(wins, theta, v.models),
        "votes": len(v),
        "ci": {"method": ci, "level": 0.95, **({"rounds": rounds, "seed": seed} if ci == "bootstrap" else {})},
        "scale": {"points_per_log10_odds": 400, "mean": None if anchor else 1000,
                  "anchor": {"model": anchor[0], "rating": anchor[1]} if anchor else None},
        "converged": converged,
        "timings": {"read_s": round(read_s, 4), "fit_s": round(fit_s, 4), "bootstrap_s": round(boot_s, 4)},
    }
