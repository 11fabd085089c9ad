"""Conversations, their transcript (messages), and completions.

The transcript is what the user sees: the messages the client sent plus the answer of choice 0.
When a new request's history diverges from it (a regenerated answer, an edited earlier turn),
the stored transcript is rewritten from the first difference on; completions are never deleted,
so every answer the model ever gave stays available for feedback and training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from posttrain.store.schema import Completion, Conversation, Message
from posttrain.store.users import iso


def transcript_hash(messages: list[dict[str, Any]]) -> str:
    """sha256 over (role, content) of each message: the key that lets a stateless OpenAI client,
    which resends the whole history, continue the same stored conversation."""
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()


def prompt_key(prompt: list[dict[str, Any]]) -> str:
    """Identity of the exact prompt a model saw (pairwise feedback compares answers to one prompt)."""
    return transcript_hash(prompt)


@dataclass
class Exchange:
    """Everything one chat request stores, written atomically by `record_exchange`."""

    user_id: str
    conversation_id: str
    is_new: bool
    title: str
    transcript: list[dict[str, Any]]  # role, content, completion_id (for the answer)
    completions: list[dict[str, Any]] = field(default_factory=list)  # Completion column values
    now: datetime | None = None


def find_conversation_by_transcript(session: Session, user_id: str, thash: str) -> str | None:
    """The caller's most recently updated conversation whose transcript hashes to `thash`."""
    return session.scalar(
        select(Conversation.id)
        .where(Conversation.user_id == user_id, Conversation.transcript_hash == thash)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(1)
    )


def owns_conversation(session: Session, user_id: str, conversation_id: str) -> bool:
    owner = session.scalar(select(Conversation.user_id).where(Conversation.id == conversation_id))
    return owner == user_id


# Built once: the writer runs these for every chat request, and a statement object reused keeps
# its memoized cache key (building and keying a fresh one per call showed in the profile).
_conversations = Conversation.__table__
_INSERT_CONVERSATION = insert(_conversations)
_TOUCH_CONVERSATION = (
    update(_conversations).where(_conversations.c.id == bindparam("conversation_id"))
    .values(transcript_hash=bindparam("thash"), updated_at=bindparam("now"))
)
_INSERT_COMPLETION = insert(Completion.__table__)
_INSERT_MESSAGE = insert(Message.__table__)


def record_exchange(session: Session, ex: Exchange) -> None:
    """Write function: create/update the conversation, sync its transcript, insert completions."""
    record_exchanges(session, [ex])


def record_exchanges(session: Session, exchanges: list[Exchange]) -> None:
    """Write function for the exchanges of concurrent requests, in one transaction: the new
    conversations of all of them as one multi-row insert per table (conversations, then
    completions, then messages); a continued conversation is synced in its turn, after the rows
    before it are inserted, so the result is that of recording them one after the other."""
    # Core statements on the session's connection: the ORM paths cost a large share of the
    # writer's time per proxied chat request, and none of these rows needs the ORM. One row
    # (the usual case at low load) is a plain execute: executemany costs more per call.
    conn = session.connection()
    conversations: list[dict[str, Any]] = []
    completions: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def insert_pending() -> None:
        for statement, rows in ((_INSERT_CONVERSATION, conversations), (_INSERT_COMPLETION, completions),
                                (_INSERT_MESSAGE, messages)):
            if rows:
                conn.execute(statement, rows[0] if len(rows) == 1 else list(rows))
                rows.clear()

    for ex in exchanges:
        if ex.is_new:
            conversations.append({
                "id": ex.conversation_id, "user_id": ex.user_id, "title": ex.title,
                "transcript_hash": transcript_hash(ex.transcript), "created_at": ex.now, "updated_at": ex.now,
            })
            keep = 0
        else:
            insert_pending()  # what came before in this batch may be this conversation's history
            keep = _sync_transcript(session, conn, ex)
        completions.extend(ex.completions)
        if not ex.is_new:
            insert_pending()  # its own completions too: a resent answer is linked to the latest
            _link_answers(session, ex, keep)
        messages.extend(
            {
                "id": m["id"], "conversation_id": ex.conversation_id, "position": pos,
                "role": m["role"], "content": m["content"], "completion_id": m.get("completion_id"),
                "created_at": ex.now, "tool_calls": m.get("tool_calls"), "tool_call_id": m.get("tool_call_id"),
            }
            for pos, m in enumerate(ex.transcript) if pos >= keep
        )
    insert_pending()


