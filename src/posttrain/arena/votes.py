"""Votes: reading them from a JSONL file or the store into columns (numpy arrays).

A vote is `{"model_a", "model_b", "winner"}` with winner `model_a`, `model_b` or `tie`, plus
optional `user`, `prompt`, `tstamp` (Unix seconds) or `time` (ISO 8601), `positions`
(`{"left": "model_a"|"model_b"|<model name>, "right": ...}`: how the two answers were
displayed), and style either as `style_a`/`style_b` objects (`length`, `headers`, `lists`,
`bold`) or as the answers' texts `text_a`/`text_b` (counted here).

Large files are parsed by pyarrow's multi-threaded JSON reader (a million votes in well under a
second); when that fails or a value is wrong, the plain reader runs and reports the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.jsonl import read_objects

WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
STYLE_FEATURES = ("length", "headers", "lists", "bold")

_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_of(text: str) -> dict[str, int]:
    """Length in words and the markdown counts style control uses."""
    return {"length": len(text.split()), "headers": len(_HEADER.findall(text)),
            "lists": len(_LIST.findall(text)), "bold": len(_BOLD.findall(text))}


@dataclass
class Votes:
    """Column form of a list of votes; `a`, `b` index into `models`."""

    models: list[str]
    a: np.ndarray  # int
    b: np.ndarray  # int
    outcome: np.ndarray  # 1 a won, 0 b won, 0.5 tie
    user: np.ndarray | None = None  # int codes (-1: unknown)
    prompt: np.ndarray | None = None  # int codes (-1: unknown)
    time: np.ndarray | None = None  # Unix seconds (nan: unknown)
    left_is_a: np.ndarray | None = None  # 1 a shown left, 0 b shown left, -1 unknown
    style_a: np.ndarray | None = None  # (n, 4) float, nan where unknown
    style_b: np.ndarray | None = None
    users: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def subset(self, keep: np.ndarray) -> "Votes":
        """The votes where `keep` (a boolean mask or index array) holds."""
        def cut(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[keep]

        return Votes(self.models, self.a[keep], self.b[keep], self.outcome[keep], cut(self.user),
                     cut(self.prompt), cut(self.time), cut(self.left_is_a), cut(self.style_a),
                     cut(self.style_b), self.users)


def _codes(values: list[Any]) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = -1 if v is None else index.setdefault(str(v), len(index))
    return out, list(index)


def _when(rec: dict[str, Any], where: str) -> float:
    if rec.get("tstamp") is not None:
        t = rec["tstamp"]
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError(f"{where}: tstamp must be a number (Unix seconds)")
        return float(t)
    if rec.get("time") is not None:
        try:
            return datetime.fromisoformat(str(rec["time"])).timestamp()
        except ValueError:
            raise ValueError(f"{where}: time must be ISO 8601") from None
    return float("nan")


def _left(rec: dict[str, Any], where: str) -> int:
    pos = rec.get("positions")
    if pos is None:
        return -1
    left = pos.get("left") if isinstance(pos, dict) else None
    if left in ("model_a", rec["model_a"]) and left != rec["model_b"]:
        return 1
    if left in ("model_b", rec["model_b"]) and left != rec["model_a"]:
        return 0
    raise ValueError(f"{where}: positions.left must be model_a, model_b or one of the two model names")


def _style(rec: dict[str, Any], side: str, where: str) -> list[float]:
    s = rec.get(f"style_{side}")
    if s is None and isinstance(rec.get(f"text_{side}"), str):
        s = style_of(rec[f"text_{side}"])
    if s is None:
        return [float("nan")] * len(STYLE_FEATURES)
    if not isinstance(s, dict):
        raise ValueError(f"{where}: style_{side} must be an object with {', '.join(STYLE_FEATURES)}")
    try:
        return [float(s.get(k, 0)) for k in STYLE_FEATURES]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: style_{side} values must be numbers") from None


def from_records(records: list[dict[str, Any]], where: str = "vote", lines: list[int] | None = None) -> Votes:
    """Columns from vote dicts; ValueError naming the vote (or file line) and field."""
    names: dict[str, int] = {}
    n = len(records)
    a = np.empty(n, dtype=np.int64)
    b = np.empty(n, dtype=np.int64)
    out = np.empty(n, dtype=np.float64)
    times = np.full(n, np.nan)
    left = np.full(n, -1, dtype=np.int8)
    sa = np.full((n, len(STYLE_FEATURES)), np.nan)
    sb = np.full((n, len(STYLE_FEATURES)), np.nan)
    for i, rec in enumerate(records):
        at = f"{where}:{lines[i]}" if lines else f"{where} {i}"
        for key in ("model_a", "model_b", "winner"):
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise ValueError(f"{at}: {key} must be a non-empty string")
        if rec["model_a"] == rec["model_b"]:
            raise ValueError(f"{at}: model_a and model_b must differ")
        if rec["winner"] not in WINNERS:
            raise ValueError(f"{at}: winner must be model_a, model_b or tie, got {rec['winner']!r}")
        a[i] = names.setdefault(rec["model_a"], len(names))
        b[i] = names.setdefault(rec["model_b"], len(names))
        out[i] = WINNERS[rec["winner"]]
        times[i] = _when(rec, at)
        left[i] = _left(rec, at)
        sa[i], sb[i] = _style(rec, "a", at), _style(rec, "b", at)
    user, users = _codes([r.get("user") for r in records])
    prompt, _ = _codes([r.get("prompt") for r in records])
    has = lambda x: bool((x != -1).any()) if n else False  # noqa: E731
    return Votes(
        models=list(names), a=a, b=b, outcome=out,
        user=user if has(user) else None, prompt=prompt if has(prompt) else None,
        time=times if n and not np.isnan(times).all() else None,
        left_is_a=left if has(left) else None,
        style_a=sa if n and not np.isnan(sa).all() else None,
        style_b=sb if n and not np.isnan(sb).all() else None, users=users,
    )


def _fast(path: Path) -> Votes | None:
    """pyarrow for the plain three-field layout (plus user/prompt strings); None if anything
    else is in the file, so the plain reader handles it (and reports errors with a line)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyarrow import json as pj
    except ImportError:
        return None
    try:
        table = pj.read_json(path, read_options=pj.ReadOptions(block_size=1 << 20))
    except (pa.ArrowInvalid, OSError):
        return None
    cols = set(table.column_names)
    if not {"model_a", "model_b", "winner"} <= cols or cols - {"model_a", "model_b", "winner", "user", "prompt"}:
        return None
    for c in cols:
        if not pa.types.is_string(table.schema.field(c).type) or table[c].null_count:
            return None
    if not table.num_rows:
        return None
    both = pa.chunked_array(table["model_a"].chunks + table["model_b"].chunks).dictionary_encode().combine_chunks()
    idx = both.indices.to_numpy(zero_copy_only=False)
    n = table.num_rows
    a, b = idx[:n], idx[n:]
    win = table["winner"].dictionary_encode().combine_chunks()
    values = win.dictionary.to_pylist()
    if any(v not in WINNERS for v in values) or (a == b).any():
        return None
    outcome = np.array([WINNERS[v] for v in values])[win.indices.to_numpy(zero_copy_only=False)]
    extra: dict[str, Any] = {}
    for c in ("user", "prompt"):
        if c in cols:
            enc = pc.dictionary_encode(table[c]).combine_chunks()
            extra[c] = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            if c == "user":
                extra["users"] = enc.dictionary.to_pylist()
    return Votes(models=both.dictionary.to_pylist(), a=a, b=b, outcome=outcome, **extra)


def read_votes(path: Path | str) -> Votes:
    """Votes from a JSONL file; ValueError naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"votes file not found: {path}")
    fast = _fast(path)
    if fast is not None:
        return fast
    rows = read_objects(path, "votes")
    if not rows:
        raise ValueError(f"{path}: no votes in the file")
    return from_records([r for _, r in rows], where=str(path), lines=[ln for ln, _ in rows])
