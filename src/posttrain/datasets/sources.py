"""Where each kind's rows come from: feedback in the store, streamed, turned into Examples.

- sft: a thumbs-up answer, or a user's edited answer, after the conversation up to it;
- preferences: a pairwise pick (ties left out; source "pairwise"), an edit over the original
  answer (source "edit"), and a thumbs-up and a thumbs-down answer of one user to the same exact
  prompt (source "thumbs"; paired in time order, each answer used once);
- kto: every thumbs as (prompt, answer, label = thumbs up);
- prompts: the prompt of every request (all its choices together), with reference columns from
  the feedback on any of its answers: `reference` (an edit, else the answer picked in a pairwise comparison, else a
  thumbs-up answer), `reference_source`, and `reasons` (of thumbs-down votes);
- feedback: every event as stored.

A completion's newest thumbs is its vote: an up later changed to a down counts as a down only.
The prompt is exactly what the model saw (completions.prompt: the personalization system
message included); with personalization=False the text personalization added is taken out
again (a client's own system message stays).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from posttrain.evals.mine import strip_personalization
from posttrain.store import datasets as q
from posttrain.store.users import iso

KINDS = ("sft", "preferences", "kto", "prompts", "feedback")


@dataclass
class Example:
    """One candidate row before curation. `answer` is what the row teaches (the sft answer, the
    chosen answer, the kto completion, the prompts reference); `rejected` the other side."""

    user_id: str
    consent: bool
    conversations: tuple[str, ...]
    prompt: list[dict[str, str]] = field(default_factory=list)
    answer: str | None = None
    rejected: str | None = None
    label: bool | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # reference columns, or the raw event

    def to_json(self) -> dict[str, Any]:
        return {"u": self.user_id, "c": list(self.conversations), "p": self.prompt, "a": self.answer,
                "r": self.rejected, "l": self.label, "s": self.source, "x": self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Example":
        return cls(d["u"], True, tuple(d["c"]), d["p"], d["a"], d["r"], d["l"], d["s"], d["x"])


def _prompt(row: Any, personalization: bool) -> list[dict[str, str]]:
    prompt = [{"role": m["role"], "content": m["content"]} for m in row.prompt]
    if personalization:
        return prompt
    return strip_personalization(prompt, row.custom_instructions, list(row.memory or []))


def _convs(*ids: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in ids if i))


def _base(row: Any, personalization: bool) -> dict[str, Any]:
    return {"user_id": row.user_id, "consent": bool(row.consent), "prompt": _prompt(row, personalization)}


def _sft(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    for row in q.iter_events(session, ("thumbs", "edit"), since, until, latest_thumbs=True):
        if row.kind == "thumbs" and row.value != 1:
            continue
        answer = row.edited_text if row.kind == "edit" else row.text
        yield Example(**_base(row, personalization), conversations=_convs(row.conversation_id),
                      answer=answer, source="edit" if row.kind == "edit" else "thumbs_up")


def _thumb_pairs(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    group: list[Any] = []
    key = None
    for row in q.iter_thumbs_by_prompt(session, since, until):
        k = (row.user_id, row.prompt_text)
        if k != key and group:
            yield from _pairs_of(group, personalization)
            group = []
        key = k
        group.append(row)
    if group:
        yield from _pairs_of(group, personalization)


def _pairs_of(group: list[Any], personalization: bool) -> Iterator[Example]:
    ups = [r for r in group if r.value == 1]
    downs = [r for r in group if r.value == -1]
    for up, down in zip(ups, downs):
        if up.text.strip() == down.text.strip():
            continue
        yield Example(**_base(up, personalization), conversations=_convs(up.conversation_id, down.conversation_id),
                      answer=up.text, rejected=down.text, source="thumbs")


def _preferences(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    for row in q.iter_events(session, ("pairwise", "edit"), since, until):
        if row.kind == "edit":
            yield Example(**_base(row, personalization), conversations=_convs(row.conversation_id),
                          answer=row.edited_text, rejected=row.text, source="edit")
        elif row.value in ("a", "b") and row.b_text is not None:
            chosen, rejected = (row.text, row.b_text) if row.value == "a" else (row.b_text, row.text)
            yield Example(**_base(row, personalization), conversations=_convs(row.conversation_id, row.b_conversation_id),
                          answer=chosen, rejected=rejected, source="pairwise")
    yield from _thumb_pairs(session, since, until, personalization)


def _kto(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    for row in q.iter_events(session, ("thumbs",), since, until, latest_thumbs=True):
        if row.value in (1, -1):
            yield Example(**_base(row, personalization), conversations=_convs(row.conversation_id),
                          answer=row.text, label=row.value == 1, source="thumbs")


_RANK = {"edit": 3, "pairwise": 2, "thumbs_up": 1}


def _prompt_example(rows: list[Any], personalization: bool) -> Example:
    first = rows[0]
    reference, ref_source, reasons = None, None, set()
    for r in rows:
        if r.kind is None:
            continue
        candidate = None
        if r.kind == "edit" and r.edited_text:
            candidate = (r.edited_text, "edit")
        elif r.kind == "pairwise" and r.value in ("a", "b"):
            candidate = (r.text if r.value == "a" else r.b_text, "pairwise")
        elif r.kind == "thumbs" and r.value == 1:
            candidate = (r.text, "thumbs_up")
        elif r.kind == "thumbs" and r.value == -1:
            reasons.update(r.reasons or [])
        if candidate and candidate[0] and (ref_source is None or _RANK[candidate[1]] > _RANK[ref_source]):
            reference, ref_source = candidate
    return Example(**_base(first, personalization), conversations=_convs(first.conversation_id),
                   answer=reference, source="prompt",
                   extra={"reference_source": ref_source, "reasons": sorted(reasons)})


def _prompts(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    rows: list[Any] = []
    for row in q.iter_prompts(session, since, until):
        if rows and row.request_id != rows[0].request_id:
            yield _prompt_example(rows, personalization)
            rows = []
        rows.append(row)
    if rows:
        yield _prompt_example(rows, personalization)


def _feedback(session: Session, since, until, personalization: bool) -> Iterator[Example]:
    for row in q.iter_events(session, None, since, until):
        event = {
            "id": row.event_id, "kind": row.kind, "value": row.value, "reasons": list(row.reasons or []),
            "comment": row.comment, "idempotency_key": row.idempotency_key, "user": row.user_id,
            "completion": row.completion_id, "other_completion": row.other_completion_id,
            "edited_text": row.edited_text, "signal": row.signal, "positions": row.positions,
            "time": iso(row.created_at),
        }
        yield Example(row.user_id, bool(row.consent), _convs(row.conversation_id), source=row.kind, extra=event)


_SOURCES = {"sft": _sft, "preferences": _preferences, "kto": _kto, "prompts": _prompts, "feedback": _feedback}


def examples(session: Session, kind: str, *, since: datetime | None = None, until: datetime | None = None,
             personalization: bool = True) -> Iterator[Example]:
    """Stream the candidate rows of `kind` (see the module docstring), consent not yet applied."""
    if kind not in _SOURCES:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}")
    return _SOURCES[kind](session, since, until, personalization)
