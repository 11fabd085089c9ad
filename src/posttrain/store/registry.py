"""SQL of the model registry (the `models` table). Callers pass a Session; writes run inside
`store.write(fn)` so they share the group-commit writer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posttrain.ids import new_id
from posttrain.store.schema import ModelEntry, utcnow


class DuplicateModel(Exception):
    """A model with this name is already registered."""


def model_by_name(session: Session, name: str) -> ModelEntry | None:
    return session.scalars(select(ModelEntry).where(ModelEntry.name == name)).one_or_none()


def model_by_id(session: Session, model_id: str) -> ModelEntry | None:
    return session.get(ModelEntry, model_id)


def all_models(session: Session) -> list[ModelEntry]:
    """Every registered model, oldest first (ids are ULIDs, so id order is creation order)."""
    return list(session.scalars(select(ModelEntry).order_by(ModelEntry.id)))


def model_names(session: Session) -> list[str]:
    return sorted(session.scalars(select(ModelEntry.name)))


def parent_names(session: Session, parent_ids: set[str]) -> dict[str, str]:
    """id -> name for the given parent ids (one query for a whole listing)."""
    if not parent_ids:
        return {}
    rows = session.execute(select(ModelEntry.id, ModelEntry.name).where(ModelEntry.id.in_(parent_ids)))
    return {row.id: row.name for row in rows}


def insert_model(session: Session, *, name: str, backend: str, config: dict[str, Any],
                 parent_id: str | None = None, data_snapshot: str | None = None,
                 metrics: dict[str, Any] | None = None) -> ModelEntry:
    """Insert a model row; raises DuplicateModel if the name is taken (also when another writer
    won a race for it: the unique index decides, inside a savepoint so the transaction goes on)."""
    if model_by_name(session, name) is not None:
        raise DuplicateModel(name)
    row = ModelEntry(id=new_id(), name=name, backend=backend, config=dict(config), parent_id=parent_id,
                     data_snapshot=data_snapshot, metrics=dict(metrics or {}), created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise DuplicateModel(name) from None
    return row


def insert_model_if_missing(session: Session, *, name: str, backend: str, config: dict[str, Any]) -> bool:
    """Insert unless the name exists; True if this call inserted it. Safe against concurrent
    writers in other processes (a lost race is a no-op, not an error)."""
    try:
        insert_model(session, name=name, backend=backend, config=config)
    except DuplicateModel:
        return False
    return True


def update_model_metrics(session: Session, name: str, key: str, value: Any) -> ModelEntry | None:
    """Set metrics[key] = value on the model `name` (None if there is no such model). The one
    change allowed after registration: results measured later, such as a reward model's bias
    audit; backend and config, which serving caches, never change."""
    row = model_by_name(session, name)
    if row is None:
        return None
    metrics = dict(row.metrics or {})
    metrics[key] = value
    row.metrics = metrics  # a new dict, so the JSON column is seen as changed
    return row
