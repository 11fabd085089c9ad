"""Arena leaderboard speed: posttrain's fit against FastChat's current method, side by side.

    .venv/bin/python benchmarks/bench_arena.py [--votes 1000000] [--models 50] [--rounds 100]

The reference is FastChat's `rating_systems.py` method reimplemented here from its published
description: battles collapsed into unique (model_a, model_b, outcome) rows with counts, a
Bradley–Terry loss minimized by scipy's L-BFGS-B (gtol 1e-6, ratings in log10 units), and a
multinomial bootstrap of the counts whose rounds are fitted in a process pool over all cores;
its "whole command" reads the JSONL with pandas as FastChat's notebooks do. posttrain is timed
in-process (fit + bootstrap on votes already in memory) and as the whole `posttrain arena fit
--votes FILE --json` command; reading the file is measured alone as the floor of both.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


# ---- the reference (FastChat's method) --------------------------------------------------------


def _bt_loss_and_grad(ratings, matchups, outcomes, weights, alpha=1.0):
    from scipy.special import expit

    matchup_ratings = ratings[matchups]
    logits = alpha * (matchup_ratings[:, 0] - matchup_ratings[:, 1])
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    matchups_grads = -alpha * (outcomes - probs) * weights
    model_grad = np.zeros_like(ratings)
    np.add.at(model_grad, matchups[:, [0, 1]], matchups_grads[:, None] * np.array([1.0, -1.0]))
    return loss, model_grad


def ref_fit_bt(matchups, outcomes, weights, n_models, alpha, tol=1e-6):
    from scipy.optimize import minimize

    res = minimize(_bt_loss_and_grad, np.zeros(n_models), args=(matchups, outcomes, weights, alpha),
                   jac=True, method="L-BFGS-B", options={"maxiter": 100, "gtol": tol})
    return res["x"]


def ref_preprocess(df):
    import pandas as pd

    n = len(df)
    idx, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
    matchups = np.column_stack([idx[:n], idx[n:]])
    outcomes = np.full(n, 0.5)
    outcomes[df["winner"].to_numpy() == "model_a"] = 1.0
    outcomes[df["winner"].to_numpy() == "model_b"] = 0.0
    uniq, counts = np.unique(np.column_stack([matchups, outcomes]), return_counts=True, axis=0)
    return uniq[:, [0, 1]].astype(np.int32), uniq[:, 2], list(models), counts.astype(np.float64)


def ref_compute(df, rounds: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(ratings, bootstrap ratings, fit seconds, bootstrap seconds) as FastChat computes them."""
    t0 = time.perf_counter()
    matchups, outcomes, models, weights = ref_preprocess(df)
    ratings = 400 * ref_fit_bt(matchups, outcomes, weights, len(models), math.log(10.0)) + 1000
    t1 = time.perf_counter()
    rng = np.random.default_rng(seed=0)
    idxs = rng.multinomial(n=len(df), pvals=weights / weights.sum(), size=rounds)
    boot_weights = idxs.astype(np.float64) / len(df)
    fn = partial(ref_fit_bt, matchups, outcomes, n_models=len(models), alpha=math.log(10.0))
    with mp.Pool(os.cpu_count()) as pool:
        boot = 400 * np.array(pool.map(fn, boot_weights)) + 1000
    return ratings, boot, t1 - t0, time.perf_counter() - t1


def ref_command(path: str, rounds: int) -> None:
    import pandas as pd

    df = pd.read_json(path, lines=True)
    ratings, boot, _, _ = ref_compute(df, rounds)
    print(json.dumps({"ratings": ratings.tolist(), "low": np.quantile(boot, 0.025, axis=0).tolist()}))


# ---- the benchmark ----------------------------------------------------------------------------


def make_votes(path: Path, n: int, m: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n)
    winner = np.where(u < 0.1, "tie", np.where(rng.random(n) < p, "model_a", "model_b"))
    names = np.array([f"model-{i:02d}" for i in range(m)])
    with path.open("w") as f:
        for x, y, w in zip(names[a], names[b], winner):
            f.write(f'{{"model_a": "{x}", "model_b": "{y}", "winner": "{w}"}}\n')


def _posttrain() -> str:
    exe = Path(sys.executable).with_name("posttrain")
    return str(exe) if exe.exists() else "posttrain"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--reference-command", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_command:
        ref_command(args.reference_command, args.rounds)
        return
    import pandas as pd

    from posttrain.arena import fit, read_votes

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "votes.jsonl"
        make_votes(path, args.votes, args.models)
        print(f"{args.votes:,} votes over {args.models} models, {args.rounds} bootstrap rounds, "
              f"{os.cpu_count()} cores; file {path.stat().st_size / 1e6:.0f} MB")

        t = time.perf_counter()
        votes = read_votes(path)
        ours_read = time.perf_counter() - t
        t = time.perf_counter()
        df = pd.read_json(path, lines=True)
        ref_read = time.perf_counter() - t

        t = time.perf_counter()
        ours = fit(votes, rounds=args.rounds)
        ours_fit = time.perf_counter() - t
        ref_ratings, ref_boot, ref_fit_s, ref_boot_s = ref_compute(df, args.rounds)
        ref_fit = ref_fit_s + ref_boot_s

        t = time.perf_counter()
        out = subprocess.run([_posttrain(), "arena", "fit", "--votes", str(path), "--rounds", str(args.rounds), "--json"],
                             capture_output=True, text=True, check=True)
        ours_cmd = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--reference-command", str(path), "--rounds", str(args.rounds)],
                       capture_output=True, text=True, check=True)
        ref_cmd = time.perf_counter() - t

        got = {r["model"]: r["rating"] for r in json.loads(out.stdout)["models"]}
        names = sorted(got)  # pd.factorize order differs; compare by name
        _, _, models, _ = ref_preprocess(df)
        ref = dict(zip(models, ref_ratings - ref_ratings.mean() + 1000))
        diff = max(abs(got[n] - ref[n]) for n in names)
        low = dict(zip(models, np.quantile(ref_boot, 0.025, axis=0) - ref_ratings.mean() + 1000))
        ours_low = {r["model"]: r["ci_low"] for r in ours["models"]}
        low_diff = max(abs(ours_low[n] - low[n]) for n in names)

    t = ours["timings"]
    print(f"{'':28} {'posttrain':>10} {'FastChat':>10} {'ratio':>7}")
    print(f"{'read the votes file':28} {ours_read:>9.2f}s {ref_read:>9.2f}s {ref_read / ours_read:>6.1f}x")
    print(f"{'fit + bootstrap, in-process':28} {ours_fit:>9.3f}s {ref_fit:>9.2f}s {ref_fit / ours_fit:>6.1f}x"
          f"   (ours: fit {t['fit_s']:.3f}s, intervals {t['bootstrap_s']:.3f}s; FastChat: fit {ref_fit_s:.2f}s,"
          f" bootstrap {ref_boot_s:.2f}s)")
    print(f"{'whole command':28} {ours_cmd:>9.2f}s {ref_cmd:>9.2f}s {ref_cmd / ours_cmd:>6.1f}x")
    print(f"largest rating difference {diff:.3f} points; largest CI lower-bound difference {low_diff:.2f} points"
          " (different resamples: FastChat factorizes models in order of appearance)")


if __name__ == "__main__":
    main()
