"""Tables of the arena and online experiments (migration 0002_experiments).

- experiments: one A/B test (baseline, candidate, fraction routed, status, guardrail config).
- experiment_events: what happened to it (started, checked, promoted, rolled back, stopped),
  who or what did it, and the figures the decision saw. Assignments are logged on each
  completion (completions.params["experiment"]), not here: one write per chat, as before.
- experiments_version: no longer used (kept because a shipped migration is never edited): changes
  now bump the "experiments" topic of store/invalidation.py, which every server process follows.
- arena_models: the append-only record of every model ever entered on the leaderboard; database
  triggers refuse UPDATE and DELETE ("The Leaderboard Illusion": no retraction).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from posttrain.store.schema import Base, utcnow


class Experiment(Base):
    __tablename__ = "experiments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    baseline: Mapped[str] = mapped_column(String(200))
    candidate: Mapped[str] = mapped_column(String(200))
    fraction: Mapped[float] = mapped_column(Float)
    # running | promoted | rolled_back | stopped
    status: Mapped[str] = mapped_column(String(20), index=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ExperimentEvent(Base):
    __tablename__ = "experiment_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExperimentsVersion(Base):
    __tablename__ = "experiments_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class ArenaModel(Base):
    __tablename__ = "arena_models"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    first_votes: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(200), default="")
