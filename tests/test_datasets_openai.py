"""The OpenAI layouts, field by field, against OpenAI's documented fine-tuning file shapes:

- supervised fine-tuning: one JSON object per line, `{"messages": [...]}`, each message a
  `role` (system, user, assistant) and a string `content`; at least one user and one
  assistant message; the last message is the assistant's (what the model learns);
- direct preference optimization: `{"input": {"messages": [...]}, "preferred_output": [one
  assistant message], "non_preferred_output": [one assistant message]}`; the input ends with a
  user turn; no other top-level fields;
- reinforcement fine-tuning: `{"messages": [... ending with a user message], ...}` plus any
  extra fields, which graders read as `{{ item.<field> }}`.
"""

from __future__ import annotations

import json

from test_datasets_export import lines, seed_world

from posttrain.datasets import export

ROLES = {"system", "user", "assistant"}


def _message(m: dict) -> None:
    assert set(m) == {"role", "content"}, m
    assert m["role"] in ROLES and isinstance(m["content"], str) and m["content"].strip()


def _assistant_output(out: list) -> None:
    assert isinstance(out, list) and len(out) == 1
    _message(out[0])
    assert out[0]["role"] == "assistant"


def test_openai_sft_layout(sqlite_store, tmp_path):
    seed_world(sqlite_store, n_users=3, per_user=2)
    r = export(sqlite_store, "sft", tmp_path / "sft.jsonl", fmt="openai", near_duplicates=False, max_user_share=1, test_fraction=0)
    rows = lines(tmp_path / "sft.jsonl")
    assert len(rows) == r["rows"] == 12
    for line in (tmp_path / "sft.jsonl").read_text().splitlines():
        row = json.loads(line)  # one whole JSON object per line
        assert set(row) == {"messages"}
        for m in row["messages"]:
            _message(m)
        roles = [m["role"] for m in row["messages"]]
        assert "user" in roles and roles[-1] == "assistant"
        assert roles[0] in ("system", "user") and all(r != "system" for r in roles[1:])


def test_openai_preference_layout(sqlite_store, tmp_path):
    seed_world(sqlite_store, n_users=3, per_user=2)
    export(sqlite_store, "preferences", tmp_path / "dpo.jsonl", fmt="openai", near_duplicates=False, max_user_share=1, test_fraction=0)
    rows = lines(tmp_path / "dpo.jsonl")
    assert rows
    for row in rows:
        assert set(row) == {"input", "preferred_output", "non_preferred_output"}
        assert set(row["input"]) == {"messages"}
        for m in row["input"]["messages"]:
            _message(m)
        assert row["input"]["messages"][-1]["role"] == "user"
        _assistant_output(row["preferred_output"])
        _assistant_output(row["non_preferred_output"])
        assert row["preferred_output"] != row["non_preferred_output"]


def test_openai_reinforcement_layout(sqlite_store, tmp_path):
    seed_world(sqlite_store, n_users=2, per_user=2)
    export(sqlite_store, "prompts", tmp_path / "rft.jsonl", fmt="openai", near_duplicates=False, max_user_share=1, test_fraction=0)
    rows = lines(tmp_path / "rft.jsonl")
    assert len(rows) == 4
    for row in rows:
        assert set(row) == {"messages", "reference", "reference_source", "reasons"}
        for m in row["messages"]:
            _message(m)
        assert row["messages"][-1]["role"] == "user"
        assert isinstance(row["reference"], str) and row["reference_source"] == "edit"
