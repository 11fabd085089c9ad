"""The external check: Anthropic's HH-RLHF harmless-base test pairs (MIT), split in two halves
with a fixed seed — train on one, measure pairwise accuracy on the other."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

HH_FILE = Path("hh-rlhf") / "harmless-base" / "test.jsonl.gz"


def hh_rlhf_halves(data_dir: Path | str, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train half, test half) of the harmless-base test pairs, in their own layout
    (`{"chosen", "rejected"}` transcripts: TRL's implicit-prompt preference layout). Pairs that
    share a first user turn go to the same half, so no red-team prompt is in both."""
    path = Path(data_dir) / HH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"HH-RLHF harmless-base not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        first = row["chosen"].split("\n\nAssistant:")[0]
        groups.setdefault(first, []).append(row)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for k in keys:
        (train if len(train) <= len(test) else test).extend(groups[k])
    return train, test


def write_jsonl(rows: list[dict[str, Any]], path: Path | str) -> Path:
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
