"""Export throughput beside a plain `sqlite3` SELECT of the same rows, in the same run; and the
cost of the key check on the server's auth hot path.

    .venv/bin/python benchmarks/bench_export.py [--events 50000] [--users 2000] [--near-dup-rows 2000]
    .venv/bin/python benchmarks/bench_export.py --events 1000000     # the issue's 1 M events

Seeds a fresh SQLite store (WAL, as `posttrain serve` uses it) with `--events` feedback events:
each completion gets a thumbs (up or down) and an implicit `copy` signal, spread over `--users`
users and one conversation per completion. Then, each in a process of its own (so peak RSS is
that step's own):
- `select`: the plain reference, Python's `sqlite3` module running the join the export streams
  (events with their completion and user, in time order), fetching every row;
- `export feedback`: every event as stored (consent and time window only);
- `export kto`: the thumbs as prompt/completion/label through the full curation (consent,
  rules, decontamination against every built-in suite, exact de-duplication, the 10 % per-user
  cap, the split by user) with near-duplicates off;
- `export sft + near-dup`: the MiniLM near-duplicate pass on `--near-dup-rows` thumbs-up rows.
Each prints rows/s and peak RSS; ratios are to the SELECT. Then the key check: KeyCache.user()
for a cached key (what every authenticated request pays), with the invalidation check and with
it bypassed, idle and while another connection commits 1,000 times a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

SELECT = """
SELECT fe.id, fe.kind, fe.value, fe.reasons, fe.created_at, u.consent, a.prompt, a.text,
       a.custom_instructions, a.memory, a.conversation_id, b.text
