"""Per-user caps: no user supplies more than `share` of a dataset (default 10 %), a defence
against brigading and against the few users who rate the most.

The cap is one number k for every user: the largest k with k <= share * sum_u min(c_u, k),
where c_u are the users' row counts after the other curation steps. Then every user keeps at
most k rows (their earliest, in export order) and the dataset has N = sum_u min(c_u, k) rows,
so each user's share k / N is at most `share`. sum_u min(c_u, k) - k / share is concave in k
and 0 at k = 0, so the k that satisfy the bound form an interval [0, k*], found by bisection.
With fewer than 1 / share users nobody can stay under the share and the cap is 0: the report
says so (raise max_user_share).
"""

from __future__ import annotations


def user_cap(counts: dict[str, int], share: float) -> int | None:
    """The per-user row cap, or None when `share` >= 1 (no cap)."""
    if not 0 < share <= 1:
        raise ValueError("max_user_share: must be in (0, 1]")
    if share >= 1 or not counts:
        return None

    def ok(k: int) -> bool:
        # Integer-safe form of k <= share * total (share given as a float, e.g. 0.1).
        return k <= share * sum(min(c, k) for c in counts.values()) + 1e-9

    lo, hi = 0, max(counts.values())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
