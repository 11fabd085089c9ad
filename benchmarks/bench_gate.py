"""The release gate on the embedded model: per-model cost of the default policy, then a fully
cached decision, beside the reference figures the issue sets (15 min per model, "seconds").

1. cold, per model: every suite of the default policy (its limits and decoding overrides) run
   once on SmolLM2-135M-Instruct, timed suite by suite (tokens, seconds);
2. `--full`: the whole gate, a second registration of the same weights as candidate against the
   baseline (the candidate's answers are generated, the baseline's come from the cache of step 1),
   printing each metric's n, margin and detectable regression (the power table of docs/gate.md);
3. `--full`: the same gate again, every generation cached: the decision time.

Run by hand:  .venv/bin/python benchmarks/bench_gate.py [--data-dir ../shared/data] [--full] [--json]
The load average is printed: on a shared machine every figure scales with it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

BUDGET_S = 15 * 60  # the per-model bound
CACHED_REFERENCE_S = 10.0  # "a fully cached gate decides in a few seconds"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--full", action="store_true", help="also run the whole gate, cold and cached")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from posttrain.evals.lifecycle import resolve_suite
    from posttrain.evals.runner import run_suite
    from posttrain.gate import load_policy, run_gate
    from posttrain.models import registry
    from posttrain.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    store = Store.open(f"sqlite:///{tmp / 'bench.db'}")
    registry.ensure_default_models(store)
    base = "smollm2-135m"
    registry.register_model(store, "smollm2-135m-copy", "local", {})
    pol = load_policy()
    out: dict = {"suites": {}, "load_start": os.getloadavg()}
    t_all = time.perf_counter()
    for name in sorted({s for m in pol.metrics for s in m.suites}):
        try:
            suite = resolve_suite(store, name)
        except KeyError:
            out["suites"][name] = {"error": "not available"}
            continue
        spec = pol.suite_run(name)
        s = run_suite(store, suite, base, limit=spec.limit, params=spec.params, progress=False,
                      data_dir=args.data_dir if suite.needs_data_dir else None)
        out["suites"][name] = {"cases": s.n_cases, "tokens": s.generated_tokens, "seconds": round(s.seconds, 1),
                               "tokens_per_s": round(s.tokens_per_s, 1)}
        if not args.json:
            print(f"{name:<26} {s.n_cases:>4} cases {s.generated_tokens:>6} tokens {s.seconds:>7.1f} s "
                  f"({s.tokens_per_s:.1f} tok/s) load {os.getloadavg()[0]:.1f}", flush=True)
    per_model = time.perf_counter() - t_all
    out["per_model_s"] = round(per_model, 1)
    out["ratio_vs_budget"] = round(per_model / BUDGET_S, 2)
    if not args.json:
        print(f"per model: {per_model:.0f} s = {per_model / BUDGET_S:.2f}x the 15-min budget "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    if args.full:
        t0 = time.perf_counter()
        cold = run_gate(store, "smollm2-135m-copy", base, data_dir=args.data_dir)
        out["gate_cold_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cached = run_gate(store, "smollm2-135m-copy", base, data_dir=args.data_dir)
        out["gate_cached_s"] = round(time.perf_counter() - t0, 2)
        out["ratio_cached_vs_reference"] = round(out["gate_cached_s"] / CACHED_REFERENCE_S, 2)
        out["power"] = [{k: m[k] for k in ("metric", "n", "margin", "mdr", "underpowered", "action")}
                        for m in cached["metrics"]]
        out["status"] = cold["status"], cached["status"]
        if not args.json:
            print(f"gate cold (candidate generated): {out['gate_cold_s']} s; fully cached: {out['gate_cached_s']} s "
                  f"({out['ratio_cached_vs_reference']}x the {CACHED_REFERENCE_S:g} s reference)")
            for m in out["power"]:
                mdr = "inf" if m["mdr"] is None else f"{m['mdr']:.3f}"
                print(f"  {m['metric']:<44} {m['action']:<5} n={m['n']:<4} margin {m['margin']:<6g} detectable {mdr}"
                      f"{'  UNDERPOWERED' if m['underpowered'] else ''}")
            print(f"  blocking: {[b['metric'] for b in cached['blocking']]}")
    out["load_end"] = os.getloadavg()
    out["cpu_cores"] = len(os.sched_getaffinity(0))
    store.close()
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
