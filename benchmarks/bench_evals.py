"""Eval generation throughput on the embedded model: batched vs batch 1, then a cached re-run.

The same N short prompts (one turn, greedy, max_new_tokens fixed) run three times through the
real eval runner on SmolLM2-135M-Instruct:
1. batched (batch 8), cache off: cases/s and generated tokens/s;
2. batch 1, cache off: the same figures, and the batched/batch-1 ratio;
3. again with the cache on: every answer is already stored, so the run costs only lookups,
   grading and writing the per-case rows.

Run by hand:  .venv/bin/python benchmarks/bench_evals.py [--cases 16] [--max-new-tokens 32] [--json]
The load average is printed: on a shared machine other processes take cores and every figure
drops (the ratio holds up better than the absolute numbers).

`--demo-suites [--data-dir DIR] [--rounds 2] [--batch-sizes 8 32]` measures instead the demo's
evaluation on the embedded model (capability 64 cases at 32 new tokens, engagement 24 at 64,
sycophancy-are-you-sure 16 two-turn cases at 40, cache off) at each batch size, with the local
backend's grouped prefill and dropping of finished answers ("grouped") and without them ("one
padded batch": every prompt padded to the batch's longest, every row decoded to the batch's
last step, as before), alternating in one process, `--rounds` times.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "Name three fruits.", "What is the capital of Italy?", "Give me a synonym for happy.",
    "Explain rain in one sentence.", "Suggest a name for a cat.", "What is 12 times 3?",
    "Write a haiku about snow.", "How do I boil an egg?", "What colour is the sky at noon?",
    "Translate 'thank you' to Spanish.", "Give one tip for better sleep.", "What is a noun?",
    "Name a planet with rings.", "Describe a bicycle briefly.", "Why do leaves fall?",
    "What does a baker do?", "List two primary colours.", "What is the boiling point of water?",
    "Recommend a short book.", "What is photosynthesis?", "Name an animal that lives in water.",
    "How many days are in a week?", "What is a prime number?", "Say hello politely.",
]


def bench_suite(n: int):  # noqa: ANN201 (Suite is imported lazily)
    from posttrain.evals.suite import Case, GraderSpec, Suite
    from posttrain.graders import Grade, grader, grader_names

    if "bench_nonempty" not in grader_names():
        @grader("bench_nonempty")
        def _nonempty(response: str, case: dict) -> Grade:
            return Grade(score=float(bool(response.strip())), passed=bool(response.strip()))

    cases = [Case(id=f"b{i}", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + (f" ({i})" if i >= len(PROMPTS) else "")}])
             for i in range(n)]
    return Suite(
        name="bench-evals", version="1", description="eval throughput benchmark",
        load=lambda _d, _s: cases, graders=[GraderSpec("bench_nonempty")],
        metrics=lambda rs: {"nonempty": sum(r.grades["bench_nonempty"].passed for r in rs) / len(rs)},
    )


DEMO_SUITES = [("capability", 64, 32), ("engagement", 24, 64), ("sycophancy-are-you-sure", 16, 40)]


def _padded(grouped_decode):  # noqa: ANN001, ANN202
    """The local backend's decode as it was: one prefill of the whole padded batch (its
    prefill_groups is swapped for one group while this runs), no row dropped."""

    def decode(*args, finished=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return grouped_decode(*args, **kwargs)

    return lambda lengths, **_: [(0, len(lengths), max(lengths))], decode


def demo_suites(args: argparse.Namespace) -> None:
    """The demo's three eval suites, grouped against one padded batch, alternating."""
    from posttrain.evals.runner import run_suite
    from posttrain.models import _decode, registry
    from posttrain.models.base import DecodingParams
    from posttrain.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-evals-"))
    store = Store.open(f"sqlite:///{tmp / 'bench.db'}")
    registry.ensure_default_models(store)
    backend = registry.load_backend(store, "smollm2-135m")
    backend.generate([[{"role": "user", "content": "Hi"}]] * 2, DecodingParams(max_new_tokens=2, temperature=0.0))
    grouped = (_decode.prefill_groups, _decode.decode)
    padded = _padded(_decode.decode)
    variants = [(mode, b) for b in args.batch_sizes for mode in ("grouped", "one padded batch")]
    seconds: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    tokens: dict[tuple[str, int], int] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for rnd in range(args.rounds):
        for mode, batch in (variants if rnd % 2 == 0 else variants[::-1]):
            _decode.prefill_groups, _decode.decode = grouped if mode == "grouped" else padded
            backend.batch_size = batch
            t0, n = time.perf_counter(), 0
            for suite, limit, new_tokens in DEMO_SUITES:
                s = run_suite(store, suite, "smollm2-135m", limit=limit, params={"max_new_tokens": new_tokens},
                              batch_size=batch, progress=False, use_cache=False, data_dir=args.data_dir, backend=backend)
                n += s.generated_tokens
            seconds[(mode, batch)].append(time.perf_counter() - t0)
            tokens[(mode, batch)] = n
            print(f"round {rnd + 1}: {mode:<17} batch {batch:>3}: {seconds[(mode, batch)][-1]:6.1f} s, {n} tokens", flush=True)
    _decode.prefill_groups, _decode.decode = grouped
    store.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    base = min(seconds[("one padded batch", args.batch_sizes[0])])
    for (mode, batch), xs in seconds.items():
        print(f"{mode:<17} batch {batch:>3}: best {min(xs):6.1f} s ({base / min(xs):.2f}x the padded batch of "
              f"{args.batch_sizes[0]}), {tokens[(mode, batch)]} tokens")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--demo-suites", action="store_true", help="the demo's eval suites, grouped vs padded")
    ap.add_argument("--data-dir", default=None, help="public data for the suites (../shared/data)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    args = ap.parse_args()
    if args.demo_suites:
        demo_suites(args)
        return

    from posttrain.evals.runner import run_suite
    from posttrain.models import registry
    from posttrain.models.base import DecodingParams
    from posttrain.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-evals-"))
    store = Store.open(f"sqlite:///{tmp / 'bench.db'}")
    registry.ensure_default_models(store)
    model = registry.EMBEDDED_MODEL if hasattr(registry, "EMBEDDED_MODEL") else "smollm2-135m"
    backend = registry.load_backend(store, model)
    # Warm-up: load the weights and run one tiny generation outside the timed runs.
    backend.generate([[{"role": "user", "content": "Hi"}]], DecodingParams(max_new_tokens=2, temperature=0.0))

    suite = bench_suite(args.cases)
    params = {"max_new_tokens": args.max_new_tokens}
    results = {}
    for label, batch in (("batched", args.batch_size), ("batch1", 1)):
        s = run_suite(store, suite, model, params=params, batch_size=batch, progress=False, use_cache=False)
        results[label] = {
            "batch_size": batch, "cases": s.n_cases, "generated_tokens": s.generated_tokens,
            "generate_seconds": round(s.generate_seconds, 2), "run_seconds": round(s.seconds, 2),
            "cases_per_s": round(s.n_cases / s.generate_seconds, 3),
            "tokens_per_s": round(s.tokens_per_s, 2),
        }
    t0 = time.perf_counter()
    cached = run_suite(store, suite, model, params=params, batch_size=args.batch_size, progress=False)
    results["cached_rerun"] = {"seconds": round(time.perf_counter() - t0, 3), "cached": cached.cached,
                               "generated": cached.generated}
    results["ratio_batched_vs_batch1"] = {
        "cases_per_s": round(results["batched"]["cases_per_s"] / results["batch1"]["cases_per_s"], 2),
        "tokens_per_s": round(results["batched"]["tokens_per_s"] / results["batch1"]["tokens_per_s"], 2),
    }
    results["config"] = {"model": model, "max_new_tokens": args.max_new_tokens, "temperature": 0.0,
                         "cpu_cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg()}
    store.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    b, one = results["batched"], results["batch1"]
    print(f"eval generation on {model}, {args.cases} cases, max_new_tokens {args.max_new_tokens}, greedy")
    print(f"{'':<14}{'cases/s':>10}{'tokens/s':>10}{'tokens':>8}{'seconds':>9}")
    for label, r in (("batch " + str(args.batch_size), b), ("batch 1", one)):
        print(f"{label:<14}{r['cases_per_s']:>10}{r['tokens_per_s']:>10}{r['generated_tokens']:>8}{r['generate_seconds']:>9}")
    print(f"ratio batched / batch 1: {results['ratio_batched_vs_batch1']['cases_per_s']}x cases/s, "
          f"{results['ratio_batched_vs_batch1']['tokens_per_s']}x tokens/s")
    print(f"cached re-run: {results['cached_rerun']['seconds']} s for {cached.cached} cached cases "
          f"({cached.generated} generated)")
    print(f"load average {os.getloadavg()[0]:.1f} on {results['config']['cpu_cores']} cores")


if __name__ == "__main__":
    main()
