"""Gate queries: decisions (written once), their review items, verdicts (append-only), and the
read of logged conversations that the gate replays.

A decision's `result` and `evidence` are never updated. The one allowed transition, pending ->
final, happens in `add_verdicts` inside the same write as the verdicts that complete the review,
guarded by the row's status, so two reviewers finishing at once cannot decide twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from posttrain.ids import new_id
from posttrain.store import schema_gate  # noqa: F401  (registers the gate tables)
from posttrain.store._store import Store
from posttrain.store.schema import Completion, User
from posttrain.store.schema_gate import GateDecision, GateReviewItem, GateVerdict


class DecisionClosed(ValueError):
    """The decision is final: it takes no more verdicts."""


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _iso(dt: datetime | None) -> str | None:
    dt = _aware(dt)
    return dt.isoformat() if dt else None


def _decision_dict(d: GateDecision) -> dict[str, Any]:
    return {
        "id": d.id, "candidate": d.candidate, "baseline": d.baseline, "status": d.status,
        "passed": d.passed, "policy_hash": d.policy_hash, "policy_text": d.policy_text,
        "result": d.result, "evidence": d.evidence, "created_at": _iso(d.created_at),
        "decided_at": _iso(d.decided_at), "final": d.final,
    }


def _item_dict(i: GateReviewItem) -> dict[str, Any]:
    return {"id": i.id, "position": i.position, "source": i.source, "prompt": i.prompt,
            "left_text": i.left_text, "right_text": i.right_text, "left_is_candidate": i.left_is_candidate}


def _verdict_dict(v: GateVerdict) -> dict[str, Any]:
    return {"id": v.id, "item_id": v.item_id, "reviewer": v.reviewer, "choice": v.choice,
            "feels_off": v.feels_off, "veto": v.veto, "comment": v.comment,
            "created_at": _iso(v.created_at)}


def insert_decision(
    store: Store, *, decision_id: str, candidate: str, baseline: str, status: str, passed: bool,
    policy_hash: str, policy_text: str, result: dict[str, Any], evidence: dict[str, Any],
    items: list[dict[str, Any]],
) -> None:
    """Store a decision and its review items in one transaction."""
    now = datetime.now(timezone.utc)

    def fn(s: Session) -> None:
        s.add(GateDecision(
            id=decision_id, candidate=candidate, baseline=baseline, status=status, passed=passed,
            policy_hash=policy_hash, policy_text=policy_text, result=result, evidence=evidence,
            created_at=now, decided_at=None if status == "pending" else now, final=None,
        ))
        s.flush()  # the items' foreign key needs the decision row first (PostgreSQL checks at once)
        for pos, it in enumerate(items):
            s.add(GateReviewItem(id=new_id(), decision_id=decision_id, position=pos, source=it["source"],
                                 prompt=it["prompt"], left_text=it["left_text"], right_text=it["right_text"],
                                 left_is_candidate=it["left_is_candidate"]))

    store.write(fn)


def _find(s: Session, decision_id: str) -> GateDecision:
    d = s.get(GateDecision, decision_id)
    if d is None:
        matches = s.scalars(select(GateDecision).where(GateDecision.id.startswith(decision_id)).limit(2)).all()
        if len(matches) != 1:
            what = "no gate decision" if not matches else "more than one gate decision"
            raise KeyError(f"{what} matches {decision_id!r}; see `posttrain gate list`")
        d = matches[0]
    return d


def _full(s: Session, d: GateDecision) -> dict[str, Any]:
    out = _decision_dict(d)
    out["items"] = [_item_dict(i) for i in s.scalars(
        select(GateReviewItem).where(GateReviewItem.decision_id == d.id).order_by(GateReviewItem.position))]
    out["verdicts"] = [_verdict_dict(v) for v in s.scalars(
        select(GateVerdict).where(GateVerdict.decision_id == d.id).order_by(GateVerdict.id))]
    return out


def get_decision(store: Store, decision_id: str) -> dict[str, Any]:
    """A decision (by id or unique prefix) with its items and verdicts; KeyError otherwise."""
    with store.session() as s:
        return _full(s, _find(s, decision_id))


def list_decisions(store: Store, *, candidate: str | None = None, status: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
    """Decisions, newest first (without policy text, evidence or items)."""
    q = select(GateDecision).order_by(GateDecision.id.desc()).limit(limit)
    if candidate:
        q = q.where(GateDecision.candidate == candidate)
    if status:
        q = q.where(GateDecision.status == status)
    with store.session() as s:
        counts = dict(s.execute(select(GateReviewItem.decision_id, func.count()).group_by(GateReviewItem.decision_id)).all())
        return [{"id": d.id, "candidate": d.candidate, "baseline": d.baseline, "status": d.status,
                 "passed": d.passed, "created_at": _iso(d.created_at), "decided_at": _iso(d.decided_at),
                 "policy_hash": d.policy_hash, "n_review_items": counts.get(d.id, 0)}
                for d in s.scalars(q)]


Decide = Callable[[dict[str, Any]], tuple[str, bool, dict[str, Any]] | None]


def add_verdicts(store: Store, decision_id: str, reviewer: str, verdicts: list[dict[str, Any]],
                 decide: Decide) -> dict[str, Any]:
    """Append `reviewer`'s verdicts to a pending decision, then call `decide(decision with items
    and verdicts)`; when it returns (status, passed, final) the decision is closed with it, in the
    same transaction. Raises KeyError (unknown decision or item), DecisionClosed (not pending)."""

    def fn(s: Session) -> dict[str, Any]:
        d = _find(s, decision_id)
        if d.status != "pending":
            raise DecisionClosed(f"decision {d.id} is {d.status}: it takes no more verdicts")
        item_ids = set(s.scalars(select(GateReviewItem.id).where(GateReviewItem.decision_id == d.id)))
        now = datetime.now(timezone.utc)
        for v in verdicts:
            if v.get("item_id") is not None and v["item_id"] not in item_ids:
                raise KeyError(f"item {v['item_id']!r} is not part of decision {d.id}")
            s.add(GateVerdict(id=new_id(), decision_id=d.id, item_id=v.get("item_id"), reviewer=reviewer,
                              choice=v.get("choice"), feels_off=bool(v.get("feels_off")),
                              veto=bool(v.get("veto")), comment=v.get("comment") or "", created_at=now))
        s.flush()
        full = _full(s, d)
        outcome = decide(full)
        if outcome is not None:
            status, passed, final = outcome
            d.status, d.passed, d.final, d.decided_at = status, passed, final, now
            full.update(status=status, passed=passed, final=final, decided_at=_iso(now))
        return full

    return store.write(fn)


def replay_sources(store: Store, *, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` completions of users who consent to their data being used, with the
    prompt the model saw (oldest of those first). Consent is read now, so a withdrawal counts."""
    q = (
        select(Completion.id, Completion.prompt, Completion.model, Completion.created_at)
        .join(User, Completion.user_id == User.id)
        .where(User.consent.is_(True), Completion.choice_index == 0)
        .order_by(Completion.id.desc())
        .limit(limit)
    )
    with store.session() as s:
        rows = [{"completion_id": r.id, "prompt": r.prompt, "model": r.model, "created_at": _iso(r.created_at)}
                for r in s.execute(q)]
    return rows[::-1]
