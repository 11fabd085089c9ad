"""Generation speed of the embedded model beside this machine's memory-bandwidth bound, with the
local backend's own token loop ("after") and transformers' generate() ("before") side by side.

At batch 1 a decoder reads every weight once per generated token, so tokens/s can never beat
(memory bandwidth / weight bytes). At batch b the same read yields b tokens, until the CPU's
arithmetic becomes the limit (2 FLOPs per parameter per token). We measure both limits here,
on this machine, in this run, and print the measured speeds as a fraction of them. The bound
uses every core (the machine's limit); the copy bandwidth at the generation's own thread count
is printed beside it.

Then the demo's two workloads, before and after: an eval suite (16 prompts through
`generate()` at batch 8, 32 new tokens, as the eval runner calls it) and the chat server (one
streamed answer at batch 1: time to the first chunk and tokens/s). `--profile` adds where a
batch-1 step spends its time and the bandwidth the matrix products reach, alone and in the loop.

Run by hand:  .venv/bin/python benchmarks/bench_generation.py [--max-new-tokens 64] [--rounds 2] [--profile] [--json]
    [--threads 1 2]
(POSTTRAIN_TORCH_THREADS=N sets the generation's threads. `--threads 1 2` then also measures the
backend's own loop at batch 1 and 8 with each of those torch thread counts, alternating in one
process, best of `--rounds`, beside the same bounds.) The load average is printed too: on a
shared machine other processes take cores and memory bandwidth away and every figure drops, so
compare the before/after ratio (measured alternately, best of `--rounds`) more than the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe the water cycle for a child.",
    "Give me ten tips for learning to cook.",
    "Write a poem about the sea in winter.",
    "Explain why the sky is blue.",
    "Describe a day in the life of a baker.",
    "What should I pack for a week of hiking?",
]
DECODERS = ("generate", "auto")  # before, after


def copy_bandwidth(nbytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes/s moved by a large tensor copy (it reads and writes every byte: 2 × size)."""
    import torch

    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages first
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - started)
    return 2 * nbytes / best


def matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of an fp32 matrix multiply (the arithmetic ceiling at large batch)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def _convs(n: int) -> list:
    return [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(n)]


def tokens_per_second(backend, batch: int, max_new_tokens: int) -> tuple[float, int, float]:
    """(tokens/s, tokens generated, seconds) for one greedy batch of `batch` prompts."""
    from posttrain.models.base import DecodingParams

    params = DecodingParams(max_new_tokens=max_new_tokens, temperature=0)
    started = time.perf_counter()
    gens = backend.generate(_convs(batch), params)
    seconds = time.perf_counter() - started
    tokens = sum(g.completion_tokens for g in gens)
    return tokens / seconds, tokens, seconds


