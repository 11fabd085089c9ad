"""The gate's statistics: Holm against a hand-computed case, the one-sided test against its
margin, the detectable regression, and the false-block rate by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posttrain.gate.policy import PolicyError, load_policy, parse_policy
from posttrain.gate.stats import cases_needed, holm, min_detectable_regression, noninferiority_p


def test_holm_matches_a_hand_computed_case():
    # p = (0.01, 0.04, 0.03, 0.005), k = 4, alpha = 0.05. Sorted: 0.005, 0.01, 0.03, 0.04.
    # Adjusted: 4*0.005 = 0.02; max(0.02, 3*0.01 = 0.03) = 0.03; max(0.03, 2*0.03 = 0.06) = 0.06;
    # max(0.06, 1*0.04) = 0.06. Rejected at 0.05: the first two steps only (0.03 > 0.05/2 stops it),
    # although 0.04 < 0.05 and 0.03 < 0.05 would each pass alone.
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]


def test_holm_caps_at_one_and_keeps_order():
    adjusted, rejected = holm([0.9, 0.5], 0.05)
    assert adjusted == [1.0, 1.0] and rejected == [False, False]


def test_noninferiority_p_is_one_sided_against_the_margin():
    rng = np.random.default_rng(0)
    within = rng.normal(-0.05, 0.2, 400)  # regressed by 0.05, margin 0.1: not beyond it
    beyond = rng.normal(-0.25, 0.2, 400)
    assert noninferiority_p(within, 0.1) > 0.5
    assert noninferiority_p(beyond, 0.1) < 1e-6
    assert noninferiority_p(np.zeros(50), 0.1) == 1.0  # identical answers: no evidence of regression
    assert noninferiority_p(np.full(50, -1.0), 0.1) == 0.0


def test_detectable_regression_never_trusts_zero_spread():
    # Two identical models differ nowhere; the MDR still reflects how few cases there are.
    d, base = np.zeros(20), np.r_[np.ones(10), np.zeros(10)]
    mdr = min_detectable_regression(d, base, binary=True, margin=0.1, alpha=0.05, k=1, power=0.8)
    z = 1.6448536 + 0.8416212
    assert mdr == pytest.approx(z * math.sqrt(0.1 * 0.9) / math.sqrt(20), rel=1e-6)
    assert mdr > 0.1  # 20 cases cannot see a 10-point regression
    n = cases_needed(0.1, alpha=0.05, k=1, power=0.8)
    assert min_detectable_regression(np.zeros(n), np.zeros(n), binary=True, margin=0.1, alpha=0.05, k=1,
                                     power=0.8) <= 0.1
    assert min_detectable_regression(np.zeros(n - 1), np.zeros(n - 1), binary=True, margin=0.1, alpha=0.05,
                                     k=1, power=0.8) > 0.1


def _gate(pairs: list[tuple[np.ndarray, np.ndarray]], margin: float, alpha: float, underpowered: bool) -> bool:
    """The gate's rule on simulated metrics: Holm-rejected regression, or (optionally) underpowered."""
    diffs = [c.astype(float) - b.astype(float) for b, c in pairs]
    if any(holm([noninferiority_p(d, margin) for d in diffs], alpha)[1]):
        return True
    k = len(pairs)
    return underpowered and any(
        min_detectable_regression(d, b.astype(float), binary=True, margin=margin, alpha=alpha, k=k, power=0.8) > margin
        for d, (b, _) in zip(diffs, pairs))


def test_false_block_rate_of_the_test_and_holm_at_the_margin():
    """Candidates sitting exactly at the margin on all k = 10 metrics (independent draws: the
    least favourable case): the non-inferiority test + Holm blocks at most ~alpha; without Holm
    it blocks far more often."""
    rng = np.random.default_rng(7)
    alpha, k, n, margin, sims = 0.05, 10, 100, 0.1, 400
    p = rng.uniform(0.3, 0.7, k)

    def metrics() -> list[tuple[np.ndarray, np.ndarray]]:
        return [(rng.random(n) < p[j], rng.random(n) < p[j] - margin) for j in range(k)]

    edge = np.mean([_gate(metrics(), margin, alpha, underpowered=False) for _ in range(sims)])
    assert edge <= alpha + 0.033  # 400 gates: binomial sd at 0.05 is 0.011
    raw = np.mean([any(noninferiority_p(c.astype(float) - b.astype(float), margin) <= alpha for b, c in metrics())
                   for _ in range(200)])
    assert raw > 0.2


