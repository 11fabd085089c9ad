"""Distillation: the big model answers, the small one learns its answers (SFT).

`distill(store=, teacher=, student=, prompts=, name=)`: the teacher (any registered backend: the
local model, an OpenAI-compatible endpoint, posttrain's own server) answers every prompt
greedily; the answers are written as an SFT snapshot (`{"messages": [...prompt, answer]}`), stored
through posttrain.datasets so the student's lineage names it like any export; the student is
then fine-tuned with the SFT recipe and registered with the teacher in its lineage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from posttrain import config as pt_config


def _read_prompts(store: Any, prompts: str) -> tuple[list[list[dict[str, str]]], str]:
    """Prompt conversations from a JSONL file or a prompts snapshot, and where they came from."""
    from posttrain.train.data import normalize_row, snapshot_path
    from posttrain.jsonl import read_objects

    path, source = Path(prompts), prompts
    if not path.is_file():
        if path.suffix in (".jsonl", ".json") or "/" in prompts:
            raise ValueError(f"prompts file not found: {prompts}")
        path, full = snapshot_path(store, prompts)
        source = f"snapshot:{full}"
    records = read_objects(path, what="prompts")
    if not records:
        raise ValueError(f"{path}: the prompts file is empty (no rows)")
    convs = []
    for lineno, rec in records:
        row = normalize_row("grpo", rec, f"{path}:{lineno}")  # the prompts layout: {"prompt": [...]}
        # A prompt ending with an assistant turn is a finished conversation; the teacher answers
        # the user, so drop trailing assistant turns.
        conv = list(row["prompt"])
        while conv and conv[-1]["role"] == "assistant":
            conv.pop()
        if not conv:
            raise ValueError(f"{path}:{lineno}: the prompt has no user message")
        convs.append(conv)
    return convs, source


def _store_snapshot(store: Any, rows: list[dict[str, Any]], filters: dict[str, Any]) -> tuple[Path, str | None]:
    """Write the answers as an SFT snapshot; (train file, hash stored in the snapshot table or None)."""
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    try:
        from posttrain.datasets.snapshots import ContentHash, snapshots_dir, store_snapshot
    except ImportError:  # posttrain.datasets not there yet: a plain file, named in the lineage
        h = hashlib.sha256(b"posttrain-distill\0" + body).hexdigest()
        folder = pt_config.home() / "snapshots" / h
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.jsonl").write_bytes(body)
        return folder / "train.jsonl", None
    digest = ContentHash("sft", "trl")
    digest.update(body)
    h = digest.hexdigest()
    folder = snapshots_dir() / h
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    path.write_bytes(body)
    report = {"snapshot": h, "kind": "sft", "format": "trl", "path": str(path), "test_path": None,
              "rows": len(rows), "splits": {"train": {"rows": len(rows)}, "test": {"rows": 0}},
              "filters": filters, "rules": [], "excluded": {}, "users": 0}
    store_snapshot(store, report, {})
    return path, h


def distill(*, store: Any, teacher: str, student: str, prompts: str, name: str, config: Any = None,
            max_steps: int | None = None, max_new_tokens: int = 256, progress: bool = True) -> Any:
    """Teacher answers -> snapshot -> SFT of the student -> registered `name`; its ModelInfo."""
    from posttrain.models.base import DecodingParams
    from posttrain.models.registry import ensure_default_models, get_model, load_backend
    from posttrain.train.runner import _check_name, run

    ensure_default_models(store)
    _check_name(store, name)
    get_model(store, teacher)  # UnknownModel (one line) before any work
    convs, source = _read_prompts(store, prompts)
    backend = load_backend(store, teacher)
    params = DecodingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    rows = []
    for at in range(0, len(convs), 8):
        chunk = convs[at:at + 8]
        for conv, gen in zip(chunk, backend.generate(chunk, params)):
            if gen.text.strip():  # an empty answer teaches nothing
                rows.append({"messages": [*conv, {"role": "assistant", "content": gen.text.strip()}]})
    if not rows:
        raise ValueError(f"teacher {teacher!r} gave no non-empty answer to the {len(convs)} prompts")
    path, snap = _store_snapshot(store, rows, {"distill": {"teacher": teacher, "prompts": source,
                                                          "max_new_tokens": max_new_tokens}})
    extra = {"distill": {"teacher": teacher, "prompts": source, "answers": len(rows), "snapshot_file": str(path)}}
    data = {"snapshot": snap} if snap is not None else {"data": path}
    return run("sft", store=store, base=student, name=name, config=config, max_steps=max_steps,
               progress=progress, extra_lineage=extra, **data)
