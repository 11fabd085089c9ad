"""The release gate: what the default policy costs per model on the embedded model, and how
fast a fully cached gate decides — beside the issue's references (15 min per model, "a few
seconds").

1. Per-model cost. Every suite of the default policy (its limits and decoding overrides) on
   SmolLM2-135M-Instruct. `--sample N` (default 8) runs the first N cases of each suite and
   projects the suite's tokens from tokens per case (greedy decoding: the same cases give the
   same answers, so the count does not depend on load); `--sample 0` runs every case. The time
   is given at the tokens/s measured in this run and at `--ref-tok-s` (default 95.7: batch-8
   generation on a quiet machine, BENCHMARKS.md "Local generation").
2. Cached decision (`--tiny DIR`): the whole default policy — every suite at its full size — on
   the tiny random model against a second registration of it, with every answer capped at 16
   tokens so the cold pass is quick; then the same gate again with everything cached. The
   second figure is the decision time (grading, regrading pooled detectors, statistics,
   storing): it depends on the number of cases, not on the model.

Run by hand:  .venv/bin/python benchmarks/bench_gate.py [--data-dir ../shared/data] [--sample 8]
              [--tiny .cache/models/tiny-llama-h8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

BUDGET_S = 15 * 60
CACHED_REFERENCE_S = 10.0


def per_model(store, data_dir: str, sample: int) -> dict:
    from posttrain.evals.lifecycle import resolve_suite
    from posttrain.evals.runner import load_cases, run_suite
    from posttrain.gate import load_policy

    pol = load_policy()
    out: dict = {"suites": {}}
    tokens = gen_s = 0.0
    for name in sorted({s for m in pol.metrics for s in m.suites}):
        try:
            suite = resolve_suite(store, name)
        except KeyError:
            out["suites"][name] = {"error": "not available"}
            continue
        spec = pol.suite_run(name)
        ddir = spec.resolve_data_dir(data_dir) if suite.needs_data_dir else None
        size = len(load_cases(suite, ddir, pol.seed, spec.limit))
        n = size if sample <= 0 else min(sample, size)
        s = run_suite(store, suite, "smollm2-135m", limit=n, params=spec.params, progress=False, data_dir=ddir)
        projected = s.generated_tokens / n * size
        tokens += projected
        gen_s += s.generate_seconds / n * size
        out["suites"][name] = {"cases": size, "sampled": n, "tokens": s.generated_tokens,
                               "projected_tokens": round(projected), "tok_s": round(s.tokens_per_s, 1)}
    out["projected_tokens"] = round(tokens)
    out["measured_tok_s"] = round(tokens / gen_s, 1) if gen_s else None
    out["projected_s_measured"] = round(gen_s)
    return out


def cached_decision(store, tiny: str, data_dir: str) -> dict:
    from posttrain.gate import DEFAULT_POLICY, run_gate
    from posttrain.models.registry import register_model

    for name in ("tiny-a", "tiny-b"):
        register_model(store, name, "local", {"path": tiny})
    text = re.sub(r"max_new_tokens = \d+", "max_new_tokens = 16", DEFAULT_POLICY.read_text())
    text = re.sub(r"^conversations = \d+", "conversations = 0", text, flags=re.M)
    policy = Path(tempfile.mkdtemp(prefix="bench-gate-policy-")) / "policy.toml"
    policy.write_text(text)
    t0 = time.perf_counter()
    cold = run_gate(store, "tiny-b", "tiny-a", policy=policy, data_dir=data_dir)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = run_gate(store, "tiny-b", "tiny-a", policy=policy, data_dir=data_dir)
    warm_s = time.perf_counter() - t0
    return {"cold_s": round(cold_s, 1), "cached_s": round(warm_s, 2), "cases": sum(m["n"] for m in warm["metrics"]),
            "cached_timings": warm["timings"], "status": warm["status"],
            "ratio_vs_reference": round(warm_s / CACHED_REFERENCE_S, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--sample", type=int, default=8)
    ap.add_argument("--ref-tok-s", type=float, default=95.7)
    ap.add_argument("--tiny", default=None, help="tiny model folder for the cached-decision figure")
    ap.add_argument("--skip-model", action="store_true", help="only the cached-decision figure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from posttrain.models import registry
    from posttrain.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    store = Store.open(f"sqlite:///{tmp / 'bench.db'}")
    registry.ensure_default_models(store)
    out: dict = {"load_start": os.getloadavg(), "cpu_cores": len(os.sched_getaffinity(0))}
    if not args.skip_model:
        pm = per_model(store, args.data_dir, args.sample)
        pm["projected_s_reference"] = round(pm["projected_tokens"] / args.ref_tok_s)
        pm["ratio_reference_vs_budget"] = round(pm["projected_s_reference"] / BUDGET_S, 2)
        pm["ratio_measured_vs_budget"] = round(pm["projected_s_measured"] / BUDGET_S, 2)
        out["per_model"] = pm
    if args.tiny:
        out["cached_decision"] = cached_decision(store, args.tiny, args.data_dir)
    out["load_end"] = os.getloadavg()
    store.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "per_model" in out:
        pm = out["per_model"]
        print(f"{'suite':<26}{'cases':>6}{'sampled':>8}{'tokens':>8}{'projected':>10}{'tok/s':>7}")
        for name, s in pm["suites"].items():
            if "error" in s:
                print(f"{name:<26} {s['error']}")
                continue
            print(f"{name:<26}{s['cases']:>6}{s['sampled']:>8}{s['tokens']:>8}{s['projected_tokens']:>10}{s['tok_s']:>7}")
        print(f"per model: {pm['projected_tokens']} tokens; at the measured {pm['measured_tok_s']} tok/s "
              f"{pm['projected_s_measured']} s ({pm['ratio_measured_vs_budget']}x the 15-min budget); at "
              f"{args.ref_tok_s} tok/s {pm['projected_s_reference']} s ({pm['ratio_reference_vs_budget']}x)")
    if "cached_decision" in out:
        c = out["cached_decision"]
        print(f"default policy on the tiny model ({c['cases']} paired cases): cold {c['cold_s']} s, fully cached "
              f"{c['cached_s']} s ({c['ratio_vs_reference']}x the {CACHED_REFERENCE_S:g} s reference) {c['cached_timings']}")
    print(f"load average {out['load_start'][0]:.1f} -> {out['load_end'][0]:.1f} on {out['cpu_cores']} cores")


if __name__ == "__main__":
    main()
