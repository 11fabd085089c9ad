"""Reward-model benchmarks, side by side in one run.

1. Scoring throughput (pairs/s): `TrainedRewardModel.score_batch` (our encoder, length-sorted
   batches) beside a plain transformers forward pass of the same backbone and weights
   (tokenizer(prompt, answer, padding, truncation) + model(...) in input order, same batch size
   and max length), on HH-RLHF pairs. Prints the ratio (target >= 0.9x).
2. `--train`: the external check. Train a MiniLM RM on one half of HH-RLHF harmless-base (split
   with a fixed seed, posttrain.reward.external), report accuracy on the other half with its 95 %
   interval, and training seconds per epoch. `--validate` holds 200 pairs of the training half out
   for tuning and never touches the test half.

    .venv/bin/python benchmarks/bench_reward.py --pairs 256
    .venv/bin/python benchmarks/bench_reward.py --train --epochs 2 --lr 1e-4 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("POSTTRAIN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _untrained_rm(folder: Path, max_length: int) -> Path:
    """A MiniLM RM checkpoint with a fresh head: the weights do not matter for throughput."""
    from posttrain.reward._encode import load_classifier, load_tokenizer, minilm_dir
    from posttrain.reward._model import write_meta

    tok, model = load_tokenizer(minilm_dir()), load_classifier(minilm_dir())
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_meta(folder, {"kind": "pairwise", "style": "pair", "max_length": max_length, "backbone": "minilm"})
    return folder


def bench_scoring(n_pairs: int, batch_size: int, max_length: int, rounds: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from posttrain.reward._encode import render_prompt
    from posttrain.reward._model import TrainedRewardModel
    from posttrain.reward.external import hh_rlhf_halves
    from posttrain.reward._data import pair_from_row

    _, test = hh_rlhf_halves(DATA, seed=0)
    pairs = [pair_from_row(r) for r in test[:n_pairs]]
    prompts = [p.messages for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        folder = _untrained_rm(Path(tmp), max_length)
        ours = TrainedRewardModel(folder, batch_size=batch_size)
        ours.score_batch(prompts[:8], answers[:8])  # load + warm up
        tok = AutoTokenizer.from_pretrained(str(folder))
        plain = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
        texts = [render_prompt(p) for p in prompts]

        def run_plain() -> list[float]:
            out = []
            with torch.inference_mode():
                for i in range(0, len(texts), batch_size):
                    enc = tok(texts[i:i + batch_size], answers[i:i + batch_size], padding=True, truncation="longest_first",
                              max_length=max_length, return_tensors="pt", return_token_type_ids=False)
                    out.extend(plain(**enc).logits[:, 0].tolist())
            return out

        run_plain()
        timings = {"posttrain": [], "plain": []}
        for _ in range(rounds):  # interleaved, so machine load hits both alike
            t = time.perf_counter()
            ours.score_batch(prompts, answers)
            timings["posttrain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            run_plain()
            timings["plain"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in timings.items()}
    rate = {k: n_pairs / v for k, v in best.items()}
    return {"pairs": n_pairs, "batch_size": batch_size, "max_length": max_length, "rounds": rounds,
            "pairs_per_s": {k: round(v, 1) for k, v in rate.items()},
            "ratio": round(rate["posttrain"] / rate["plain"], 3), "torch_threads": torch.get_num_threads()}


def bench_training(args: argparse.Namespace) -> dict:
    import random

    from posttrain.reward import evaluate_reward_model, train_reward_model
    from posttrain.reward.external import hh_rlhf_halves, write_jsonl
    from posttrain.store import Store

    train, test = hh_rlhf_halves(DATA, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("POSTTRAIN_HOME", str(tmp / "home"))
        store = Store.open(f"sqlite:///{tmp / 's.db'}")
        rows = list(train)
        opts = {}
        if args.validate:  # tuning: judge on 200 pairs of the training half, never the test half
            random.Random(1).shuffle(rows)
            write_jsonl(rows[:200], tmp / "val.jsonl")
            rows = rows[200:]
            opts["heldout_path"] = tmp / "val.jsonl"
        write_jsonl(rows, tmp / "train.jsonl")
        result = train_reward_model(store, name="hh", pairs=tmp / "train.jsonl", epochs=args.epochs,
                                    learning_rate=args.lr, max_length=args.max_length, batch_size=args.batch_size,
                                    train_layers=args.train_layers, progress=not args.quiet, out=tmp / "rm", **opts)
        report = {"train_pairs": len(rows), "config": result["train"]["config"],
                  "seconds": result["train"]["seconds"], "seconds_per_epoch": result["train"]["seconds_per_epoch"],
                  "steps": result["train"]["steps"], "heldout": result["heldout"]}
        if not args.validate:
            write_jsonl(test, tmp / "test.jsonl")
            t = time.perf_counter()
            report["test_half"] = evaluate_reward_model(store, "hh", tmp / "test.jsonl")
            report["test_eval_seconds"] = round(time.perf_counter() - t, 1)
        store.close()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=256, help="pairs scored per round")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train", action="store_true", help="run the HH-RLHF external check instead")
    ap.add_argument("--validate", action="store_true", help="with --train: tune on a validation split only")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--train-layers", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if not (DATA / "hh-rlhf").exists():
        sys.exit(f"HH-RLHF not found under {DATA} (set POSTTRAIN_SHARED_DATA)")
    if args.train:
        args.batch_size = 8 if args.batch_size == 32 else args.batch_size
        out = bench_training(args)
    else:
        out = bench_scoring(args.pairs, args.batch_size, args.max_length, args.rounds)
        p = out["pairs_per_s"]
        print(f"scoring: posttrain {p['posttrain']} pairs/s, plain transformers {p['plain']} pairs/s, "
              f"ratio {out['ratio']}x", file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
