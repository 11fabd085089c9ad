"""The store's tables. Changing them means adding an Alembic migration under migrations/versions.

Ids are ULID strings (time-ordered, so inserts append to the primary-key index); times are UTC.
JSON columns hold structured values (decoding params, reasons, prompt snapshots) so the same
schema runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # sha256 of the API key: keys are 32 random bytes, so a fast hash is enough (no bcrypt needed
    # against brute force) and it keeps auth off the hot path of feedback ingest.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # May this user's conversations and feedback train models? Export honours it.
    consent: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CustomInstructions(Base):
    """Versioned: the newest row of a user is in effect; completions keep a copy of the text."""

    __tablename__ = "custom_instructions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Memory(Base):
    """A fact the user saved; deleting sets deleted_at so old completions stay explainable."""

    __tablename__ = "memories"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelEntry(Base):
    """Model registry. `backend` names a registered backend; `config` is its constructor kwargs.
    parent_id / data_snapshot / metrics carry lineage for fine-tuned checkpoints (Learn/Improve)."""

    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    backend: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    data_snapshot: Mapped[str | None] = mapped_column(String(200), nullable=True)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    # sha256 of the transcript so far (role+content of each message); lets a stateless
    # OpenAI-style client that resends the history continue the same conversation.
    transcript_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    """The transcript as the user saw it: user turns and the assistant answers kept in it."""

    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    completion_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Tool use (migration 0002_serve): an assistant turn's calls, a tool turn's call id.
    tool_calls: Mapped[list | None] = mapped_column(JSON, nullable=True)
    tool_call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Completion(Base):
    """One generated answer with everything needed to reproduce and learn from it."""

    __tablename__ = "completions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # One request with n > 1 gives n completions sharing request_id (choice_index 0..n-1).
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    choice_index: Mapped[int] = mapped_column(Integer, default=0)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    # Exactly what the model saw, system prompt with custom instructions and memory included.
    prompt: Mapped[list] = mapped_column(JSON)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str] = mapped_column(String(20), default="stop")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    custom_instructions: Mapped[str | None] = mapped_column(Text, nullable=True)
    memory: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Migration 0002_serve: the tool calls the model made, and checks of the answer against the
    # request (e.g. {"json": true} for response_format).
    tool_calls: Mapped[list | None] = mapped_column(JSON, nullable=True)
    checks: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class FeedbackEvent(Base):
    """Explicit and implicit feedback on a completion.

    kind/value: thumbs (+1/-1), pairwise ("a"/"b"/"tie", with other_completion_id and the
    displayed positions), edit (edited_text), implicit (signal: regenerate/copy/abandon/continue).
    """

    __tablename__ = "feedback_events"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_feedback_idem"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    completion_id: Mapped[str] = mapped_column(ForeignKey("completions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    reasons: Mapped[list] = mapped_column(JSON, default=list)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    other_completion_id: Mapped[str | None] = mapped_column(
        ForeignKey("completions.id"), nullable=True
    )
    positions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    edited_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    signal: Mapped[str | None] = mapped_column(String(20), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GenerationCache(Base):
    """Generations keyed by (model+version, messages, decoding params): an eval re-run is free."""

    __tablename__ = "generation_cache"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalRun(Base):
    __tablename__ = "eval_runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    suite: Mapped[str] = mapped_column(String(200), index=True)
    suite_version: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    n_cases: Mapped[int] = mapped_column(Integer, default=0)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvalResult(Base):
    """One case of one run: per-case rows make paired comparisons between runs possible."""

    __tablename__ = "eval_results"
    __table_args__ = (Index("ix_eval_results_run_case", "run_id", "case_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id"))
    case_id: Mapped[str] = mapped_column(String(200))
    grader: Mapped[str] = mapped_column(String(100))
    grader_args: Mapped[dict] = mapped_column(JSON, default=dict)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalSuiteMeta(Base):
    """Lifecycle of a suite: created/expires dates and the saturation flag shown by `eval list`."""

    __tablename__ = "eval_suites"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(50), default="builtin")
    cases: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    saturation_threshold: Mapped[float] = mapped_column(Float, default=0.95)