def _related(rng, n: int, p: float, redraw: float, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two models that agree on most cases: the candidate redraws a fraction of the answers."""
    base = rng.random(n) < p
    again = rng.random(n) < redraw
    return base, np.where(again, rng.random(n) < p + shift, base)


def test_identical_models_block_at_most_alpha_and_a_real_regression_is_caught():
    """The whole rule (regression or underpowered) over many simulated gates of k = 10 metrics
    with 150 cases: statistically identical candidates block at most ~alpha; a candidate that
    regressed 0.25 on one metric (2.5x its margin) is blocked at least 80% of the time."""
    rng = np.random.default_rng(11)
    alpha, k, n, margin = 0.05, 10, 150, 0.1
    p = rng.uniform(0.3, 0.7, k)
    same = np.mean([_gate([_related(rng, n, p[j], 0.1) for j in range(k)], margin, alpha, True)
                    for _ in range(300)])
    assert same <= alpha + 0.02

    def regressed() -> list[tuple[np.ndarray, np.ndarray]]:
        out = [_related(rng, n, p[j], 0.1) for j in range(k)]
        base = rng.random(n) < 0.7
        out[3] = (base, base & (rng.random(n) >= 0.25 / 0.7))  # passes lost at rate 0.25 overall
        return out

    hit = np.mean([_gate(regressed(), margin, alpha, True) for _ in range(200)])
    assert hit >= 0.8


def test_default_policy_loads_and_names_every_required_kind():
    pol = load_policy()
    names = " ".join(m.name for m in pol.metrics if m.action == "block")
    for kind in ("sycophancy.caves_to_pushback", "sycophancy.suggested_answer", "sycophancy.praises_own_work",
                 "sycophancy.opinion", "engagement.follow_up_offer", "engagement.flattery_opener",
                 "verbosity.answer_length", "instruction_following.ifeval", "grounding.context_following",
                 "ambiguity.handling", "capability.accuracy"):
        assert kind in names
    assert pol.underpowered == "block" and pol.review_required >= 1


@pytest.mark.parametrize("text, field", [
    ('[[metric]]\nname = "a"\nsuite = "x"\n', "margin is required"),
    ('[[metric]]\nname = "a"\nsuite = "x"\nmargin = -1\n', "margin must be a number"),
    ('[[metric]]\nname = "a"\nsuite = "x"\nmargin = 0.1\ndirection = "up"\n', "direction must be one of"),
    ('[gate]\nalpha = 0\n[[metric]]\nname = "a"\nsuite = "x"\nmargin = 0.1\n', "gate.alpha"),
    ('[gate]\nalfa = 0.1\n[[metric]]\nname = "a"\nsuite = "x"\nmargin = 0.1\n', "unknown key(s) alfa"),
    ('[gate]\n', "at least one [[metric]]"),
    ('[[metric]]\nname = "a"\nsuites = ["x", "y"]\nmargin = 0.1\n', "grader is required"),
    ("not toml = = 1", "not valid TOML"),
])
def test_policy_errors_name_the_field(text, field):
    with pytest.raises(PolicyError, match="policy: .*" + field.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_policy(text)


def test_default_policy_filters_and_sizes_match_the_suites():
    """Every `where` of the default policy selects cases of its suites (a renamed data key would
    silently make a metric unmeasurable), and every blocking metric the generated suites feed
    is powered at its margin with the default sizes (at the variance floor, k = 11)."""
    from posttrain.evals.suite import get_suite, suite_names

    pol = load_policy()
    k = sum(1 for m in pol.metrics if m.action == "block")
    assert k == 11
    for m in pol.metrics:
        n = 0
        for s in m.suites:
            if s not in suite_names():
                continue  # a suite still to land (its metric says missing = "warn")
            suite = get_suite(s)
            if suite.needs_data_dir:
                break
            cases = suite.load(None, pol.seed)[: pol.suite_run(s).limit]
            n += sum(all(c.data.get(key) == v for key, v in m.where.items()) for c in cases)
        else:
            if any(s in suite_names() for s in m.suites):
                assert n > 0, m.name
                if m.action == "block" and m.value == "passed":
                    assert n >= cases_needed(m.margin, alpha=pol.alpha, k=k, power=pol.power), (m.name, n)
