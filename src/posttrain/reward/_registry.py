"""Trained reward models by name: loading from the model registry, grading, eval, file scoring."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from posttrain.jsonl import read_objects
from posttrain.reward._data import Messages, _answer, _messages, read_pairs
from posttrain.reward._model import TrainedRewardModel
from posttrain.store import Store

_loaded: dict[str, TrainedRewardModel] = {}  # checkpoint path -> loaded RM (weights once per process)
_lock = threading.Lock()


def load_reward_model(store: Store, name: str) -> TrainedRewardModel:
    """The registered reward model `name`, loaded once per process. UnknownModel (a KeyError)
    for an unknown name; ValueError when the name is a model of another kind."""
    from posttrain.models.registry import get_model

    info = get_model(store, name)
    if info.backend != "reward_model":
        raise ValueError(f"{name!r} is a {info.backend} model, not a reward model")
    return scorer_for_path(str(info.config["path"]), name)


def scorer_for_path(path: str, name: str | None = None) -> TrainedRewardModel:
    """The reward model in checkpoint folder `path`, loaded once per process."""
    key = str(Path(path).expanduser().resolve())
    with _lock:
        rm = _loaded.get(key)
        if rm is None:
            rm = _loaded[key] = TrainedRewardModel(key, name=name)
    return rm


def register_grader(store: Store, name: str) -> None:
    """Make the store's reward model `name` usable by the `reward_model` grader in this process
    (`reward_model` grader args: name=NAME)."""
    from posttrain.graders.reward_model import register_reward_model

    register_reward_model(name, lambda **_: load_reward_model(store, name))


def register_store_reward_models(store: Store) -> list[str]:
    """Register every reward model of the store with the `reward_model` grader; returns names.
    Call once before running suites graded by a trained RM (the grader registry is per process)."""
    from posttrain.models.registry import list_models

    names = [m.name for m in list_models(store) if m.backend == "reward_model"]
    for name in names:
        register_grader(store, name)
    return names


def is_flagged(store: Store, name: str) -> bool:
    """True when the RM's stored bias audit flagged a property. An RM never audited raises
    ValueError: "not audited" must not read as "clean"."""
    from posttrain.models.registry import get_model

    audit = get_model(store, name).metrics.get("audit")
    if not isinstance(audit, dict) or "flagged" not in audit:
        raise ValueError(f"reward model {name!r} has no audit yet; run: posttrain reward audit {name}")
    return bool(audit["flagged"])


def evaluate_reward_model(store: Store, name: str, pairs: str | Path) -> dict[str, Any]:
    """`{"accuracy", "ci", "n", ...}` of the RM on a preference JSONL (ECE and length
    correlation included)."""
    from posttrain.reward._train import evaluate_pairs

    return {"model": name, **evaluate_pairs(load_reward_model(store, name), read_pairs(pairs))}


def _score_row(rec: dict[str, Any], where: str) -> list[tuple[Messages, str, str]]:
    """(prompt, answer, output field) for each answer a row asks to score."""
    if "chosen" in rec and "rejected" in rec:
        from posttrain.reward._data import pair_from_row

        p = pair_from_row(rec, where)
        return [(p.messages, p.chosen, "chosen_score"), (p.messages, p.rejected, "rejected_score")]
    for field in ("completion", "response"):
        if field in rec:
            return [(_messages(rec.get("prompt") or [], where, "prompt"), _answer(rec[field], where, field), "score")]
    if "messages" in rec:
        msgs = _messages(rec["messages"], where, "messages")
        if msgs and msgs[-1]["role"] == "assistant":
            return [(msgs[:-1], msgs[-1]["content"], "score")]
    raise ValueError(f"{where}: need prompt+completion, prompt+chosen+rejected, or messages ending in an assistant turn")


def score_file(store: Store, name: str, input_path: str | Path, output_path: str | Path | None = None,
               chunk: int = 512) -> list[dict[str, Any]] | int:
    """Score every row of a JSONL file in batches; each output row is the input row plus `score`
    (or `chosen_score`/`rejected_score`). Writes to `output_path` and returns the row count, or
    returns the rows when no path is given."""
    rm = load_reward_model(store, name)
    records = read_objects(input_path, "input")
    jobs = [(i, job) for i, (n, rec) in enumerate(records) for job in _score_row(rec, f"{input_path}:{n}")]
    out_rows = [dict(rec) for _, rec in records]
    for start in range(0, len(jobs), chunk):
        part = jobs[start:start + chunk]
        scores = rm.score_batch([j[0] for _, j in part], [j[1] for _, j in part])
        for (i, (_, _, field)), s in zip(part, scores):
            out_rows[i][field] = round(s, 6)
    if output_path is None:
        return out_rows
    with open(output_path, "w", encoding="utf-8") as f:
        for row in out_rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(out_rows)
