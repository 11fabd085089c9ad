"""Snapshots: every export is stored, named by the hash of its content, so a trained model can
name exactly the data it came from (ModelEntry.data_snapshot) and training can find the files.

Files live in $POSTTRAIN_HOME/snapshots/<hash>/train.jsonl (and test.jsonl when the export has
a test split); the store's dataset_snapshots row holds kind, format, filters, rules, counts
(the export report) and time, and dataset_snapshot_users which users' rows it holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from posttrain import config
from posttrain.store import datasets as q
from posttrain.store._store import Store


def snapshots_dir() -> Path:
    """$POSTTRAIN_HOME/snapshots, created on first use."""
    path = config.home() / "snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Snapshot:
    """A stored export. `path` is the train JSONL in the layout of (kind, format)."""

    hash: str
    kind: str
    format: str
    path: Path
    test_path: Path | None
    rows: int
    test_rows: int
    filters: dict[str, Any]
    rules: list[dict[str, Any]]
    counts: dict[str, Any]
    created_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash, "kind": self.kind, "format": self.format, "path": str(self.path),
            "test_path": str(self.test_path) if self.test_path else None, "rows": self.rows,
            "test_rows": self.test_rows, "filters": self.filters, "rules": self.rules,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _snapshot(d: dict[str, Any]) -> Snapshot:
    created = datetime.fromisoformat(d["created_at"].replace("Z", "+00:00")) if d["created_at"] else None
    return Snapshot(
        hash=d["hash"], kind=d["kind"], format=d["format"], path=Path(d["path"]),
        test_path=Path(d["test_path"]) if d["test_path"] else None, rows=d["rows"], test_rows=d["test_rows"],
        filters=d["filters"], rules=d["rules"], counts=d["counts"], created_at=created,
    )


def get_snapshot(store: Store, hash_or_prefix: str) -> Snapshot:
    """The snapshot with that hash, or the only one starting with that prefix; KeyError (with a
    one-line message) when there is none or the prefix is ambiguous."""
    with store.session() as s:
        found = q.find_snapshots(s, hash_or_prefix)
    if not found:
        raise KeyError(f"no dataset snapshot {hash_or_prefix!r} (see `posttrain export list`)")
    exact = [d for d in found if d["hash"] == hash_or_prefix.strip().lower()]
    if len(found) > 1 and not exact:
        raise KeyError(f"snapshot prefix {hash_or_prefix!r} is ambiguous; give more characters")
    return _snapshot(exact[0] if exact else found[0])


def list_snapshots(store: Store, limit: int = 100) -> list[Snapshot]:
    """The newest snapshots first."""
    with store.session() as s:
        return [_snapshot(d) for d in q.list_snapshots(s, limit)]


class ContentHash:
    """sha256 over the kind, the format and the bytes of the train then the test file."""

    def __init__(self, kind: str, fmt: str) -> None:
        self._h = hashlib.sha256(f"posttrain-snapshot\0{kind}\0{fmt}\0".encode())

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def file(self, f: BinaryIO) -> None:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            self._h.update(chunk)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def store_snapshot(store: Store, report: dict[str, Any], users: dict[str, int]) -> bool:
    """Record the snapshot row; False when one with the same hash was stored before."""
    row = {
        "hash": report["snapshot"], "kind": report["kind"], "format": report["format"],
        "path": report["path"], "test_path": report["test_path"], "rows": report["splits"]["train"]["rows"],
        "test_rows": report["splits"]["test"]["rows"], "filters": report["filters"],
        "rules": report["rules"], "counts": report, "created_at": datetime.now(timezone.utc),
    }
    return store.write(lambda s: q.save_snapshot(s, row, users))
