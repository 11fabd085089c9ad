"""Queries of the datasets stage: streaming reads of feedback for export, and snapshots.

The export reads stream: each query runs with `yield_per`, so SQLite steps its cursor and
PostgreSQL uses a server-side cursor, and at most one batch of rows is in Python at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, exists, or_, select
from sqlalchemy.orm import Session, aliased

from posttrain.store.schema import Completion, EvalRun, FeedbackEvent, ModelEntry, User
from posttrain.store.schema_datasets import DatasetSnapshot, SnapshotUser
from posttrain.store.users import iso

BATCH = 1000

_A = aliased(Completion, name="a")
_B = aliased(Completion, name="b")


def _stream(session: Session, stmt: Any, batch: int) -> Iterator[Any]:
    """Rows of a Core select through the session's connection, `batch` at a time (the Core path:
    the ORM's per-row result machinery is not needed for plain column tuples)."""
    yield from session.connection().execution_options(yield_per=batch).execute(stmt)


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _event_columns() -> list[Any]:
    fe = FeedbackEvent
    return [
        fe.id.label("event_id"), fe.kind, fe.value, fe.reasons, fe.comment, fe.edited_text, fe.signal,
        fe.idempotency_key, fe.positions, fe.created_at, fe.user_id, User.consent,
        fe.completion_id, fe.other_completion_id,
        _A.prompt, _A.text, _A.custom_instructions, _A.memory, _A.conversation_id, _A.model,
    ]


def _not_superseded() -> Any:
    """No later thumbs by the same user on the same completion: a changed vote counts once, as
    its newest value."""
    fe, later = FeedbackEvent, aliased(FeedbackEvent, name="later")
    newer = or_(later.created_at > fe.created_at, and_(later.created_at == fe.created_at, later.id > fe.id))
    return ~exists().where(later.completion_id == fe.completion_id, later.user_id == fe.user_id,
                           later.kind == "thumbs", newer)


def iter_events(
    session: Session, kinds: tuple[str, ...] | None = None, since: datetime | None = None,
    until: datetime | None = None, batch: int = BATCH, latest_thumbs: bool = False,
) -> Iterator[Any]:
    """Feedback events in time order, each with its completion ("a": prompt, text, the
    personalization in effect, conversation), the other answer of a pair ("b_text",
    "b_conversation_id") and the user's consent flag. Rows are SQLAlchemy Row objects.
    latest_thumbs: leave out thumbs a newer thumbs on the same completion replaced."""
    fe = FeedbackEvent
    stmt = (
        select(*_event_columns(), _B.text.label("b_text"), _B.conversation_id.label("b_conversation_id"))
        .join(_A, _A.id == fe.completion_id)
        .join(User, User.id == fe.user_id)
        .outerjoin(_B, _B.id == fe.other_completion_id)
        .where(*_window(fe.created_at, since, until))
        .order_by(fe.created_at, fe.id)
    )
    if kinds:
        stmt = stmt.where(fe.kind.in_(kinds))
    if latest_thumbs:
        stmt = stmt.where(or_(fe.kind != "thumbs", _not_superseded()))
    yield from _stream(session, stmt, batch)


def iter_thumbs_by_prompt(
    session: Session, since: datetime | None = None, until: datetime | None = None, batch: int = BATCH,
) -> Iterator[Any]:
    """Thumbs events ordered by (user, exact prompt text, time): the rows of one user's one
    prompt come out together, so up/down pairs are formed holding one group in memory."""
    fe = FeedbackEvent
    prompt_text = cast(_A.prompt, String)
    stmt = (
        select(*_event_columns(), prompt_text.label("prompt_text"))
        .join(_A, _A.id == fe.completion_id)
        .join(User, User.id == fe.user_id)
        .where(fe.kind == "thumbs", _not_superseded(), *_window(fe.created_at, since, until))
        .order_by(fe.user_id, prompt_text, fe.created_at, fe.id)
    )
    yield from _stream(session, stmt, batch)


def iter_prompts(
    session: Session, since: datetime | None = None, until: datetime | None = None, batch: int = BATCH,
) -> Iterator[Any]:
    """Every completion in request order (one request = one prompt the model was asked, its n
    choices together), each row joined with one of its feedback events (or none): consecutive
    rows share `request_id`."""
    fe = FeedbackEvent
    c = Completion
    stmt = (
        select(
            c.id, c.request_id, c.prompt, c.text, c.custom_instructions, c.memory, c.conversation_id,
            c.user_id, c.created_at, User.consent, fe.kind, fe.value, fe.reasons, fe.edited_text,
            _B.text.label("b_text"),
        )
        .join(User, User.id == c.user_id)
        .outerjoin(fe, and_(fe.completion_id == c.id, or_(fe.kind != "thumbs", _not_superseded())))
        .outerjoin(_B, _B.id == fe.other_completion_id)
        .where(*_window(c.created_at, since, until))
        .order_by(c.created_at, c.request_id, c.choice_index, fe.created_at, fe.id)
    )
    yield from _stream(session, stmt, batch)


