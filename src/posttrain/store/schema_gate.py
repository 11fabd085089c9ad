"""Tables of the release gate: decisions, their blind review items, and reviewers' verdicts.

A decision row holds everything behind it (policy text and hash, run ids, lineage, versions, the
per-metric tests) in `evidence` and its reported outcome in `result`; both are written once. The
only change a decision ever sees is the single step from "pending" (waiting for review) to its
final status, taken when the review completes; verdicts are append-only rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from posttrain.store.schema import Base, utcnow


class GateDecision(Base):
    __tablename__ = "gate_decisions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    candidate: Mapped[str] = mapped_column(String(200), index=True)
    baseline: Mapped[str] = mapped_column(String(200))
    # "passed", "blocked" or "pending" (numbers passed, review not complete yet).
    status: Mapped[str] = mapped_column(String(20))
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    policy_hash: Mapped[str] = mapped_column(String(64))
    policy_text: Mapped[str] = mapped_column(Text)
    result: Mapped[dict] = mapped_column(JSON)
    evidence: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The outcome once review completed (None while pending; never changed afterwards).
    final: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class GateReviewItem(Base):
    """One blind side-by-side pair: which model is on the left is stored, never shown."""

    __tablename__ = "gate_review_items"
    __table_args__ = (Index("ix_gate_review_items_decision", "decision_id", "position"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("gate_decisions.id"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[list] = mapped_column(JSON)
    left_text: Mapped[str] = mapped_column(Text)
    right_text: Mapped[str] = mapped_column(Text)
    left_is_candidate: Mapped[bool] = mapped_column(Boolean)


class GateVerdict(Base):
    """A reviewer's verdict on one item (choice left/right/tie, feels-off flag) or, with no
    item, on the whole release (a veto)."""

    __tablename__ = "gate_verdicts"
    __table_args__ = (Index("ix_gate_verdicts_decision", "decision_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("gate_decisions.id"))
    item_id: Mapped[str | None] = mapped_column(ForeignKey("gate_review_items.id"), nullable=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    choice: Mapped[str | None] = mapped_column(String(10), nullable=True)
    feels_off: Mapped[bool] = mapped_column(Boolean, default=False)
    veto: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
