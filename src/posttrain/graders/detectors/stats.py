"""Precision/recall with Wilson score intervals, and the smallest detectable difference of a rate."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score 95 % interval for k successes out of n (0, 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def pr_report(preds: list[bool], labels: list[bool]) -> dict[str, Any]:
    """{"precision", "precision_ci", "recall", "recall_ci", "tp", "fp", "fn", "n"}."""
    tp = sum(p and y for p, y in zip(preds, labels))
    fp = sum(p and not y for p, y in zip(preds, labels))
    fn = sum(y and not p for p, y in zip(preds, labels))
    n_pred, n_pos = tp + fp, tp + fn
    return {
        "precision": tp / n_pred if n_pred else 1.0, "precision_ci": list(wilson(tp, n_pred)),
        "recall": tp / n_pos if n_pos else 1.0, "recall_ci": list(wilson(tp, n_pos)),
        "tp": tp, "fp": fp, "fn": fn, "n": len(labels),
    }


def min_detectable_difference(n: int, p: float = 0.5, alpha_z: float = Z95, power_z: float = 0.841621) -> float:
    """Smallest difference between two independent rates of n cases each that a two-sided 5 %
    test detects with 80 % power, at base rate p (normal approximation)."""
    if n <= 0:
        return float("inf")
    return (alpha_z + power_z) * math.sqrt(2 * p * (1 - p) / n)


def min_detectable_paired(n: int, sd: float = 1.0, alpha_z: float = Z95, power_z: float = 0.841621) -> float:
    """Smallest mean paired difference detectable in n pairs with difference s.d. `sd`."""
    if n <= 0:
        return float("inf")
    return (alpha_z + power_z) * sd / math.sqrt(n)
