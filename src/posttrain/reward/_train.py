"""`train_reward_model`: data in TRL's layout (a file or a stored snapshot) -> a registered,
evaluated reward model with its lineage."""

from __future__ import annotations

import re
import random
import time
from pathlib import Path
from typing import Any

from posttrain.reward._data import Pair, Point, file_digest, read_pairs, read_points, split_by_prompt
from posttrain.reward._encode import BACKBONES, Encoder, backbone_dir, load_classifier, load_tokenizer, style_of
from posttrain.reward._fit import FitConfig, fit_pairwise, fit_pointwise
from posttrain.reward._model import TrainedRewardModel, write_meta
from posttrain.reward._stats import ece, pair_report, sigmoid
from posttrain.store import Store

KINDS = ("pairwise", "pointwise")
# Snapshot kinds (posttrain.datasets) each RM kind trains on.
_SNAPSHOT_KIND = {"pairwise": "preferences", "pointwise": "kto"}
_FIT_FIELDS = {"learning_rate", "batch_size", "max_length", "warmup", "weight_decay", "max_steps", "train_layers",
               "progress"}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "trl", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _snapshot(store: Store, ref: str) -> Any:
    try:
        from posttrain.datasets import get_snapshot
    except ImportError:
        raise ValueError("training from --snapshot needs posttrain.datasets, which is not available yet; "
                         "pass --pairs FILE (an exported JSONL) instead") from None
    try:
        return get_snapshot(store, ref)
    except KeyError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else f"unknown snapshot {ref!r}") from None


def _read(kind: str, path: Path) -> list[Any]:
    return read_pairs(path) if kind == "pairwise" else read_points(path)


def _load_data(store: Store, kind: str, pairs: str | Path | None, snapshot: str | None, heldout: float,
               heldout_path: str | Path | None, seed: int) -> tuple[list[Any], list[Any], dict[str, Any], str | None]:
    """(train rows, held-out rows, data lineage, snapshot hash)."""
    if (pairs is None) == (snapshot is None):
        raise ValueError("give exactly one of pairs (a JSONL file) or snapshot (a stored export's hash)")
    if snapshot is not None:
        snap = _snapshot(store, snapshot)
        want = _SNAPSHOT_KIND[kind]
        if snap.kind != want:
            raise ValueError(f"snapshot {snap.hash[:12]} is a {snap.kind!r} export; a {kind} reward model trains on {want!r}")
        rows = _read(kind, Path(snap.path))
        lineage = {"snapshot": snap.hash, "path": str(snap.path), "rows": len(rows)}
        test_path = heldout_path or getattr(snap, "test_path", None)
        snap_hash: str | None = snap.hash
    else:
        rows = _read(kind, Path(pairs))
        lineage = {"path": str(Path(pairs).resolve()), "sha256": file_digest(pairs), "rows": len(rows)}
        test_path, snap_hash = heldout_path, None
    if test_path is not None:  # a split made upstream (by user and conversation) beats ours
        held = _read(kind, Path(test_path))
        lineage["heldout"] = {"path": str(test_path), "rows": len(held)}
        return rows, held, lineage, snap_hash
    train, held = split_by_prompt(rows, heldout, seed)
    lineage["heldout"] = {"split": "by prompt", "fraction": heldout, "seed": seed, "rows": len(held)}
    return train, held, lineage, snap_hash


def _out_dir(name: str, out: str | Path | None) -> Path:
    from posttrain import config
    from posttrain.ids import new_id

    if out is not None:
        path = Path(out).expanduser().resolve()
        if path.exists() and any(path.iterdir()):
            raise ValueError(f"output folder {path} is not empty")
        return path
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    return config.home() / "reward_models" / f"{slug}-{new_id()[-8:].lower()}"


def _words(text: str) -> int:
    return len(text.split())


def pointwise_pairs(points: list[Point], seed: int) -> list[Pair]:
    """Held-out thumbs as independent preference pairs: each thumbs-up answer is matched with one
    thumbs-down answer, to the same prompt where there is one, every answer used at most once (so
    a binomial interval on the pairs' accuracy is valid)."""
    rng = random.Random(seed)
    ups = [p for p in points if p.label]
    downs = [p for p in points if not p.label]
    rng.shuffle(ups)
    rng.shuffle(downs)
    by_prompt: dict[Any, list[Point]] = {}
    for d in downs:
        by_prompt.setdefault(d.prompt, []).append(d)
    used: set[int] = set()
    pairs, unmatched = [], []
    for u in ups:
        same = by_prompt.get(u.prompt) or []
        if same:
            d = same.pop()
            used.add(id(d))
            pairs.append(Pair(u.prompt, u.completion, d.completion))
        else:
            unmatched.append(u)
    rest = [d for d in downs if id(d) not in used]
    for u, d in zip(unmatched, rest):  # across prompts: still one up beats one down
        pairs.append(Pair(u.prompt, u.completion, d.completion))
    return pairs


