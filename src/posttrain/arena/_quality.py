"""Vote-quality weights: per-user caps, a per-user anomaly test, repeated-prompt down-weighting.

Every rule lowers weights instead of dropping "the votes after the N-th", so the result does not
depend on the order the votes arrive in; what each rule took away is reported as votes (the
weight it removed, rounded to a tenth).

- per-day cap: a user's votes on one day weigh min(1, cap / that day's count).
- share cap: a user's votes on a model with at least `share_min_votes` votes weigh at most
  `max_user_share` of that model's votes (a vote weighs the smaller factor of its two models).
- anomaly test (after FastChat, Chiang et al. 2024 §5.2): each vote gets a permutation p-value
  against the other users' votes on the same pair, p = (1 + #others at least as unusual) /
  (1 + #others), where "unusual" is the outcome's frequency among them; a user's p-values are
  combined in time order with Fisher's method, and the user is flagged if M_j = −2 Σ_{i≤j} log p_i
  exceeds the χ²_{2j} quantile at 1 − α/J for some j ≤ J = min(votes, 100) (Bonferroni over the
  looks). A flagged user's votes are all removed.
- repeated prompts: the votes on one prompt weigh min(1, max_prompt_repeats / its count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posttrain.arena.votes import Votes


@dataclass(frozen=True)
class QualityRules:
    max_votes_per_day: int = 200
    max_user_share: float = 0.25
    share_min_votes: int = 100
    anomaly_alpha: float = 0.01
    anomaly_min_votes: int = 5
    max_prompt_repeats: int = 50


def _group_factor(keys: np.ndarray, weights: np.ndarray, cap: float) -> np.ndarray:
    """Per row: min(1, cap / (total weight of the row's key group))."""
    _, inv = np.unique(keys, return_inverse=True)
    tot = np.bincount(inv, weights=weights)
    return np.minimum(1.0, cap / np.maximum(tot[inv], 1e-300))


def _anomalous_users(v: Votes, alpha: float, min_votes: int) -> np.ndarray:
    """Codes of the users flagged by the sequential agreement test."""
    from scipy.stats import chi2

    known = v.user >= 0
    if known.sum() == 0:
        return np.array([], dtype=np.int64)
    m = len(v.models)
    lo, hi = np.minimum(v.a, v.b), np.maximum(v.a, v.b)
    pair = lo * m + hi
    # Outcome oriented to the pair: 0 the lower-index model won, 1 tie, 2 the higher one won.
    lower_won = np.where(v.a == lo, v.outcome, 1.0 - v.outcome)
    code = np.where(lower_won == 1.0, 0, np.where(lower_won == 0.0, 2, 1))
    _, pinv = np.unique(pair, return_inverse=True)
    n_pairs = pinv.max() + 1
    total = np.zeros((n_pairs, 3))
    np.add.at(total, (pinv, code), 1.0)
    user = v.user
    key = pinv.astype(np.int64) * (user.max() + 2) + (user + 1)
    _, kinv = np.unique(key, return_inverse=True)
    own = np.zeros((kinv.max() + 1, 3))
    np.add.at(own, (kinv, code), 1.0)
    others = total[pinv] - own[kinv]  # (n, 3): the other users' votes on this vote's pair
    n_others = others.sum(axis=1)
    mine = others[np.arange(len(code)), code]
    as_unusual = (others * (others <= mine[:, None])).sum(axis=1)
    p = (1.0 + as_unusual) / (1.0 + n_others)
    # Time order within a user; ties broken by content, never by arrival order.
    t = v.time if v.time is not None else np.zeros(len(v))
    names = np.array(v.models, dtype=object)
    content = np.array([f"{x}|{y}|{o}" for x, y, o in zip(names[v.a], names[v.b], v.outcome)])
    order = np.lexsort((content, t, user))
    order = order[known[order]]
    u_sorted, p_sorted = user[order], p[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
    counts = np.diff(np.r_[starts, len(u_sorted)])
    j = np.arange(len(u_sorted)) - np.repeat(starts, counts) + 1
    stat = np.cumsum(-2.0 * np.log(p_sorted))
    stat -= np.repeat(np.r_[0.0, stat[starts[1:] - 1]], counts)
    big_j = np.repeat(np.minimum(counts, 100), counts)
    looked = (j <= big_j) & (np.repeat(counts, counts) >= min_votes)
    threshold = chi2.ppf(1.0 - alpha / big_j, 2 * j)
    hit = looked & (stat > threshold)
    return np.unique(u_sorted[hit])


def quality_weights(v: Votes, rules: QualityRules) -> tuple[np.ndarray, dict]:
    """(weight per vote, report of what each rule removed)."""
    n = len(v)
    w = np.ones(n)
    report: dict = {}
    if v.user is not None:
        flagged = _anomalous_users(v, rules.anomaly_alpha, rules.anomaly_min_votes)
        drop = np.isin(v.user, flagged) & (v.user >= 0)
        w[drop] = 0.0
        report["anomalous_users"] = {"users": [v.users[u] for u in flagged], "votes": int(drop.sum()),
                                     "alpha": rules.anomaly_alpha}
        known = v.user >= 0
        if v.time is not None:
            day = np.where(np.isnan(v.time), -1, np.floor(np.nan_to_num(v.time) / 86400)).astype(np.int64)
            key = np.where(known, v.user * 100_000_000 + day, -1 - np.arange(n))
            before = w.sum()
            w *= np.where(known, _group_factor(key, w, rules.max_votes_per_day), 1.0)
            report["per_day_cap"] = {"cap": rules.max_votes_per_day, "votes": round(before - w.sum(), 1)}
        before = w.sum()
        m = len(v.models)
        model_votes = np.bincount(v.a, weights=w, minlength=m) + np.bincount(v.b, weights=w, minlength=m)
        # A user's weight on a model counts the votes where it was either side.
        keys = np.where(np.r_[known, known], np.r_[v.user, v.user].astype(np.int64) * m + np.r_[v.a, v.b],
                        -1 - np.arange(2 * n))
        _, inv = np.unique(keys, return_inverse=True)
        mine = np.bincount(inv, weights=np.r_[w, w])[inv]
        side = np.r_[v.a, v.b]
        f = np.where(np.r_[known, known] & (model_votes[side] >= rules.share_min_votes),
                     np.minimum(1.0, rules.max_user_share * model_votes[side] / np.maximum(mine, 1e-300)), 1.0)
        factor = np.minimum(f[:n], f[n:])
        w *= factor
        report["user_share_cap"] = {"max_share": rules.max_user_share, "min_model_votes": rules.share_min_votes,
                                    "votes": round(before - w.sum(), 1)}
    if v.prompt is not None:
        known = v.prompt >= 0
        before = w.sum()
        key = np.where(known, v.prompt, -1 - np.arange(n))
        w *= np.where(known, _group_factor(key, np.ones(n), rules.max_prompt_repeats), 1.0)
        report["repeated_prompts"] = {"max_repeats": rules.max_prompt_repeats, "votes": round(before - w.sum(), 1)}
    report["total"] = round(n - float(w.sum()), 1)
    return w, report