def eval_seeds(session: Session) -> dict[str, set[int]]:
    """suite name -> the seeds its recorded eval runs used (cases of generated suites depend on
    the seed, so decontamination checks every seed that was actually run)."""
    out: dict[str, set[int]] = {}
    for suite, seed in session.execute(select(EvalRun.suite, EvalRun.seed).distinct()):
        if seed is not None:
            out.setdefault(suite, set()).add(int(seed))
    return out


# -- snapshots ---------------------------------------------------------------------------------


def snapshot_dict(s: DatasetSnapshot) -> dict[str, Any]:
    return {
        "hash": s.hash, "kind": s.kind, "format": s.format, "path": s.path, "test_path": s.test_path,
        "rows": s.rows, "test_rows": s.test_rows, "filters": s.filters, "rules": s.rules,
        "counts": s.counts, "created_at": iso(s.created_at),
    }


def save_snapshot(session: Session, row: dict[str, Any], users: dict[str, int]) -> bool:
    """Write function: store a snapshot and its per-user row counts. Returns False (and writes
    nothing) when a snapshot with that hash exists: same content, same snapshot."""
    if session.get(DatasetSnapshot, row["hash"]) is not None:
        return False
    session.add(DatasetSnapshot(**row))
    session.flush()
    if users:
        session.execute(SnapshotUser.__table__.insert(), [
            {"snapshot_hash": row["hash"], "user_id": uid, "rows": n} for uid, n in sorted(users.items())
        ])
    return True


def find_snapshots(session: Session, hash_or_prefix: str) -> list[dict[str, Any]]:
    """Snapshots whose hash starts with `hash_or_prefix` (an exact hash gives one)."""
    prefix = hash_or_prefix.strip().lower()
    if not prefix:
        return []
    rows = session.scalars(select(DatasetSnapshot).where(DatasetSnapshot.hash.startswith(prefix, autoescape=True)).limit(5))
    return [snapshot_dict(s) for s in rows]


def list_snapshots(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(select(DatasetSnapshot).order_by(DatasetSnapshot.created_at.desc()).limit(limit))
    return [snapshot_dict(s) for s in rows]


def snapshot_users(session: Session, snapshot_hash: str) -> dict[str, int]:
    """user id -> rows of theirs in the snapshot."""
    rows = session.execute(select(SnapshotUser.user_id, SnapshotUser.rows).where(SnapshotUser.snapshot_hash == snapshot_hash))
    return {u: n for u, n in rows}


def snapshots_with_user(session: Session, user_id: str) -> list[str]:
    """Hashes of the snapshots that hold rows of the user, oldest first."""
    return list(session.scalars(
        select(SnapshotUser.snapshot_hash).join(DatasetSnapshot, DatasetSnapshot.hash == SnapshotUser.snapshot_hash)
        .where(SnapshotUser.user_id == user_id).order_by(DatasetSnapshot.created_at)
    ))


def models_trained_on(session: Session, hashes: list[str]) -> list[dict[str, Any]]:
    """Registered models whose data_snapshot is one of `hashes` (or a prefix of one, of at
    least 8 characters), and every model descended from those through `parent`: a model
    fine-tuned from one trained on the data learned from it too."""
    if not hashes:
        return []
    models = session.execute(select(ModelEntry.id, ModelEntry.name, ModelEntry.parent_id, ModelEntry.data_snapshot)).all()
    found: dict[str, dict[str, Any]] = {}
    for m in models:
        snap = (m.data_snapshot or "").strip().lower()
        if len(snap) >= 8 and any(h.startswith(snap) for h in hashes):
            found[m.id] = {"name": m.name, "data_snapshot": m.data_snapshot, "via": "data_snapshot"}
    changed = True
    while changed:  # descendants; the registry is small, a fixed point is cheap
        changed = False
        for m in models:
            if m.id not in found and m.parent_id in found:
                found[m.id] = {"name": m.name, "data_snapshot": m.data_snapshot,
                               "via": f"parent {found[m.parent_id]['name']}"}
                changed = True
    return sorted(found.values(), key=lambda d: d["name"])



def thumbs_by_user(session: Session, since: datetime | None = None, until: datetime | None = None) -> list[Any]:
    """(user_id, consent, value as text, count) of the newest thumbs per completion in the window."""
    from sqlalchemy import func

    fe = FeedbackEvent
    value = cast(fe.value, String)
    stmt = (
        select(fe.user_id, User.consent, value.label("value"), func.count().label("n"))
        .join(User, User.id == fe.user_id)
        .where(fe.kind == "thumbs", _not_superseded(), *_window(fe.created_at, since, until))
        .group_by(fe.user_id, User.consent, value)
    )
    return list(session.execute(stmt))
