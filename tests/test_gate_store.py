"""Gate decisions in the store (SQLite and PostgreSQL): written once, closed once, verdicts
append-only, and two reviewers finishing at the same time cannot decide twice."""

from __future__ import annotations

import threading

import pytest

from posttrain.gate.review import decide
from posttrain.ids import new_id
from posttrain.store import gate as q


def _pending(store, required: int = 1) -> str:
    did = new_id("gate-")
    q.insert_decision(
        store, decision_id=did, candidate="c", baseline="b", status="pending", passed=False, policy_hash="h" * 64,
        policy_text="[gate]\n", result={"decision_id": did, "candidate": "c", "baseline": "b", "blocking": [],
                                        "warnings": [], "metrics": [{"metric": "m", "delta": 0.0}]},
        evidence={"review_required": required, "runs": {}},
        items=[{"source": "s/1", "prompt": [{"role": "user", "content": "hi"}], "left_text": "a", "right_text": "b",
                "left_is_candidate": True} for _ in range(2)],
    )
    return did


def _ties(d):
    return [{"item_id": i["id"], "choice": "tie", "feels_off": False, "veto": False, "comment": ""} for i in d["items"]]


def test_decision_is_closed_once_and_keeps_its_result(store):
    did = _pending(store, required=2)
    d = q.get_decision(store, did[:-3])  # a unique prefix works
    assert d["status"] == "pending" and len(d["items"]) == 2
    after_one = q.add_verdicts(store, did, "r1", _ties(d), decide)
    assert after_one["status"] == "pending"  # 1 of 2 reviewers
    after_two = q.add_verdicts(store, did, "r2", _ties(d), decide)
    assert after_two["status"] == "passed" and after_two["passed"] and after_two["final"]["status"] == "passed"
    with pytest.raises(q.DecisionClosed):
        q.add_verdicts(store, did, "r3", _ties(d), decide)
    again = q.get_decision(store, did)
    assert again["result"] == d["result"] and again["policy_text"] == "[gate]\n"
    assert len(again["verdicts"]) == 4 and again["decided_at"]
    assert [x["id"] for x in q.list_decisions(store, status="passed")] == [did]


def test_unknown_item_is_refused_and_nothing_is_stored(store):
    did = _pending(store)
    with pytest.raises(KeyError, match="not part of decision"):
        q.add_verdicts(store, did, "r1", [{"item_id": "nope", "choice": "tie"}], decide)
    assert q.get_decision(store, did)["verdicts"] == []
    with pytest.raises(KeyError, match="no gate decision"):
        q.get_decision(store, "gate-nothing")


def test_racing_reviewers_close_the_decision_exactly_once(store):
    did = _pending(store, required=1)
    d = q.get_decision(store, did)
    outcomes: list[str] = []

    def review(who: str, veto: bool) -> None:
        verdicts = _ties(d) + ([{"veto": True, "comment": "no"}] if veto else [])
        try:
            outcomes.append(q.add_verdicts(store, did, who, verdicts, decide)["status"])
        except q.DecisionClosed:
            outcomes.append("closed")

    threads = [threading.Thread(target=review, args=(f"r{i}", i % 2 == 1)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    final = q.get_decision(store, did)
    assert sorted(outcomes).count("closed") == 3 and final["status"] in ("passed", "blocked")
    assert len({v["reviewer"] for v in final["verdicts"]}) == 1  # only the winner's verdicts were kept
