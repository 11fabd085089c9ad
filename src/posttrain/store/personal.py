"""Custom instructions (versioned; the newest row is in effect) and memory (soft-deleted)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from posttrain.ids import new_id
from posttrain.store.schema import CustomInstructions, Memory
from posttrain.store.users import iso


def current_instructions(session: Session, user_id: str) -> str | None:
    """The instructions in effect, or None (never set, or cleared with an empty text)."""
    text = session.scalar(
        select(CustomInstructions.text)
        .where(CustomInstructions.user_id == user_id)
        .order_by(CustomInstructions.created_at.desc(), CustomInstructions.id.desc())
        .limit(1)
    )
    return text or None


def add_instructions(session: Session, user_id: str, text: str) -> None:
    """Write function: a new version; an empty text clears (older versions stay for lineage)."""
    session.add(CustomInstructions(
        id=new_id(), user_id=user_id, text=text, created_at=datetime.now(timezone.utc)
    ))


def _memory_dict(m: Memory) -> dict[str, Any]:
    return {"id": m.id, "text": m.text, "created_at": iso(m.created_at)}


def list_memory(session: Session, user_id: str) -> list[dict[str, Any]]:
    """The user's live memories, oldest first (the order they are shown to the model)."""
    rows = session.scalars(
        select(Memory)
        .where(Memory.user_id == user_id, Memory.deleted_at.is_(None))
        .order_by(Memory.created_at, Memory.id)
    )
    return [_memory_dict(m) for m in rows]


class MemoryFull(ValueError):
    """Adding the memory would exceed the user's limit; str(exc) says which, in one line."""


def add_memory(session: Session, user_id: str, text: str, *, max_items: int = 0, max_chars: int = 0) -> dict[str, Any]:
    """Write function: store one memory and return it. With limits (0 = none) it raises
    MemoryFull instead when the user's live memories would exceed `max_items` facts or
    `max_chars` characters in all; checked inside the write, so concurrent adds cannot pass it."""
    if max_items or max_chars:
        live = [m["text"] for m in list_memory(session, user_id)]
        if max_items and len(live) + 1 > max_items:
            raise MemoryFull(f"memory is full: at most {max_items} facts; delete one first")
        used = sum(len(t) for t in live)
        if max_chars and used + len(text) > max_chars:
            raise MemoryFull(f"memory is full: {used} of {max_chars} characters used, this fact needs "
                             f"{len(text)}; delete one first")
    m = Memory(id=new_id(), user_id=user_id, text=text, created_at=datetime.now(timezone.utc))
    session.add(m)
    return _memory_dict(m)


def delete_memory(session: Session, user_id: str, memory_id: str) -> bool:
    """Write function: soft-delete; False when it is not the user's or already deleted."""
    result = session.execute(
        update(Memory)
        .where(Memory.id == memory_id, Memory.user_id == user_id, Memory.deleted_at.is_(None))
        .values(deleted_at=datetime.now(timezone.utc))
    )
    return result.rowcount == 1


def personalization(session: Session, user_id: str) -> tuple[str | None, list[str]]:
    """(custom instructions, memory texts) in effect for a user right now."""
    return current_instructions(session, user_id), [m["text"] for m in list_memory(session, user_id)]
