"""Reading decisions back: the `gate --json` shape of a stored decision, its status, listings.

The stored `result` is what the numbers said when the gate ran; a review that completes later
adds its outcome in `final` (once). `result_of` merges the two, so `gate status` and `gate show`
print the decision as it stands.
"""

from __future__ import annotations

import time
from typing import Any

from posttrain.gate.review import summarize
from posttrain.store import gate as q
from posttrain.store._store import Store


def result_of(decision: dict[str, Any]) -> dict[str, Any]:
    """The decision in the `gate --json` shape, review and final status included."""
    out = dict(decision["result"])
    blocking = list(out.get("blocking", []))
    final = decision.get("final") or {}
    for reason in final.get("reasons", []):
        blocking.append({"metric": "review", "baseline": None, "candidate": None, "delta": None,
                         "ci": None, "margin": None, "p": None, "reason": reason})
    out.update(decision_id=decision["id"], status=decision["status"], passed=decision["passed"],
               blocking=blocking, review=summarize(decision), decided_at=decision.get("decided_at"))
    return out


def gate_status(store: Store, decision_id: str) -> dict[str, Any]:
    """A stored decision as it stands now (KeyError when unknown)."""
    return result_of(q.get_decision(store, decision_id))


def show_decision(store: Store, decision_id: str) -> dict[str, Any]:
    """Everything stored for a decision: result, evidence, policy text, items, verdicts."""
    d = q.get_decision(store, decision_id)
    return {**result_of(d), "policy_hash": d["policy_hash"], "policy_text": d["policy_text"],
            "evidence": d["evidence"], "items": d["items"], "verdicts": d["verdicts"],
            "created_at": d["created_at"]}


def list_decisions(store: Store, *, candidate: str | None = None, status: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
    """Stored decisions, newest first."""
    return q.list_decisions(store, candidate=candidate, status=status, limit=limit)


def wait_for_review(store: Store, decision_id: str, *, timeout: float, poll: float = 1.0) -> dict[str, Any]:
    """Poll until the decision leaves "pending" or `timeout` seconds pass; the current result."""
    deadline = time.monotonic() + timeout
    while True:
        res = gate_status(store, decision_id)
        if res["status"] != "pending" or time.monotonic() >= deadline:
            return res
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
