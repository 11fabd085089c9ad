"""The arena and the store: pairwise feedback as votes, and the append-only model record."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from posttrain.store import experiments as q
from posttrain.store._store import Store

_WINNER = {"a": "model_a", "b": "model_b", "tie": "tie"}


def _prompt_id(messages: Any) -> str | None:
    """The last user turn, hashed: repeated prompts are the same question asked again,
    whatever personalization the system prompt carried."""
    if not isinstance(messages, list):
        return None
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    return hashlib.sha256(" ".join(users[-1].split()).lower().encode()).hexdigest()[:24]


def votes_from_store(store: Store) -> list[dict[str, Any]]:
    """The store's pairwise feedback between two different models, as vote dicts (with user,
    time, the displayed positions, the answers' texts for style control, and a prompt id)."""
    with store.session() as s:
        rows = q.pairwise_rows(s)
    votes = []
    for r in rows:
        if r["model_a"] == r["model_b"] or r["value"] not in _WINNER:
            continue  # two answers of one model (a regeneration) are not a battle
        pos = r["positions"] or None
        left = None
        if isinstance(pos, dict) and pos.get("left") in (r["completion_a"], r["completion_b"]):
            left = "model_a" if pos["left"] == r["completion_a"] else "model_b"
        votes.append({
            "model_a": r["model_a"], "model_b": r["model_b"], "winner": _WINNER[r["value"]],
            "user": r["user"], "tstamp": r["created_at"].timestamp() if r["created_at"] else None,
            "prompt": _prompt_id(r["prompt_messages"]), "text_a": r["text_a"], "text_b": r["text_b"],
            **({"positions": {"left": left, "right": "model_b" if left == "model_a" else "model_a"}} if left else {}),
        })
    return votes


def record_models(store: Store, result: dict[str, Any], source: str = "arena fit") -> list[dict[str, Any]]:
    """Append the fit's models to the arena record (never removing any) and return the whole
    record with each model's current votes (0 for a model whose votes are gone)."""
    now = datetime.now(timezone.utc)
    votes = {m["model"]: m["votes"] for m in result["models"]}
    store.write(lambda s: q.record_arena_models(s, votes, source, now))
    return model_record(store, votes)


def model_record(store: Store, votes: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Every model ever entered, oldest first, with `votes` now (None when not given)."""
    with store.session() as s:
        rows = q.arena_record(s)
    return [{**r, "first_seen_at": r["first_seen_at"].isoformat() if r["first_seen_at"] else None,
             "votes_now": None if votes is None else votes.get(r["model"], 0)} for r in rows]
