"""The gate's statistics: a one-sided test per metric against its margin, Holm's step-down
correction across the blocking metrics, and the smallest regression each metric could detect.

Per case the candidate-minus-baseline difference is oriented so that positive means better
(`d = cand - base` when higher is better, `base - cand` otherwise), so a regression is a negative
mean. For each metric:

- H0: the true mean difference is >= -margin (no regression beyond the margin); the gate blocks
  only when H0 is rejected, i.e. the data show a regression larger than the margin. The test is
  a one-sided paired t-test of mean(d) against -margin; `p` is its lower-tail probability.
- Holm controls the probability of blocking a candidate that regressed nowhere beyond any margin
  (the family-wise false-block rate) at `alpha`, however many metrics the policy has.
- A test that rejects only on strong evidence would pass anything when it has too few cases, so
  every metric states its minimum detectable regression (MDR): the true regression, measured
  from zero, that a one-sided level-alpha/k test (Holm's strictest step) tells apart from no
  change with the stated power: MDR = (z[1 - alpha/k] + z[power]) * sd / sqrt(n). A metric with
  MDR > margin is underpowered. When MDR <= margin, a regression of margin + MDR (at most twice
  the margin) is blocked with at least that power.
- The sd used for the MDR is never taken from the observed differences alone (two identical
  models differ nowhere, which says nothing about sensitivity): for pass/fail values it is at
  least sqrt(m(1-m)), the smallest spread any regression of size m (the margin) can have; for
  scores at least the baseline's own sd (as if the two models correlated at 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def noninferiority_p(diffs: np.ndarray, margin: float) -> float:
    """One-sided p-value for H1 "mean(diffs) < -margin" (a regression beyond the margin)."""
    n = diffs.size
    if n == 0:
        return 1.0
    shifted = diffs.mean() + margin
    sd = diffs.std(ddof=1) if n > 1 else 0.0
    if sd == 0 or n < 2:
        # No spread: the observed mean is the truth for these cases.
        return 0.0 if shifted < 0 else 1.0
    t = shifted / (sd / math.sqrt(n))
    return float(sps.t.cdf(t, df=n - 1))


def holm(pvalues: list[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm's step-down adjusted p-values and rejections (in the input order).

    Sorted ascending, the j-th smallest (0-based) of k is compared with alpha / (k - j); testing
    stops at the first that fails. Adjusted p_(j) = max over i <= j of min(1, (k - i) p_(i)).
    """
    k = len(pvalues)
    order = sorted(range(k), key=lambda i: pvalues[i])
    adjusted = [1.0] * k
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (k - j) * pvalues[i]))
        adjusted[i] = running
    return adjusted, [a <= alpha for a in adjusted]


def min_detectable_regression(
    diffs: np.ndarray, base: np.ndarray, *, binary: bool, margin: float, alpha: float, k: int, power: float
) -> float:
    """The MDR described in the module docstring (inf with fewer than 2 cases)."""
    n = diffs.size
    if n < 2:
        return math.inf
    observed = float(diffs.var(ddof=1))
    if binary:
        m = min(max(margin, 1e-6), 0.5)
        floor = m * (1 - m)
    else:
        floor = float(base.var(ddof=1))
    sd = math.sqrt(max(observed, floor))
    z = sps.norm.ppf(1 - alpha / max(k, 1)) + sps.norm.ppf(power)
    return float(z * sd / math.sqrt(n))


def cases_needed(margin: float, *, alpha: float, k: int, power: float) -> int:
    """Pass/fail cases a metric needs for MDR <= margin at the variance floor m(1-m)."""
    z = sps.norm.ppf(1 - alpha / max(k, 1)) + sps.norm.ppf(power)
    m = min(max(margin, 1e-6), 0.5)
    return math.ceil(z * z * m * (1 - m) / (margin * margin)) if margin > 0 else 10**9


@dataclass
class Oriented:
    """A metric's paired values, oriented (see the module docstring)."""

    base: np.ndarray
    cand: np.ndarray
    direction: str

    @property
    def diffs(self) -> np.ndarray:
        d = self.cand - self.base
        return d if self.direction == "higher" else -d
