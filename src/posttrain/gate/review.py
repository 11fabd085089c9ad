"""Human sign-off: a blind side-by-side review that admins work through on the web page.

The gate picks N single-turn prompts from the suites it ran and from replay, puts the two
models' answers left and right in a random order (seeded by the decision id, stored, never
shown), and waits for `review.required` admins. Each reviewer picks left, right or tie per pair
and may flag a pair as "feels off" with a comment; a release-level veto is a verdict with no
item. Any veto or "feels off" blocks whatever the numbers say, with the comment in the decision.
"""

from __future__ import annotations

import random
from typing import Any

from posttrain.gate.measure import SuiteRuns
from posttrain.store import gate as q
from posttrain.store._store import Store

CHOICES = ("left", "right", "tie")


def prepare_items(store: Store, runs: list[SuiteRuns], *, n: int, from_replay: int, seed: str) -> list[dict[str, Any]]:
    """Up to `n` blind pairs: `from_replay` from replay, the rest spread over the suites."""
    rng = random.Random(seed)
    pools: dict[str, list[tuple[str, dict[str, Any], str, str]]] = {}
    for r in runs:
        if r.error or not r.base_run:
            continue
        r.load_rows(store)
        base = {row["case_id"]: row["response"] for row in r.rows["base"]}
        cand = {row["case_id"]: row["response"] for row in r.rows["cand"]}
        pool = []
        for cid in sorted(base.keys() & cand.keys()):
            case = r.cases.get(cid)
            if case is None or case.followups or case.custom_instructions or case.memory:
                continue  # only pairs a reviewer can judge from the prompt alone
            pool.append((cid, {"messages": case.messages}, base[cid], cand[cid]))
        rng.shuffle(pool)
        if pool:
            pools[r.suite] = pool
    picked: list[tuple[str, tuple]] = []
    replay = pools.pop("replay", [])
    picked += [("replay", p) for p in replay[:from_replay]]
    suites = sorted(pools)
    while len(picked) < n and any(pools.values()):
        for s in suites:  # round-robin so every suite is seen
            if pools[s] and len(picked) < n:
                picked.append((s, pools[s].pop()))
    for p in replay[from_replay:]:
        if len(picked) >= n:
            break
        picked.append(("replay", p))
    rng.shuffle(picked)
    items = []
    for source, (cid, prompt, base_text, cand_text) in picked:
        left_is_candidate = rng.random() < 0.5
        items.append({"source": f"{source}/{cid}", "prompt": prompt["messages"],
                      "left_text": cand_text if left_is_candidate else base_text,
                      "right_text": base_text if left_is_candidate else cand_text,
                      "left_is_candidate": left_is_candidate})
    return items


def summarize(decision: dict[str, Any]) -> dict[str, Any]:
    """The review part of a decision: who reviewed, preferences (unblinded), flags and vetoes."""
    required = (decision.get("evidence") or {}).get("review_required", 0)
    items = {i["id"]: i for i in decision.get("items", [])}
    verdicts = decision.get("verdicts", [])
    reviewers = sorted({v["reviewer"] for v in verdicts})
    prefs = {"candidate": 0, "baseline": 0, "tie": 0}
    flags, vetoes = [], []
    for v in verdicts:
        item = items.get(v["item_id"]) if v["item_id"] else None
        if item and v["choice"] in CHOICES:
            if v["choice"] == "tie":
                prefs["tie"] += 1
            else:
                left = v["choice"] == "left"
                prefs["candidate" if left == item["left_is_candidate"] else "baseline"] += 1
        if v["feels_off"]:
            flags.append({"reviewer": v["reviewer"], "item": item["source"] if item else None, "comment": v["comment"]})
        if v["veto"]:
            vetoes.append({"reviewer": v["reviewer"], "comment": v["comment"]})
    status = decision["status"]
    if not required:
        state = "not required"
    elif flags or vetoes:
        state = "vetoed"
    elif len(reviewers) >= required:
        state = "complete"
    else:
        state = "pending" if status == "pending" else "not reached"
    return {"required": required, "state": state, "items": len(items), "reviewers": reviewers,
            "preferences": prefs, "feels_off": flags, "vetoes": vetoes,
            "page": f"/review#{decision['id']}" if items else None}


def decide(decision: dict[str, Any]) -> tuple[str, bool, dict[str, Any]] | None:
    """The outcome once the review has said enough (called inside the verdicts' write)."""
    s = summarize(decision)
    if s["state"] == "vetoed":
        reasons = [f"veto by {v['reviewer']}" + (f": {v['comment']}" if v["comment"] else "") for v in s["vetoes"]]
        reasons += [f"feels off to {f['reviewer']} ({f['item']})" + (f": {f['comment']}" if f["comment"] else "")
                    for f in s["feels_off"]]
        return "blocked", False, {"status": "blocked", "passed": False, "reasons": reasons, "review": s}
    if s["state"] == "complete":
        return "passed", True, {"status": "passed", "passed": True, "reasons": [], "review": s}
    return None


def validate_verdicts(decision: dict[str, Any], verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalize a reviewer's submission: items named by id or position; every item needs a
    choice unless the submission vetoes the release. Raises ValueError naming the problem."""
    if not isinstance(verdicts, list) or not verdicts:
        raise ValueError("verdicts must be a non-empty list")
    items = decision["items"]
    by_pos = {i["position"]: i["id"] for i in items}
    ids = {i["id"] for i in items}
    out, covered, veto = [], set(), False
    for n, v in enumerate(verdicts):
        if not isinstance(v, dict):
            raise ValueError(f"verdict #{n + 1} must be an object")
        comment = str(v.get("comment") or "")[:4000]
        if v.get("veto"):
            veto = True
            out.append({"item_id": None, "choice": None, "feels_off": False, "veto": True, "comment": comment})
            continue
        item = v.get("item_id", v.get("item"))
        item_id = by_pos.get(item) if isinstance(item, int) else item
        if item_id not in ids:
            raise ValueError(f"verdict #{n + 1}: unknown item {item!r}")
        choice = v.get("choice")
        if choice not in CHOICES:
            raise ValueError(f"verdict #{n + 1}: choice must be left, right or tie")
        feels_off = bool(v.get("feels_off"))
        if feels_off and not comment.strip():
            raise ValueError(f"verdict #{n + 1}: a 'feels off' flag needs a comment saying what")
        covered.add(item_id)
        out.append({"item_id": item_id, "choice": choice, "feels_off": feels_off, "veto": False, "comment": comment})
    if not veto and covered != ids:
        raise ValueError(f"verdicts cover {len(covered)} of {len(ids)} items; judge every pair (or veto)")
    return out


def submit_review(store: Store, decision_id: str, reviewer: str, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Record `reviewer`'s verdicts on a pending decision (see `validate_verdicts`); closes the
    decision when the review is complete or vetoed. Returns the decision's current result.
    Raises KeyError (unknown decision), ValueError (bad verdicts, or the decision is not pending)."""
    from posttrain.gate.decision import result_of

    decision = q.get_decision(store, decision_id)
    if decision["status"] != "pending":
        raise q.DecisionClosed(f"decision {decision['id']} is {decision['status']}: it takes no more verdicts")
    if not reviewer or not isinstance(reviewer, str):
        raise ValueError("reviewer is required")
    if reviewer in {v["reviewer"] for v in decision["verdicts"]}:
        raise ValueError(f"{reviewer} has already reviewed decision {decision['id']}")
    clean = validate_verdicts(decision, verdicts)
    return result_of(q.add_verdicts(store, decision["id"], reviewer, clean, decide))
