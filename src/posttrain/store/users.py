"""Users and their API keys.

A key is `pt-` + secrets.token_urlsafe(32) (43 characters); only its sha256 is stored. 32 random
bytes cannot be brute-forced, so a fast hash is enough and auth stays cheap on the feedback path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import column as sa_column, inspect, select, table as sa_table, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from posttrain.ids import new_id
from posttrain.store import invalidation
from posttrain.store._store import Store
from posttrain.store.schema import User

KEY_PREFIX = "pt-"
USERS_TOPIC = "users"  # the invalidation topic of everything cached per user/key


class UserExists(ValueError):
    """A user with that name already exists."""


@dataclass(frozen=True)
class UserInfo:
    """What the server needs to know about the caller."""

    id: str
    name: str
    is_admin: bool
    consent: bool
    key_prefix: str = ""
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = iso(self.created_at)
        return d


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC by construction."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def new_api_key() -> str:
    """A fresh API key: `pt-` followed by 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of an API key (sha256 hex)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _info(u: User) -> UserInfo:
    created = u.created_at
    if created is not None and created.tzinfo is None:  # SQLite drops the zone; we store UTC
        created = created.replace(tzinfo=timezone.utc)
    return UserInfo(u.id, u.name, bool(u.is_admin), bool(u.consent), u.key_prefix, created)


def add_user(store: Store, name: str, *, admin: bool = False, consent: bool = True) -> tuple[UserInfo, str]:
    """Create a user; returns (user, api_key). The key is shown once and never stored in clear."""
    name = name.strip()
    if not name:
        raise ValueError("user name must not be empty")
    if len(name) > 200:
        raise ValueError("user name must be at most 200 characters")
    key = new_api_key()
    user = User(
        id=new_id(), name=name, key_hash=hash_key(key), key_prefix=key[:10],
        is_admin=admin, consent=consent, created_at=datetime.now(timezone.utc),
    )

    def write(s: Session) -> UserInfo:
        if s.scalar(select(User.id).where(User.name == name)) is not None:
            raise UserExists(f"user {name!r} already exists")
        s.add(user)
        s.flush()
        return _info(user)

    try:
        return store.write(write), key
    except IntegrityError as exc:  # lost a race with a concurrent add of the same name
        raise UserExists(f"user {name!r} already exists") from exc


def user_by_key_hash(session: Session, key_hash: str) -> UserInfo | None:
    u = session.scalars(select(User).where(User.key_hash == key_hash)).first()
    return _info(u) if u else None


def get_user(session: Session, user_id: str) -> UserInfo | None:
    u = session.get(User, user_id)
    return _info(u) if u else None


def list_users(session: Session) -> list[UserInfo]:
    return [_info(u) for u in session.scalars(select(User).order_by(User.created_at, User.id))]


def set_consent(session: Session, user_id: str, consent: bool) -> None:
    """A write function (run it through store.write/awrite). Bumps the "users" topic: servers
    cache UserInfo (consent included) per key."""
    session.execute(update(User).where(User.id == user_id).values(consent=consent))
    invalidation.bump(session, USERS_TOPIC)


class UserNotFound(LookupError):
    """No user has that name."""


def user_by_name(session: Session, name: str) -> UserInfo | None:
    u = session.scalars(select(User).where(User.name == name)).first()
    return _info(u) if u else None


def _require(session: Session, name: str) -> User:
    u = session.scalars(select(User).where(User.name == name)).first()
    if u is None:
        raise UserNotFound(f"no user named {name!r} (see `posttrain users list`)")
    return u


def set_consent_by_name(store: Store, name: str, consent: bool) -> UserInfo:
    """Turn a user's consent on or off. Off keeps their rows out of every later export."""

    def write(s: Session) -> UserInfo:
        u = _require(s, name)
        set_consent(s, u.id, consent)
        s.refresh(u)
        return _info(u)

    return store.write(write)


def revoke_key(store: Store, name: str) -> tuple[UserInfo, str]:
    """Replace a user's API key with a new one; the old key stops working on every server at
    once (the "users" topic is bumped in the same transaction). Returns (user, new key)."""
    key = new_api_key()

    def write(s: Session) -> UserInfo:
        u = _require(s, name)
        u.key_hash, u.key_prefix = hash_key(key), key[:10]
        invalidation.bump(s, USERS_TOPIC)
        s.flush()
        return _info(u)

    return store.write(write), key


# Core tables holding a user's data, children first (foreign keys point up this list).
_OWNED = ("feedback_events", "messages", "completions", "conversations", "memories", "custom_instructions")


def _other_references(session: Session) -> list[tuple[str, str, str]]:
    """(table, column, referred table) for every foreign key into users, conversations or
    completions from tables other stages added: their rows about the user go too."""
    insp = inspect(session.connection())
    out = []
    for table in insp.get_table_names():
        if table in _OWNED or table == "users":
            continue
        for fk in insp.get_foreign_keys(table):
            if fk["referred_table"] in ("users", "conversations", "completions") and len(fk["constrained_columns"]) == 1:
                out.append((table, fk["constrained_columns"][0], fk["referred_table"]))
    return out


def delete_user(store: Store, name: str) -> dict[str, Any]:
    """Delete a user and everything they gave: conversations, messages, completions, feedback,
    memory, custom instructions (and rows of other stages' tables pointing at those), in one
    transaction; their key stops working on every server at once. Returns what was deleted and
    the registered models already trained on their data (found through the snapshots that held
    their rows, which keep that record), so an admin can act on them."""
    from posttrain.store import datasets as dataset_queries
    from posttrain.store.schema import Completion, Conversation

    def write(s: Session) -> dict[str, Any]:
        u = _require(s, name)
        uid = u.id
        snapshots = dataset_queries.snapshots_with_user(s, uid)
        models = dataset_queries.models_trained_on(s, snapshots)
        ids = {
            "users": select(User.id).where(User.id == uid),
            "conversations": select(Conversation.id).where(Conversation.user_id == uid),
            "completions": select(Completion.id).where(Completion.user_id == uid),
        }
        deleted: dict[str, int] = {}
        for table, column, referred in _other_references(s):
            t = sa_table(table, sa_column(column))
            n = s.execute(t.delete().where(t.c[column].in_(ids[referred]))).rowcount
            if n:
                deleted[table] = deleted.get(table, 0) + n
        params = {"uid": uid}
        own = "(SELECT id FROM completions WHERE user_id = :uid)"
        statements = {
            "feedback_events": f"DELETE FROM feedback_events WHERE user_id = :uid OR completion_id IN {own} "
                               f"OR other_completion_id IN {own}",
            "messages": "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE user_id = :uid)",
            "completions": "DELETE FROM completions WHERE user_id = :uid",
            "conversations": "DELETE FROM conversations WHERE user_id = :uid",
            "memories": "DELETE FROM memories WHERE user_id = :uid",
            "custom_instructions": "DELETE FROM custom_instructions WHERE user_id = :uid",
        }
        for table in _OWNED:
            deleted[table] = s.execute(text(statements[table]), params).rowcount
        s.delete(u)
        invalidation.bump(s, USERS_TOPIC)
        s.flush()
        return {"user": name, "id": uid, "deleted": deleted, "snapshots": snapshots, "trained_models": models}

    return store.write(write)
