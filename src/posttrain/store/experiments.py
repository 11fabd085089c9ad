"""Queries of the arena and online experiments (tables in schema_experiments)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from posttrain.ids import new_id
from posttrain.store.schema import Completion, EvalRun, FeedbackEvent
from posttrain.store.schema_experiments import ArenaModel, Experiment, ExperimentEvent

__all__ = [
    "ACTIVE", "DuplicateExperiment", "active_experiments", "add_event", "arena_record", "bump_version",
    "completions_since", "events_of", "experiment_by_name", "experiment_completions", "feedback_on",
    "finished_eval_runs", "insert_experiment", "list_experiments", "pairwise_rows", "record_arena_models",
    "set_status", "version",
]

# Statuses that still change routing: a running test splits traffic, a promoted one sends the
# baseline's traffic to the candidate from then on.
ACTIVE = ("running", "promoted")


class DuplicateExperiment(ValueError):
    pass


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:  # SQLite drops the zone; we always store UTC
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _exp(e: Experiment) -> dict[str, Any]:
    return {"id": e.id, "name": e.name, "baseline": e.baseline, "candidate": e.candidate,
            "fraction": e.fraction, "status": e.status, "config": dict(e.config or {}),
            "created_at": _aware(e.created_at), "ended_at": _aware(e.ended_at)}


EXPERIMENTS_TOPIC = "experiments"  # store/invalidation.py topic bumped by every change


def version(session: Session) -> int:
    """The experiments version (bumped by every change); one primary-key read."""
    from posttrain.store import invalidation

    return invalidation.current(session, EXPERIMENTS_TOPIC)


def bump_version(session: Session) -> None:
    """Write function part: every process routing A/B traffic rereads the experiments once the
    caller's transaction commits (store/invalidation.py; the `experiments_version` table of
    migration 0002 is no longer used)."""
    from posttrain.store import invalidation

    invalidation.bump(session, EXPERIMENTS_TOPIC)


def insert_experiment(session: Session, **row: Any) -> dict[str, Any]:
    """Write function: a new experiment (raises DuplicateExperiment for a used name)."""
    e = Experiment(id=new_id("exp-"), **row)
    try:
        with session.begin_nested():
            session.add(e)
            session.flush()
    except IntegrityError:
        raise DuplicateExperiment(f"an experiment named {row['name']!r} already exists; choose another name") from None
    bump_version(session)
    return _exp(e)


def experiment_by_name(session: Session, name: str) -> dict[str, Any] | None:
    e = session.scalar(select(Experiment).where(Experiment.name == name))
    return _exp(e) if e else None


def list_experiments(session: Session) -> list[dict[str, Any]]:
    return [_exp(e) for e in session.scalars(select(Experiment).order_by(Experiment.created_at, Experiment.id))]


def active_experiments(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(Experiment).where(Experiment.status.in_(ACTIVE))
                           .order_by(Experiment.created_at, Experiment.id))
    return [_exp(e) for e in rows]


def set_status(session: Session, experiment_id: str, status: str, now: datetime, *, expect: str | None = None) -> bool:
    """Write function: change the status (only from `expect` when given); False if it was not."""
    stmt = update(Experiment).where(Experiment.id == experiment_id)
    if expect is not None:
        stmt = stmt.where(Experiment.status == expect)
    done = session.execute(stmt.values(status=status, ended_at=now if status != "running" else None)).rowcount
    if done:
        bump_version(session)
    return bool(done)


def add_event(session: Session, experiment_id: str, kind: str, actor: str, data: dict[str, Any],
              now: datetime) -> None:
    session.add(ExperimentEvent(id=new_id(), experiment_id=experiment_id, kind=kind, actor=actor,
                                data=data, created_at=now))


def events_of(session: Session, experiment_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(ExperimentEvent).where(ExperimentEvent.experiment_id == experiment_id)
                           .order_by(ExperimentEvent.created_at, ExperimentEvent.id))
    return [{"kind": r.kind, "actor": r.actor, "data": r.data, "at": _aware(r.created_at)} for r in rows]


_C = Completion.__table__.c


def completions_since(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Completion rows (no prompt) created at or after `since`, oldest first."""
    cols = [_C.id, _C.model, _C.params, _C.text, _C.finish_reason, _C.created_at, _C.user_id,
            _C.conversation_id, _C.request_id, _C.latency_ms, _C.prompt_tokens, _C.completion_tokens]
    stmt = select(*cols).order_by(_C.created_at, _C.id)
    if since is not None:
        stmt = stmt.where(_C.created_at >= since)
    return [{**r._mapping, "created_at": _aware(r.created_at)} for r in session.execute(stmt)]