FROM feedback_events fe JOIN completions a ON a.id = fe.completion_id JOIN users u ON u.id = fe.user_id
LEFT JOIN completions b ON b.id = fe.other_completion_id ORDER BY fe.created_at, fe.id
"""


def seed(url: str, events: int, users: int) -> None:
    from sqlalchemy import insert

    from posttrain.ids import new_id
    from posttrain.store import Completion, Conversation, FeedbackEvent, Store
    from posttrain.store.users import add_user

    store = Store.open(url)
    ids = [add_user(store, f"bench{i}")[0].id for i in range(users)]
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    n_comp = events // 2
    chunk = 20_000
    for start in range(0, n_comp, chunk):
        convs, comps, evs = [], [], []
        for i in range(start, min(n_comp, start + chunk)):
            uid = ids[i % users]
            now = t0 + timedelta(seconds=i)
            conv, cid = new_id(), new_id()
            q = f"Question {i}: how long is river number {i}?"
            convs.append({"id": conv, "user_id": uid, "title": q[:20], "transcript_hash": None, "created_at": now, "updated_at": now})
            comps.append({"id": cid, "request_id": new_id(), "choice_index": 0, "conversation_id": conv, "user_id": uid,
                          "model": "m", "params": {}, "prompt": [{"role": "user", "content": q}],
                          "text": f"River {i} is {i % 997} km long.", "finish_reason": "stop", "prompt_tokens": 0,
                          "completion_tokens": 0, "latency_ms": 0.0, "custom_instructions": None, "memory": [], "created_at": now})
            for kind, value, signal in (("thumbs", 1 if i % 3 else -1, None), ("implicit", None, "copy")):
                evs.append({"id": new_id(), "user_id": uid, "completion_id": cid, "kind": kind, "value": value,
                            "reasons": [], "comment": None, "other_completion_id": None, "positions": None,
                            "edited_text": None, "signal": signal, "idempotency_key": None, "created_at": now})

        def write(s, convs=convs, comps=comps, evs=evs):  # noqa: ANN001, ANN202
            s.execute(insert(Conversation.__table__), convs)
            s.execute(insert(Completion.__table__), comps)
            s.execute(insert(FeedbackEvent.__table__), evs)

        store.write(write)
    store.close()


def child(step: str, url: str, out_dir: str, extra: int) -> dict:
    """One measured step in this (fresh) process."""
    started = time.perf_counter()
    if step == "select":
        conn = sqlite3.connect(url.split("///", 1)[1])
        rows = 0
        for _ in conn.execute(SELECT):
            rows += 1
        conn.close()
    else:
        from posttrain.datasets import export
        from posttrain.store import Store

        store = Store.open(url)
        kind = {"export-feedback": "feedback", "export-kto": "kto", "export-near": "sft"}[step]
        opts = {"near_duplicates": step == "export-near"}
        if step == "export-near":
            opts.update(until=(datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=extra)).isoformat())
        report = export(store, kind, Path(out_dir) / f"{step}.jsonl", **opts)
        store.close()
        rows = report["candidates"]
        started_rows = report["rows"]
    seconds = time.perf_counter() - started
    out = {"step": step, "rows_read": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if step != "select":
        out["rows_written"] = started_rows
    return out


def run_child(step: str, url: str, out_dir: str, extra: int = 0) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, url, out_dir, str(extra)],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def key_check(url: str, calls: int = 20_000) -> dict:
    """µs per KeyCache.user() call on a cached key, with and without the invalidation check."""
    from posttrain.serve.auth import KeyCache
    from posttrain.store import Store, invalidation
    from posttrain.store.users import add_user

    store = Store.open(url)
    _, key = add_user(store, "keybench")
    cache = KeyCache(store)
    other = Store.open(url)
    stop = threading.Event()

    def writer() -> None:  # another connection committing 1,000 times a second
        while not stop.is_set():
            other.write(lambda s: invalidation.bump(s, "bench-noise"))
            time.sleep(0.001)

    class NoCheck:  # the cache as it was: no version check
        def version(self, _topic: str) -> int:
            return 0

    async def per_call() -> float:
        await cache.user(key)  # warm
        t = time.perf_counter()
        for _ in range(calls):
            await cache.user(key)
        return (time.perf_counter() - t) / calls * 1e6

    out = {}
    real = cache._watch
    for label, busy in (("idle", False), ("1000 commits/s elsewhere", True)):
        thread = threading.Thread(target=writer, daemon=True) if busy else None
        if thread:
            stop.clear()
            thread.start()
        cache._watch, cache._version = real, real.version("users")
        with_check = asyncio.run(per_call())
        cache._watch, cache._version = NoCheck(), 0
        without = asyncio.run(per_call())
        if thread:
            stop.set()
            thread.join()
        out[label] = {"with_check_us": round(with_check, 2), "without_check_us": round(without, 2),
                      "added_us": round(with_check - without, 2)}
    other.close()
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--near-dup-rows", type=int, default=2_000, help="thumbs-up rows for the MiniLM pass")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.child[2], int(args.child[3]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["POSTTRAIN_HOME"] = str(Path(tmp) / "home")
        url = f"sqlite:///{tmp}/bench.db"
        t = time.perf_counter()
        seed(url, args.events, args.users)
        print(f"seeded {args.events} events ({args.users} users) in {time.perf_counter() - t:.1f} s; "
              f"load average {os.getloadavg()[0]:.2f}")
        ref = run_child("select", url, tmp)
        results = [ref] + [run_child(s, url, tmp) for s in ("export-feedback", "export-kto")]
        # near-dup: the first rows up to --near-dup-rows thumbs-up rows (2 of 3 thumbs are up)
        results.append(run_child("export-near", url, tmp, extra=int(args.near_dup_rows * 1.5)))
        print(f"{'step':<18} {'rows read':>10} {'written':>9} {'s':>7} {'rows/s':>9} {'vs SELECT':>9} {'peak RSS':>9}")
        for r in results:
            print(f"{r['step']:<18} {r['rows_read']:>10} {r.get('rows_written', '-'):>9} {r['seconds']:>7} "
                  f"{r['rows_per_s']:>9} {r['rows_per_s'] / ref['rows_per_s']:>8.2f}x {r['peak_rss_mb']:>7} MB")
        checks = key_check(url)
        for label, c in checks.items():
            print(f"key check, {label}: {c['with_check_us']} µs/call with the invalidation check, "
                  f"{c['without_check_us']} without (+{c['added_us']} µs)")
        print(f"load average after {os.getloadavg()[0]:.2f}")
        print(json.dumps({"steps": results, "key_check": checks}))


if __name__ == "__main__":
    main()
