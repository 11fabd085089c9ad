"""Beside the ratings: style control, position bias, and the fragility of the top rank."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from posttrain.arena import _bt
from posttrain.arena._glm import fit_logistic
from posttrain.arena.votes import STYLE_FEATURES, Votes

# FastChat's contextual Bradley–Terry: penalty (λ/2)·‖params‖² with λ = 0.5, ratings in log10
# units, on the summed (not averaged) per-battle log-likelihood.
STYLE_LAMBDA = 0.5
LN10 = math.log(10.0)


def style_control(v: Votes, w: np.ndarray, theta_plain: np.ndarray, *, anchor_index: int | None,
                  offset: float) -> dict[str, Any]:
    """Ratings with length and markdown differences as covariates (FastChat's style control).

    Each feature enters as (a − b)/(a + b + 1), standardised over the battles; intervals are the
    sandwich estimator's (a bootstrap of a per-battle fit would cost 100 passes over the votes)."""
    if v.style_a is None or v.style_b is None:
        return {"enabled": False, "reason": "no style fields in the votes (style_a/style_b or text_a/text_b)"}
    ok = ~(np.isnan(v.style_a).any(axis=1) | np.isnan(v.style_b).any(axis=1)) & (w > 0)
    sa, sb = v.style_a[ok], v.style_b[ok]
    feats = (sa - sb) / (sa + sb + 1.0)
    sd = feats.std(axis=0)
    keep = sd > 1e-12
    names = [f for f, k in zip(STYLE_FEATURES, keep) if k]
    feats = (feats[:, keep] - feats[:, keep].mean(axis=0)) / sd[keep]
    a, b, y, ww = v.a[ok], v.b[ok], v.outcome[ok], w[ok]
    m, f, n = len(v.models), feats.shape[1], int(ok.sum())
    if n == 0:
        return {"enabled": False, "reason": "no vote has style fields for both answers"}

    def rows(i: int, j: int) -> np.ndarray:
        x = np.zeros((j - i, m + f))
        r = np.arange(j - i)
        x[r, a[i:j]] = 1.0
        x[r, b[i:j]] = -1.0
        x[:, m:] = feats[i:j]
        return x

    # θ natural = ln10 · (log10 rating): the same penalty as FastChat's on its parameters.
    ridge = np.r_[np.full(m, STYLE_LAMBDA / LN10**2), np.full(f, STYLE_LAMBDA)]
    res = fit_logistic(rows, n, m + f, y, ww, ridge=ridge)
    theta, cov = res.beta[:m], res.cov
    if anchor_index is not None:
        c = np.eye(m) - np.eye(m)[anchor_index]
        shift_plain = theta_plain[anchor_index]
    else:
        c = np.eye(m) - 1.0 / m
        shift_plain = 0.0
    centred = c @ theta
    var = np.einsum("ij,jk,ik->i", c, cov[:m, :m], c)
    rating = _bt.SCALE * centred + offset
    se = _bt.SCALE * np.sqrt(np.maximum(var, 0))
    low, high = rating - 1.96 * se, rating + 1.96 * se
    rank = _bt.rank_from_intervals(low, high)
    plain = _bt.SCALE * (theta_plain - shift_plain) + offset
    coef = {
        name: {"coef": round(float(res.beta[m + i] * _bt.SCALE), 2),
               "ci_low": round(float((res.beta[m + i] - 1.96 * math.sqrt(cov[m + i, m + i])) * _bt.SCALE), 2),
               "ci_high": round(float((res.beta[m + i] + 1.96 * math.sqrt(cov[m + i, m + i])) * _bt.SCALE), 2)}
        for i, name in enumerate(names)
    }
    return {
        "enabled": True,
        "features": names,
        "feature_transform": "(a - b) / (a + b + 1), standardised",
        "regularization": f"L2, (lambda/2)*||params||^2 with lambda={STYLE_LAMBDA} on log10-unit ratings and "
                          "standardised style coefficients (FastChat's contextual BT)",
        "coefficients_unit": "rating points per standard deviation of the feature",
        "coefficients": coef,
        "votes": n,
        "converged": res.converged,
        "models": [
            {"model": v.models[i], "rating": round(float(rating[i]), 2), "ci_low": round(float(low[i]), 2),
             "ci_high": round(float(high[i]), 2), "rank": int(rank[i]),
             "rating_without_style": round(float(plain[i]), 2)}
            for i in np.argsort(-rating, kind="stable")
        ],
    }


def position_bias(v: Votes, w: np.ndarray) -> dict[str, Any]:
    """P(left answer wins) beyond the models' strengths: logit = θ_left − θ_right + γ.

    Fitted on unique (left, right, outcome) counts; γ's interval from the sandwich estimator.
    Reported in rating points and as the left answer's win probability between equals."""
    if v.left_is_a is None:
        return {"enabled": False, "reason": "no displayed positions in the votes"}
    known = (v.left_is_a >= 0) & (w > 0)
    if not known.any():
        return {"enabled": False, "reason": "no displayed positions in the votes"}
    la = v.left_is_a[known] == 1
    left = np.where(la, v.a[known], v.b[known])
    right = np.where(la, v.b[known], v.a[known])
    y_left = np.where(la, v.outcome[known], 1.0 - v.outcome[known])
    m = len(v.models)
    key = (left * m + right) * 3 + np.rint(y_left * 2).astype(np.int64)
    summed = np.bincount(key, weights=w[known], minlength=m * m * 3)
    idx = np.flatnonzero(summed > 0)
    ul, ur, uy = idx // 3 // m, idx // 3 % m, (idx % 3) / 2.0

    def rows(i: int, j: int) -> np.ndarray:
        x = np.zeros((j - i, m + 1))
        r = np.arange(j - i)
        x[r, ul[i:j]] += 1.0
        x[r, ur[i:j]] -= 1.0
        x[:, m] = 1.0
        return x

    res = fit_logistic(rows, len(idx), m + 1, uy, summed[idx], zero_sum=m)
    g, se = float(res.beta[m]), math.sqrt(max(float(res.cov[m, m]), 0.0))
    p = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    lo, hi = g - 1.96 * se, g + 1.96 * se
    return {
        "enabled": True, "votes": int(known.sum()),
        "coefficient": round(g * _bt.SCALE, 2), "ci_low": round(lo * _bt.SCALE, 2), "ci_high": round(hi * _bt.SCALE, 2),
        "unit": "rating points in favour of the answer shown left",
        "left_win_probability": round(p(g), 4), "left_win_probability_ci": [round(p(lo), 4), round(p(hi), 4)],
        "significant": bool(lo > 0 or hi < 0),
    }


def _top(theta: np.ndarray) -> int:
    return int(np.argmax(theta))


def fragility(wins: np.ndarray, theta: np.ndarray, models: list[str], challengers: int = 3) -> dict[str, Any] | None:
    """The fewest votes whose removal gives the top rank to another model.

    Candidates are ordered by their influence on the gap to a challenger (one Newton step:
    −cᵀH⁺s per vote, as in Broderick et al.'s "approximate maximum influence perturbation"),
    removed greedily, and the count is found by bisection with exact refits, for each of the
    next `challengers` models. The figure is an upper bound found by refitting, not a proof of
    minimality; a tie vote counts half a win to each side."""
    m = len(models)
    if m < 2:
        return None
    top = _top(theta)
    order = np.argsort(-theta)
    hinv = _bt.laplacian_pinv(_bt.hessian(theta, wins))
    p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    best: dict[str, Any] | None = None
    ii, jj = np.nonzero(wins > 0)  # "i beat j" cells
    gaps = theta[top] - theta

    def linear_guess(ch: int) -> float:
        """Votes the one-step (influence) prediction needs to close the gap to `ch`."""
        hc = hinv[:, top] - hinv[:, ch]
        eff = -(1.0 - p[ii, jj]) * (hc[ii] - hc[jj])
        srt = np.argsort(eff)
        gain = np.cumsum(-eff[srt] * wins[ii[srt], jj[srt]])
        hit = np.flatnonzero(gain >= gaps[ch])
        return float(np.cumsum(wins[ii[srt], jj[srt]])[hit[0]]) if len(hit) else math.inf

    guesses = {int(ch): linear_guess(int(ch)) for ch in order[1:1 + challengers]}
    floor = min(guesses.values())
    # Only challengers the prediction puts near the closest one are searched exactly.
    for ch in [c for c, g in guesses.items() if g <= 2 * floor + 10 or math.isinf(floor)]:
        c = np.zeros(m)
        c[top], c[ch] = 1.0, -1.0
        hc = hinv @ c
        # Removing one "i beat j" vote subtracts its score (1 − p_ij)(e_i − e_j) from the gradient.
        effect = -(1.0 - p[ii, jj]) * (hc[ii] - hc[jj])
        sel = effect < 0
        ci, cj, eff = ii[sel], jj[sel], effect[sel]
        srt = np.argsort(eff)
        ci, cj, eff = ci[srt], cj[srt], eff[srt]
        avail = wins[ci, cj]
        cum = np.cumsum(avail)
        total = float(cum[-1]) if len(cum) else 0.0

        def flipped(ks: np.ndarray) -> np.ndarray:
            """For each k: does removing the first k units in influence order dethrone `top`?
            One batched, warm-started Newton fit for all the ks."""
            done = np.minimum(avail[None, :], np.maximum(0.0, ks[:, None] - (cum - avail)[None, :]))
            w2 = np.broadcast_to(wins, (len(ks), m, m)).copy()
            rows = np.repeat(np.arange(len(ks)), len(ci))
            np.subtract.at(w2, (rows, np.tile(ci, len(ks)), np.tile(cj, len(ks))), done.ravel())
            t2, _ = _bt.fit_counts(w2, theta0=theta)
            return np.argmax(t2, axis=1) != top

        if total == 0:
            continue
        # Where the linear (influence) prediction says the gap closes; look there first, since
        # fits that remove far more votes are degenerate (models left with no wins) and slow.
        reach = np.cumsum(eff * avail) <= -(theta[top] - theta[ch])
        guess = float(cum[np.argmax(reach)]) if reach.any() else total
        lo, hi = 0, None
        for top_k in (min(total, 4 * guess + 10), total):
            ks = np.unique(np.geomspace(1, max(top_k, 1), 16).round())
            ks = ks[ks > lo]
            f = flipped(ks)
            if f.any():
                hi = int(ks[f].min())
                lo = int(ks[~f & (ks < hi)].max()) if (~f & (ks < hi)).any() else lo
                break
            lo = int(ks.max())
        if hi is None:
            continue
        while hi - lo > 1:  # bisection, 16 looks per batched fit
            ks = np.unique(np.linspace(lo, hi, 18).round().astype(int)[1:-1])
            ks = ks[(ks > lo) & (ks < hi)]
            if not len(ks):
                break
            f = flipped(ks.astype(float))
            lo = int(ks[~f].max()) if (~f).any() else lo
            hi = int(ks[f & (ks > lo)].min()) if (f & (ks > lo)).any() else hi
        if best is None or hi < best["votes"]:
            best = {"votes": hi, "challenger": models[ch]}
    n = float(wins.sum())
    if best is None:
        return {"votes": None, "top": models[top], "challenger": None,
                "note": "no removal of votes against the challengers changed the top model"}
    return {**best, "top": models[top], "share": round(best["votes"] / n, 5) if n else None,
            "method": "influence-ordered greedy removal, bisection with exact refits"}
