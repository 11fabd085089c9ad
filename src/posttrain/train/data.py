"""Training data: a JSONL file or a stored snapshot, in the TRL layouts `posttrain export` writes.

Layouts (conversational): sft `{"messages": [...]}`; dpo `{"prompt": [msgs], "chosen":
[assistant msg], "rejected": [assistant msg]}`; kto `{"prompt": [msgs], "completion": [assistant
msg], "label": bool}`; grpo `{"prompt": [msgs], ...reference columns}`. OpenAI's fine-tuning
layouts are read too (SFT `messages` is the same; DPO `input/preferred_output/
non_preferred_output`), so a team's existing files work unchanged.

Errors are one line naming the file, the line and the missing column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.jsonl import read_objects

REQUIRED = {
    "sft": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "grpo": ("prompt",),
}


@dataclass
class TrainData:
    """Rows ready for the recipe, where they came from, and a content hash for the lineage."""

    rows: list[dict[str, Any]]
    source: str  # the file path, or "snapshot:HASH"
    snapshot: str | None  # the snapshot hash (None for a plain file)
    digest: str  # sha256 of the rows as read (names the data in the lineage when no snapshot)


def _as_messages(value: Any, role: str | None = None) -> list[dict[str, str]] | None:
    """A message list from a list of messages, one message dict, or (for answers) a string."""
    if isinstance(value, str) and role is not None:
        return [{"role": role, "content": value}]
    if isinstance(value, dict) and "content" in value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return value
    return None


def _from_openai(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI DPO rows -> TRL's preference layout; anything else is returned unchanged."""
    if "input" in row and "preferred_output" in row:
        prompt = row["input"].get("messages") if isinstance(row["input"], dict) else None
        return {"prompt": prompt, "chosen": row["preferred_output"],
                "rejected": row.get("non_preferred_output")}
    return row


def normalize_row(method: str, row: dict[str, Any], where: str) -> dict[str, Any]:
    """The row in the method's layout, or ValueError naming `where` (file:line) and the column."""
    row = _from_openai(row) if method == "dpo" else row
    if method == "sft" and "messages" not in row and "prompt" in row and "completion" in row:
        row = {"messages": (_as_messages(row["prompt"], "user") or []) + (_as_messages(row["completion"], "assistant") or [])}
    need = REQUIRED[method]
    missing = [c for c in need if c not in row or row[c] is None]
    if missing:
        raise ValueError(f"{where}: missing column {missing[0]!r} ({method} needs {', '.join(need)})")
    out = dict(row)
    if method == "sft":
        msgs = _as_messages(row["messages"])
        if msgs is None or not any(m.get("role") == "assistant" for m in msgs):
            raise ValueError(f"{where}: 'messages' must be a list of {{role, content}} with an assistant turn")
        return {"messages": msgs}
    prompt = _as_messages(row["prompt"], "user")
    if prompt is None:
        raise ValueError(f"{where}: 'prompt' must be a list of {{role, content}} messages or a string")
    out["prompt"] = prompt
    for col in {"dpo": ("chosen", "rejected"), "kto": ("completion",), "grpo": ()}[method]:
        msgs = _as_messages(row[col], "assistant")
        if msgs is None:
            raise ValueError(f"{where}: {col!r} must be an assistant message (or a list of them, or a string)")
        out[col] = msgs
    if method == "kto":
        if not isinstance(row["label"], bool):
            raise ValueError(f"{where}: 'label' must be true or false, got {row['label']!r}")
        return {"prompt": out["prompt"], "completion": out["completion"], "label": row["label"]}
    if method == "dpo":
        return {"prompt": out["prompt"], "chosen": out["chosen"], "rejected": out["rejected"]}
    return out


def _digest(rows: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()[:16]


def read_rows(method: str, path: Path | str) -> list[dict[str, Any]]:
    """All rows of a JSONL file in the method's layout; ValueError (one line) on bad data."""
    if method not in REQUIRED:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(REQUIRED)}")
    records = read_objects(path, what="training data")
    if not records:
        raise ValueError(f"{path}: the dataset is empty (no rows)")
    return [normalize_row(method, rec, f"{path}:{lineno}") for lineno, rec in records]


def snapshot_path(store: Any, snapshot: str) -> tuple[Path, str]:
    """(train JSONL path, full hash) of a stored snapshot, through posttrain.datasets."""
    try:
        from posttrain.datasets import get_snapshot
    except ImportError:
        raise ValueError("--snapshot needs posttrain.datasets, which is not available yet; export to a file and pass --data FILE") from None
    try:
        snap = get_snapshot(store, snapshot)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown snapshot {snapshot!r}") from None
    return Path(snap.path), snap.hash


def load_data(method: str, *, store: Any = None, data: Path | str | None = None,
              snapshot: str | None = None) -> TrainData:
    """The training rows from exactly one of `data` (a JSONL file) or `snapshot` (a hash or prefix)."""
    if (data is None) == (snapshot is None):
        raise ValueError("give exactly one of --data FILE or --snapshot HASH")
    if snapshot is not None:
        path, full = snapshot_path(store, snapshot)
        rows = read_rows(method, path)
        return TrainData(rows, f"snapshot:{full}", full, _digest(rows))
    rows = read_rows(method, data)
    return TrainData(rows, str(data), None, _digest(rows))