def evaluate_pairs(rm: TrainedRewardModel, pairs: list[Pair]) -> dict[str, Any]:
    """Pairwise accuracy with a 95 % interval, ECE and length correlation of `rm` on `pairs`."""
    if not pairs:
        raise ValueError("no pairs to evaluate on")
    prompts = [p.messages for p in pairs]
    scores = rm.score_batch(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    n = len(pairs)
    return pair_report(scores[:n], scores[n:], [_words(p.chosen) for p in pairs], [_words(p.rejected) for p in pairs])


def _heldout_report(rm: TrainedRewardModel, kind: str, held: list[Any], seed: int) -> dict[str, Any]:
    if kind == "pairwise":
        return evaluate_pairs(rm, held)
    report: dict[str, Any] = {}
    pairs = pointwise_pairs(held, seed)
    if pairs:
        report = evaluate_pairs(rm, pairs)
    scores = rm.score_batch([p.messages for p in held], [p.completion for p in held])
    probs = [sigmoid(s) for s in scores]
    report["labels"] = {"n": len(held), "accuracy": round(sum((p > 0.5) == x.label for p, x in zip(probs, held)) / len(held), 4),
                        "ece": round(ece(probs, [int(x.label) for x in held]), 4)}
    return report


def train_reward_model(store: Store, *, name: str, pairs: str | Path | None = None, snapshot: str | None = None,
                       backbone: str = "minilm", kind: str = "pairwise", epochs: float = 1, seed: int = 0,
                       **kw: Any) -> dict[str, Any]:
    """Train, evaluate on a held-out split, save and register a reward model; returns its metrics.

    `pairs` is a JSONL file in TRL's preference layout (pairwise) or KTO layout (pointwise);
    `snapshot` a stored export's hash. Options: learning_rate, batch_size, max_length, warmup,
    weight_decay, max_steps, train_layers, progress, heldout (fraction, default 0.1), heldout_path (a file
    to evaluate on instead of a split), out (checkpoint folder), register (default True).
    """
    from posttrain.models.registry import UnknownModel, get_model, register_model

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = set(kw) - _FIT_FIELDS - {"heldout", "heldout_path", "out", "register"}
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}")
    register = kw.pop("register", True)
    if register:
        try:
            get_model(store, name)
            raise ValueError(f"a model named {name!r} is already registered; choose another name")
        except UnknownModel:
            pass
    cfg = FitConfig(epochs=epochs, seed=seed, **{k: v for k, v in kw.items() if k in _FIT_FIELDS})
    cfg.check()
    train, held, lineage, snap_hash = _load_data(store, kind, pairs, snapshot, kw.get("heldout", 0.1),
                                                 kw.get("heldout_path"), seed)
    started = time.perf_counter()
    src = backbone_dir(backbone)
    tok = load_tokenizer(src)
    enc = Encoder(tok, style_of(tok), cfg.max_length)
    import transformers

    transformers.set_seed(seed)  # the score head is initialised at random
    model = load_classifier(src)
    model.config.pad_token_id = tok.pad_token_id
    if kind == "pairwise":
        prompts = [p.messages for p in train]
        fit = fit_pairwise(model, tok, enc.encode_many(prompts, [p.chosen for p in train]),
                           enc.encode_many(prompts, [p.rejected for p in train]), cfg)
    else:
        fit = fit_pointwise(model, tok, enc.encode_many([p.messages for p in train], [p.completion for p in train]),
                            [p.label for p in train], cfg)
    out = _out_dir(name, kw.get("out"))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_meta(out, {"kind": kind, "style": enc.style, "max_length": cfg.max_length,
                     "backbone": backbone if backbone in BACKBONES else str(src)})
    rm = TrainedRewardModel(out, name=name)
    heldout = _heldout_report(rm, kind, held, seed)
    train_info = {"method": f"reward-{kind}", "backbone": backbone if backbone in BACKBONES else str(src),
                  "config": {**{k: v for k, v in vars(cfg).items() if k != "progress"}},
                  "data": lineage, "rows": len(train), **fit.summary(cfg.epochs),
                  "versions": _versions()}
    metrics = {"train": train_info, "heldout": heldout}
    result = {"model": name, "path": str(out), "kind": kind, **metrics,
              "seconds": round(time.perf_counter() - started, 2)}
    if register:
        parent = _parent(store, backbone)
        register_model(store, name, "reward_model", {"path": str(out)}, parent=parent,
                       data_snapshot=snap_hash, metrics=metrics)
        from posttrain.reward._registry import register_grader

        register_grader(store, name)
    return result


def _parent(store: Store, backbone: str) -> str | None:
    """The registered model a reward model was fine-tuned from, when it is one (SmolLM2)."""
    if backbone != "smollm2":
        return None
    from posttrain.models.embedded import EMBEDDED_MODEL
    from posttrain.models.registry import ensure_default_models

    ensure_default_models(store)
    return EMBEDDED_MODEL
