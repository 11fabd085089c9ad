"""Bradley–Terry on aggregated pair counts: Newton's method, batched multinomial bootstrap,
sandwich covariance.

Votes collapse into W[i, j] = the (weighted) wins of model i over model j, a tie counting half
to each side. The log-likelihood of the per-battle model P(i beats j) = σ(θi − θj) is then
Σ W[i, j] log σ(θi − θj): the same function FastChat minimizes over its unique outcomes, so the
maximizer is the same, but each Newton step costs O(M²) + an M×M solve instead of a pass over
the battles. θ is in natural log-odds with Σθ = 0 (the likelihood only sees differences);
FastChat's scale is rating = 400·log10-odds + 1000 = 400/ln(10)·θ + 1000.
"""

from __future__ import annotations

import math

import numpy as np

SCALE = 400.0 / math.log(10.0)  # rating points per natural log-odds unit
INIT = 1000.0
# Newton stops when the largest gradient entry per vote is below this (tighter than FastChat's
# gtol 1e-6 on the mean loss, so both land on the same maximizer within far less than a point).
GTOL = 1e-10
MAX_ITER = 100
# A model that never lost (or never won) has its MLE at infinity; clamp so the numbers stay
# finite and say so through `converged` rather than overflow.
THETA_MAX = 30.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for any x, no overflow warnings


def loglik(theta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """Σ W[i,j] log σ(θi − θj); theta (..., M), wins (..., M, M) → (...)."""
    d = theta[..., :, None] - theta[..., None, :]
    return (wins * -np.logaddexp(0.0, -d)).sum(axis=(-1, -2))


def fit_counts(wins: np.ndarray, *, tol: float = GTOL, max_iter: int = MAX_ITER,
               theta0: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Maximum-likelihood θ for one (M, M) or a batch (R, M, M) of win matrices.

    Damped Newton on the mean-zero subspace: solving (H + 11ᵀ)δ = g keeps Σδ = 0 because the
    gradient is orthogonal to 1 and H1 = 0. Each batch member backtracks on its own until the
    likelihood does not fall (beyond rounding). `theta0` warm-starts every member. Returns
    (theta, converged)."""
    wins = np.asarray(wins, dtype=np.float64)
    single = wins.ndim == 2
    if single:
        wins = wins[None]
    r, m, _ = wins.shape
    n = wins + np.swapaxes(wins, -1, -2)  # games between i and j
    total = np.maximum(n.sum(axis=(-1, -2)) / 2.0, 1.0)
    theta = np.zeros((r, m)) if theta0 is None else np.broadcast_to(theta0 - np.mean(theta0), (r, m)).copy()
    ones = np.ones((m, m))
    ridge = 1e-9 * np.eye(m)
    ll = loglik(theta, wins)
    converged = np.zeros(r, dtype=bool)
    for _ in range(max_iter):
        p = _sigmoid(theta[:, :, None] - theta[:, None, :])
        g = wins.sum(axis=-1) - (n * p).sum(axis=-1)  # ∂ll/∂θi = wins_i − expected wins_i
        converged = np.abs(g).max(axis=-1) / total < tol
        if converged.all():
            break
        w = n * p * (1.0 - p)
        h = -w
        h[:, np.arange(m), np.arange(m)] = w.sum(axis=-1)  # the negative Hessian (a Laplacian)
        # The tiny ridge keeps the solve defined when a model's games carry no information
        # (it never lost or never won, so its p is 0 or 1 at the clamp).
        step = np.linalg.solve(h + ones + ridge, g[..., None])[..., 0]
        step[converged] = 0.0
        t = np.ones(r)
        for _ in range(20):  # backtracking, vectorised over the batch
            cand = np.clip(theta + t[:, None] * step, -THETA_MAX, THETA_MAX)
            cand -= cand.mean(axis=-1, keepdims=True)
            new = loglik(cand, wins)
            bad = new < ll - 1e-10 * np.abs(ll) - 1e-9
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
        theta, ll = cand, new
    theta = theta - theta.mean(axis=-1, keepdims=True)
    ok = bool(converged.all())
    return (theta[0] if single else theta), ok


def laplacian_pinv(h: np.ndarray) -> np.ndarray:
    """Moore–Penrose inverse of a connected Laplacian-like H (null space 1): (H + 11ᵀ/m)⁻¹ − 11ᵀ/m,
    one solve instead of an SVD."""
    m = h.shape[0]
    j = np.full((m, m), 1.0 / m)
    return np.linalg.inv(h + j + 1e-12 * np.eye(m)) - j


def hessian(theta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """The observed information (negative Hessian) of the count likelihood at theta."""
    n = wins + wins.T
    p = _sigmoid(theta[:, None] - theta[None, :])
    w = n * p * (1.0 - p)
    h = -w
    np.fill_diagonal(h, w.sum(axis=1))
    return h


def sandwich_cov(theta: np.ndarray, pair_a: np.ndarray, pair_b: np.ndarray, outcome: np.ndarray,
                 weight: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """Robust covariance H⁻¹ B H⁻¹ of θ (mean-zero parameterisation, pseudo-inverses).

    B = Σ_battles s sᵀ with the per-battle score s = (y − p)(e_a − e_b); battles are given as
    unique outcomes (a, b, y) with their weights, so B is a weighted sum over those rows. With
    ties scored as y = ½ the model is misspecified and B ≠ H: that is why LMArena uses this
    estimator rather than the inverse Fisher information."""
    m = theta.shape[0]
    p = _sigmoid(theta[pair_a] - theta[pair_b])
    resid2 = weight * (outcome - p) ** 2
    b = np.zeros((m, m))
    np.add.at(b, (pair_a, pair_a), resid2)
    np.add.at(b, (pair_b, pair_b), resid2)
    np.add.at(b, (pair_a, pair_b), -resid2)
    np.add.at(b, (pair_b, pair_a), -resid2)
    hinv = laplacian_pinv(hessian(theta, wins))
    return hinv @ b @ hinv


def rank_from_intervals(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """rank = 1 + the number of models whose lower bound is above this model's upper bound."""
    return 1 + (low[None, :] > high[:, None]).sum(axis=1)
