"""The per-user rating report: who rates, and how. Thumbs come mostly from the extremes (a few
users rate most, and many rate almost only up or only down), so an export shows it next to the
data: how many users rated at all, the share of up votes overall and per user, how much of the
rating the most active 10 % of raters gave, and how many raters vote (almost) one way only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from posttrain.store import datasets as q
from posttrain.store._store import Store
from posttrain.store.schema import User

TOP = 20  # raters listed by name in the report


def rating_report(store: Store, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Newest thumbs per completion in the window, grouped by user (consenting or not: the
    report describes who rates; the dataset itself honours consent)."""
    from sqlalchemy import func, select

    with store.session() as s:
        rows = q.thumbs_by_user(s, since, until)
        users_total = s.scalar(select(func.count()).select_from(User)) or 0
    per: dict[str, dict[str, Any]] = {}
    for user_id, consent, value, n in rows:
        d = per.setdefault(user_id, {"user": user_id, "consent": bool(consent), "up": 0, "down": 0})
        if str(value).strip() == "1":
            d["up"] += n
        elif str(value).strip() == "-1":
            d["down"] += n
    raters = sorted(per.values(), key=lambda d: (-(d["up"] + d["down"]), d["user"]))
    for d in raters:
        d["share_up"] = round(d["up"] / max(1, d["up"] + d["down"]), 4)
    ups = sum(d["up"] for d in raters)
    total = ups + sum(d["down"] for d in raters)
    top_n = max(1, round(len(raters) * 0.1)) if raters else 0
    top_votes = sum(d["up"] + d["down"] for d in raters[:top_n])
    return {
        "users_total": users_total,
        "users_rated": len(raters),
        "ratings": total,
        "share_up": round(ups / total, 4) if total else None,
        "top_10pct_raters_share": round(top_votes / total, 4) if total else None,
        "one_sided_raters": sum(1 for d in raters if d["up"] + d["down"] >= 5 and d["share_up"] in (0.0, 1.0)),
        "per_user": raters[:TOP],
    }