def _sync_transcript(session: Session, conn: Any, ex: Exchange) -> int:
    """Touch a continued conversation and drop its stored messages from the first one that
    differs; returns how many stored messages are kept."""
    stored = session.execute(
        select(Message.position, Message.role, Message.content)
        .where(Message.conversation_id == ex.conversation_id)
        .order_by(Message.position)
    ).all()
    keep = 0
    for row, new in zip(stored, ex.transcript):
        if row.role != new["role"] or row.content != new["content"]:
            break
        keep += 1
    if keep < len(stored):
        session.execute(delete(Message).where(
            Message.conversation_id == ex.conversation_id, Message.position >= keep
        ))
    conn.execute(_TOUCH_CONVERSATION, {
        "conversation_id": ex.conversation_id, "thash": transcript_hash(ex.transcript), "now": ex.now,
    })
    return keep


def _link_answers(session: Session, ex: Exchange, keep: int) -> None:
    """A client resends earlier answers as plain text; when one is an answer this conversation
    produced (e.g. the answer picked in a side-by-side comparison), link its completion again."""
    unlinked = [m for m in ex.transcript[keep:] if m["role"] == "assistant" and not m.get("completion_id")]
    if not unlinked or ex.is_new:
        return
    texts = {m["content"] for m in unlinked}
    found: dict[str, str] = {}
    rows = session.execute(
        select(Completion.id, Completion.text)
        .where(Completion.conversation_id == ex.conversation_id, Completion.text.in_(texts))
        .order_by(Completion.created_at, Completion.choice_index)
    )
    for cid, text in rows:
        found[text] = cid  # the latest answer with that text wins
    for m in unlinked:
        if m["content"] in found:
            m["completion_id"] = found[m["content"]]


def completion_refs(session: Session, completion_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """completion id -> (user_id, request_id, prompt_key) for the ids that exist."""
    rows = session.execute(
        select(Completion.id, Completion.user_id, Completion.request_id, Completion.prompt)
        .where(Completion.id.in_(completion_ids))
    ).all()
    return {r.id: (r.user_id, r.request_id, prompt_key(r.prompt)) for r in rows}


def list_conversations(session: Session, user_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Conversation.id, Conversation.title, Conversation.created_at, Conversation.updated_at)
        .where(Conversation.user_id == user_id)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
    ).all()
    return [
        {"id": r.id, "title": r.title, "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}
        for r in rows
    ]


def get_conversation(session: Session, user_id: str, conversation_id: str) -> dict[str, Any] | None:
    """The conversation with its transcript and every completion (with its feedback), or None
    when it does not exist or belongs to someone else (callers answer 404 either way)."""
    from posttrain.store.feedback import events_for_completions

    conv = session.get(Conversation, conversation_id)
    if conv is None or conv.user_id != user_id:
        return None
    messages = session.execute(
        select(Message.role, Message.content, Message.completion_id, Message.tool_calls, Message.tool_call_id)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.position)
    ).all()
    comps = session.execute(
        select(
            Completion.id, Completion.text, Completion.model, Completion.created_at,
            Completion.choice_index, Completion.request_id, Completion.finish_reason,
            Completion.tool_calls,
        )
        .where(Completion.conversation_id == conversation_id)
        .order_by(Completion.created_at, Completion.request_id, Completion.choice_index)
    ).all()
    feedback = events_for_completions(session, [c.id for c in comps])
    return {
        "id": conv.id,
        "title": conv.title,
        "created_at": iso(conv.created_at),
        "updated_at": iso(conv.updated_at),
        "messages": [
            {
                "role": m.role, "content": m.content,
                **({"completion_id": m.completion_id} if m.completion_id else {}),
                **({"tool_calls": m.tool_calls} if m.tool_calls else {}),
                **({"tool_call_id": m.tool_call_id} if m.tool_call_id else {}),
            }
            for m in messages
        ],
        "completions": [
            {
                "id": c.id, "text": c.text, "model": c.model, "created_at": iso(c.created_at),
                "choice_index": c.choice_index, "request_id": c.request_id,
                "finish_reason": c.finish_reason, "feedback": feedback.get(c.id, []),
                **({"tool_calls": c.tool_calls} if c.tool_calls else {}),
            }
            for c in comps
        ],
    }


def get_completion(session: Session, completion_id: str) -> dict[str, Any] | None:
    """One completion row as a dict (for tests, export and debugging)."""
    c = session.get(Completion, completion_id)
    if c is None:
        return None
    return {col.key: getattr(c, col.key) for col in Completion.__mapper__.column_attrs}