def experiment_completions(session: Session, experiment_id: str, since: datetime) -> list[dict[str, Any]]:
    """Completions whose logged assignment names this experiment (filtered here, not in SQL:
    JSON operators differ between SQLite and PostgreSQL)."""
    return [c for c in completions_since(session, since)
            if isinstance(c["params"], dict) and (c["params"].get("experiment") or {}).get("id") == experiment_id]


def feedback_on(session: Session, since: datetime | None = None) -> list[dict[str, Any]]:
    """Feedback events (no texts), oldest first."""
    f = FeedbackEvent.__table__.c
    stmt = select(f.id, f.user_id, f.completion_id, f.other_completion_id, f.kind, f.value, f.reasons,
                  f.signal, f.positions, f.created_at).order_by(f.created_at, f.id)
    if since is not None:
        stmt = stmt.where(f.created_at >= since)
    return [{**r._mapping, "created_at": _aware(r.created_at)} for r in session.execute(stmt)]


def pairwise_rows(session: Session) -> list[dict[str, Any]]:
    """Pairwise feedback with both answers' models and texts: the store's arena votes."""
    a, b = aliased(Completion), aliased(Completion)
    f = FeedbackEvent
    stmt = (select(f.value, f.positions, f.user_id, f.created_at, f.completion_id, f.other_completion_id,
                   a.model, b.model, a.text, b.text, a.prompt)
            .join(a, a.id == f.completion_id).join(b, b.id == f.other_completion_id)
            .where(f.kind == "pairwise").order_by(f.created_at, f.id))
    out = []
    for r in session.execute(stmt):
        out.append({"value": r[0], "positions": r[1], "user": r[2], "created_at": _aware(r[3]),
                    "completion_a": r[4], "completion_b": r[5], "model_a": r[6], "model_b": r[7],
                    "text_a": r[8], "text_b": r[9], "prompt_messages": r[10]})
    return out


def record_arena_models(session: Session, votes: dict[str, int], source: str, now: datetime) -> None:
    """Write function: append the models not yet in the arena record (existing rows are never touched)."""
    have = set(session.scalars(select(ArenaModel.model)))
    for name, n in sorted(votes.items()):
        if name not in have:
            session.add(ArenaModel(model=name, first_seen_at=now, first_votes=n, source=source))


def arena_record(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(ArenaModel).order_by(ArenaModel.first_seen_at, ArenaModel.model))
    return [{"model": r.model, "first_seen_at": _aware(r.first_seen_at), "first_votes": r.first_votes,
             "source": r.source} for r in rows]


def finished_eval_runs(session: Session) -> list[dict[str, Any]]:
    """(model, suite, metrics, finished_at) of finished eval runs, newest first."""
    rows = session.execute(select(EvalRun.model, EvalRun.suite, EvalRun.metrics, EvalRun.finished_at, EvalRun.id)
                           .where(EvalRun.status == "done").order_by(EvalRun.finished_at.desc()))
    return [{"model": r[0], "suite": r[1], "metrics": r[2] or {}, "finished_at": _aware(r[3]), "run_id": r[4]}
            for r in rows]


def count_experiments(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Experiment)) or 0
