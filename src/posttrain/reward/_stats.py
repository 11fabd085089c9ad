"""The statistics a reward model is judged by: pairwise accuracy with a Wilson interval, expected
calibration error of the Bradley–Terry probability, and rank correlation with length."""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % by default). Unlike the plain
    normal interval it stays inside [0, 1] and keeps its coverage near 0 and 1 and for small n."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def ece(probs: Sequence[float], outcomes: Sequence[int], bins: int = 10) -> float:
    """Expected calibration error: the bin-weighted mean |mean(prob) - mean(outcome)| over equal-
    width probability bins."""
    if len(probs) != len(outcomes):
        raise ValueError("probs and outcomes differ in length")
    if not probs:
        return 0.0
    sums = [[0.0, 0.0, 0] for _ in range(bins)]
    for p, y in zip(probs, outcomes):
        b = sums[min(bins - 1, int(p * bins))]
        b[0] += p
        b[1] += y
        b[2] += 1
    return sum(abs(sp - sy) for sp, sy, c in sums if c) / len(probs)


def pairwise_ece(margins: Sequence[float], bins: int = 10) -> float:
    """ECE of P(chosen beats rejected) = sigmoid(r_chosen - r_rejected). Each pair counts in both
    orders (p with outcome 1, 1 - p with outcome 0): a held-out set holds only "chosen won"
    rows, and the order the pair is written in is arbitrary."""
    probs = [sigmoid(m) for m in margins]
    return ece(probs + [1 - p for p in probs], [1] * len(probs) + [0] * len(probs), bins)


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share the mean rank
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson on mid-ranks)."""
    return pearson(_ranks(x), _ranks(y))


def stdev(xs: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    m = sum(xs) / n
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def pair_report(chosen: Sequence[float], rejected: Sequence[float], chosen_words: Sequence[int],
                rejected_words: Sequence[int]) -> dict[str, object]:
    """Held-out report of a reward model: accuracy (ties count half a win, so a constant RM scores
    0.5), its 95 % Wilson interval, ECE of the Bradley–Terry probability, and the Spearman
    correlation of reward with answer length in words over every held-out answer."""
    n = len(chosen)
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected))
    lo, hi = wilson(round(wins), n)
    rewards = [*chosen, *rejected]
    return {
        "n": n,
        "accuracy": round(wins / n, 4) if n else None,
        "ci": [round(lo, 4), round(hi, 4)],
        "ece": round(pairwise_ece([c - r for c, r in zip(chosen, rejected)]), 4),
        "length_spearman": round(spearman(rewards, [*chosen_words, *rejected_words]), 4),
        "reward_mean": round(sum(rewards) / len(rewards), 4) if rewards else None,
        "reward_sd": round(stdev(rewards), 4),
    }