def stream_figures(backend, max_new_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first chunk, tokens/s, tokens) for one streamed greedy answer."""
    from posttrain.models.base import DecodingParams

    params = DecodingParams(max_new_tokens=max_new_tokens, temperature=0)
    started = time.perf_counter()
    first = None
    for chunk in backend.stream(_convs(1)[0], params):
        if first is None and chunk.text:
            first = time.perf_counter() - started
        last = chunk
    seconds = time.perf_counter() - started
    return first or seconds, last.completion_tokens / seconds, last.completion_tokens


def alternate(backend, rounds: int, run) -> dict[str, list]:
    """Run `run()` for each decoder in turn, `rounds` times, so both see the same load."""
    out: dict[str, list] = {d: [] for d in DECODERS}
    for _ in range(rounds):
        for d in DECODERS:
            backend.decoder = d
            out[d].append(run())
    backend.decoder = "auto"
    return out


def profile_batch1(backend, weight_bytes: int, tokens: int = 16) -> dict:
    """Where a batch-1 step of the default loop spends its time, and the bandwidth the matrix
    products reach: inside the loop, and alone over the model's own weight matrices."""
    import torch
    from torch.profiler import profile

    from posttrain.models.base import DecodingParams

    params = DecodingParams(max_new_tokens=tokens, temperature=0)
    with profile() as prof:
        started = time.perf_counter()
        gens = backend.generate(_convs(1), params)
        wall = time.perf_counter() - started
    events = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    total = sum(events.values())
    mm = sum(v for k, v in events.items() if k in ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise"))
    steps = gens[0].completion_tokens  # the prefill reads the weights once too, like a step
    # The same matrix products alone: one pass over every weight matrix at batch 1.
    mats = [m.weight for m in backend._model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {n: torch.randn(1, n) for n in {w.shape[1] for w in mats}}
    mat_bytes = sum(w.numel() * w.element_size() for w in mats)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(5):
            t = time.perf_counter()
            for w in mats:
                torch.nn.functional.linear(xs[w.shape[1]], w)
            best = min(best, time.perf_counter() - t)
    return {
        "tokens": steps, "wall_seconds": round(wall, 2),
        "matmul_share": round(mm / total, 3),
        "matmul_ms_per_token": round(1000 * mm / steps, 1),
        "other_ms_per_token": round(1000 * (total - mm) / steps, 1),
        "matmul_gb_s_in_loop": round(mat_bytes * steps / mm / 1e9, 1),
        "matmul_gb_s_alone": round(mat_bytes / best / 1e9, 1),
        "weight_bytes_read_per_token": mat_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternate before/after this many times; best kept")
    parser.add_argument("--profile", action="store_true", help="profile a batch-1 step of the default loop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--threads", type=int, nargs="+", help="also compare these torch thread counts (own loop)")
    args = parser.parse_args()

    import torch

    from posttrain.models.base import DecodingParams
    from posttrain.models.local import LocalBackend

    backend = LocalBackend(batch_size=8)
    started = time.perf_counter()
    backend.generate([[{"role": "user", "content": "Hi"}]], DecodingParams(max_new_tokens=4, temperature=0))
    load_seconds = time.perf_counter() - started
    model = backend._model
    params = sum(p.numel() for p in model.parameters())  # tied embeddings are counted once
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    for batch in (1, 8):  # warm both paths (the loop packs its batched weights on first use)
        for d in DECODERS:
            backend.decoder = d
            backend.generate(_convs(batch), DecodingParams(max_new_tokens=2, temperature=0))
    backend.decoder = "auto"

    # The machine's limits, with every core (generation may run on fewer: see local.py).
    run_threads = torch.get_num_threads()
    run_bandwidth = copy_bandwidth()
    torch.set_num_threads(os.cpu_count() or 1)
    bandwidth = copy_bandwidth()
    flops = matmul_flops()
    torch.set_num_threads(run_threads)
    compute_bound = flops / (2 * params)
    results = {
        "threads": run_threads,
        "load_average_1min_start": round(os.getloadavg()[0], 2),
        "parameters": params,
        "weight_bytes": weight_bytes,
        "load_and_warmup_seconds": round(load_seconds, 2),
        "copy_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "copy_bandwidth_gb_s_at_run_threads": round(run_bandwidth / 1e9, 2),
        "matmul_gflop_s": round(flops / 1e9, 1),
        "runs": [],
    }
    for batch in (1, 8):
        got = alternate(backend, args.rounds, lambda: tokens_per_second(backend, batch, args.max_new_tokens))
        bound = min(batch * bandwidth / weight_bytes, compute_bound)
        best = {d: max(got[d]) for d in DECODERS}
        results["runs"].append({
            "batch": batch, "tokens": best["auto"][1],
            "before_tokens_per_s": round(best["generate"][0], 1), "tokens_per_s": round(best["auto"][0], 1),
            "all_rounds": {d: [round(r[0], 1) for r in got[d]] for d in DECODERS},
            "bound_tokens_per_s": round(bound, 1),
            "bound_kind": "memory" if batch * bandwidth / weight_bytes <= compute_bound else "compute",
            "before_ratio": round(best["generate"][0] / bound, 3), "ratio": round(best["auto"][0] / bound, 3),
            "speedup": round(best["auto"][0] / best["generate"][0], 2),
        })
    # The demo's workloads: an eval suite at batch 8 (16 prompts, 32 tokens), the chat stream.
    evals = alternate(backend, args.rounds, lambda: tokens_per_second(backend, 16, 32))
    chat = alternate(backend, args.rounds, lambda: stream_figures(backend, args.max_new_tokens))
    results["workloads"] = {
        "eval_16x32_batch8_tokens_per_s": {d: round(max(r[0] for r in evals[d]), 1) for d in DECODERS},
        "chat_stream_first_chunk_s": {d: round(min(r[0] for r in chat[d]), 3) for d in DECODERS},
        "chat_stream_tokens_per_s": {d: round(max(r[1] for r in chat[d]), 1) for d in DECODERS},
    }
    if args.profile:
        results["profile_batch1"] = profile_batch1(backend, weight_bytes)
    if args.threads:
        by_threads: dict[int, dict[int, list[float]]] = {t: {1: [], 8: []} for t in args.threads}
        for _ in range(args.rounds):
            for t in args.threads:
                torch.set_num_threads(t)
                for batch in (1, 8):
                    by_threads[t][batch].append(tokens_per_second(backend, batch, args.max_new_tokens)[0])
        torch.set_num_threads(run_threads)
        results["threads_compared"] = [
            {"threads": t, "batch": b, "tokens_per_s": round(max(v), 1), "all_rounds": [round(x, 1) for x in v],
             "ratio": round(max(v) / min(b * bandwidth / weight_bytes, compute_bound), 3)}
            for t, per in by_threads.items() for b, v in per.items()
        ]
    results["load_average_1min_end"] = round(os.getloadavg()[0], 2)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model: SmolLM2-135M-Instruct fp32, {params / 1e6:.1f} M parameters, {weight_bytes / 1e6:.0f} MB of weights; "
          f"{run_threads} torch threads; load + warm-up {load_seconds:.1f} s; load average "
          f"{results['load_average_1min_start']} -> {results['load_average_1min_end']} on {os.cpu_count()} cores")
    print(f"machine: copy bandwidth {bandwidth / 1e9:.1f} GB/s with {os.cpu_count()} threads "
          f"({run_bandwidth / 1e9:.1f} GB/s with {run_threads}), fp32 matmul {flops / 1e9:.0f} GFLOP/s "
          f"-> compute bound {compute_bound:.0f} tok/s")
    print(f"{'batch':>5} {'before tok/s':>12} {'after tok/s':>11} {'speedup':>7} {'bound tok/s':>11} "
          f"{'before ratio':>12} {'after ratio':>11}")
    for r in results["runs"]:
        print(f"{r['batch']:>5} {r['before_tokens_per_s']:>12} {r['tokens_per_s']:>11} {r['speedup']:>7} "
              f"{r['bound_tokens_per_s']:>11} {r['before_ratio']:>12} {r['ratio']:>11}")
    w = results["workloads"]
    for key, label in (("eval_16x32_batch8_tokens_per_s", "eval suite, batch 8, tok/s"),
                       ("chat_stream_first_chunk_s", "chat stream, first chunk s"),
                       ("chat_stream_tokens_per_s", "chat stream, tok/s")):
        print(f"{label:>28}: before {w[key]['generate']}, after {w[key]['auto']}")
    for r in results.get("threads_compared", []):
        print(f"  own loop, {r['threads']} torch thread(s), batch {r['batch']}: {r['tokens_per_s']} tok/s "
              f"(rounds {r['all_rounds']}), {r['ratio']} of the bound")
    if args.profile:
        p = results["profile_batch1"]
        print(f"batch-1 profile ({p['tokens']} tokens): matrix products {100 * p['matmul_share']:.0f} % of CPU time, "
              f"{p['matmul_ms_per_token']} ms/token + {p['other_ms_per_token']} ms/token of everything else; "
              f"they read the weights at {p['matmul_gb_s_in_loop']} GB/s in the loop, {p['matmul_gb_s_alone']} GB/s alone")


if __name__ == "__main__":
    main()
