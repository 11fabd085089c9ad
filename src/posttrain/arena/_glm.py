"""A small Newton solver for the logistic models beside plain Bradley–Terry (position bias,
style control): rows given in chunks, optional ridge, θ constrained to sum to zero, and the
sandwich covariance from the same pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CHUNK = 200_000


@dataclass
class LogisticFit:
    beta: np.ndarray
    cov: np.ndarray  # sandwich covariance H⁻¹ B H⁻¹
    converged: bool


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_logistic(rows: Callable[[int, int], np.ndarray], n: int, p: int, y: np.ndarray, w: np.ndarray, *,
                 ridge: np.ndarray | None = None, zero_sum: int = 0, tol: float = 1e-9,
                 max_iter: int = 50) -> LogisticFit:
    """Maximize Σ w·[y log σ(xβ) + (1−y) log σ(−xβ)] − ½ Σ ridge·β².

    `rows(i, j)` gives the design rows i..j (dense); the first `zero_sum` coefficients are only
    identified up to a shift (Bradley–Terry ratings) and are kept summing to zero."""
    ridge = np.zeros(p) if ridge is None else ridge
    beta = np.zeros(p)
    fix = np.zeros((p, p))
    fix[:zero_sum, :zero_sum] = 1.0  # see _bt.fit_counts: keeps the step on the Σθ = 0 subspace
    total = max(float(w.sum()), 1.0)
    converged = False

    def moments(b: np.ndarray, meat: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        g = -ridge * b
        h = np.diag(ridge).astype(np.float64)
        m = np.zeros((p, p)) if meat else None
        for i in range(0, n, CHUNK):
            x = rows(i, min(n, i + CHUNK))
            pr = _sigmoid(x @ b)
            r = y[i:i + CHUNK] - pr
            ww = w[i:i + CHUNK]
            g += x.T @ (ww * r)
            h += (x * (ww * pr * (1 - pr))[:, None]).T @ x
            if meat:
                m += (x * (ww * r * r)[:, None]).T @ x
        return g, h, m

    for _ in range(max_iter):
        g, h, _ = moments(beta)
        if np.abs(g).max() / total < tol:
            converged = True
            break
        # The tiny ridge keeps tiny or separable data solvable (a coefficient then stays finite).
        step = np.linalg.solve(h + fix + 1e-9 * np.eye(p), g)
        # Separable data has its optimum at infinity: bounded steps keep the numbers finite.
        beta = beta + np.clip(step, -5.0, 5.0)
        if zero_sum:
            beta[:zero_sum] -= beta[:zero_sum].mean()
    _, h, meat = moments(beta, meat=True)
    hinv = np.linalg.pinv(h)
    return LogisticFit(beta, hinv @ meat @ hinv, converged)
