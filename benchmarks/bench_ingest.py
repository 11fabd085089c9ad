"""Feedback ingest over HTTP on loopback: POST /v1/feedback vs a no-op ceiling, same run.

    .venv/bin/python benchmarks/bench_ingest.py [--db URL] [--seconds 10] [--connections 32] [--rate 1000]
        [--workers 1 2]

The server is the real app (`create_app` on a real store, uvicorn as `posttrain serve` runs it)
in a process of its own, plus one benchmark-only route, POST /bench/noop: the same Bearer auth
and JSON body parsing as /v1/feedback, but no validation and no write. Its throughput is the
ceiling that the framework, the HTTP stack and the load generator allow on this machine; the
feedback figure is reported as a fraction of it. With `--workers 1 2` each worker count is
measured in turn, the ceiling and the feedback figure side by side with the same processes
(serve/workers.py, as `posttrain serve --workers N` runs them).

Phases: (1) closed loop at saturation with wrk, `--connections` keep-alive connections, on the
no-op route and then on /v1/feedback (thumbs, each with a unique idempotency key, so each is
one committed row); (2) open loop at `--rate` events/s offered on /v1/feedback, latency from the
scheduled send time (p50/p99/p999). Targets on 2 cores: >= 2,500 events/s at saturation and
>= 70 % of the ceiling; p99 < 10 ms at 1,000 events/s offered.

Beside each saturation phase: the CPU of this machine's PostgreSQL processes (every process
named `postgres`: the backends serving the workers, the WAL writer...; 0 on SQLite) and how busy
the whole machine was (/proc/stat), per event, to show what else shared the cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load  # noqa: E402
from fastapi import Depends, Request  # noqa: E402  (module level: the route's annotations resolve here)
from fastapi.responses import JSONResponse  # noqa: E402

from posttrain.serve.auth import current_user  # noqa: E402
from posttrain.store.users import UserInfo  # noqa: E402


def bench_app(url: str):  # noqa: ANN201
    """The product app plus the no-op ceiling route (never part of the product API)."""
    from posttrain.serve.app import create_app
    from posttrain.store import Store

    app = create_app(Store.open(url))

    @app.post("/bench/noop", status_code=201, include_in_schema=False)
    async def noop(request: Request, user: UserInfo = Depends(current_user)) -> JSONResponse:
        payload = json.loads(await request.body())
        return JSONResponse({"ok": True, "completion_id": payload.get("completion_id")}, status_code=201)

    return app


def worker_app():  # noqa: ANN201
    """App factory for each worker process (serve/workers.py passes the store URL)."""
    import os

    from posttrain.serve.workers import ENV

    url = json.loads(os.environ[ENV])["db"]
    app = bench_app(url)
    app.router.on_shutdown.append(app.state.store.close)
    gc.collect()
    gc.freeze()
    return app


def serve(url: str, port: int, workers: int = 1) -> None:
    """Run the benchmark app the way `posttrain serve [--workers N]` runs the product app."""
    import os

    import uvicorn

    if workers > 1:
        from posttrain.serve.workers import WorkerSettings, bind_socket, run_workers

        # The spawned workers import this module by name.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent),
                                                    os.environ.get("PYTHONPATH", "")])
        settings = WorkerSettings(db=url, model="", system_prompt=None, docs=False,
                                  auth_failures_per_minute=30, limits={})
        run_workers(workers, settings, bind_socket("127.0.0.1", port, reuse_port=True), app="bench_ingest:worker_app")
        return
    app = bench_app(url)
    gc.collect()  # as posttrain.serve.app.serve does before serving
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", help="store URL (default: a fresh SQLite file in a temp folder)")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=1000, help="open-loop offered events/s")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="server processes to measure, in turn")
    ap.add_argument("--serve-only", nargs=3, metavar=("URL", "PORT", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_only:
        serve(args.serve_only[0], int(args.serve_only[1]), int(args.serve_only[2]))
        return

    tmp = tempfile.TemporaryDirectory(prefix="bench-ingest-")
    url = args.db or f"sqlite:///{tmp.name}/store.db"
    key, cid = _load.seed(url)
    print(f"load average before: {_load.load_average()}  store: {url.split('?')[0]}")
    figures = {}
    for workers in args.workers:
        figures[workers] = measure(url, key, cid, workers, args)
    print(f"load average after: {_load.load_average()}")
    if args.json:
        print(json.dumps({w: {r.name: {"rps": round(r.rps), "p50_ms": r.p50, "p99_ms": r.p99, "p999_ms": r.p999,
                                       "errors": r.errors, "generator_cpu_s": round(r.generator_cpu, 2),
                                       "server_cpu_s": round(r.server_cpu, 2)}
                              for r in rs} for w, rs in figures.items()}, indent=2))
    tmp.cleanup()


def measure(url: str, key: str, cid: str, workers: int, args: argparse.Namespace) -> list[_load.LoadResult]:
    """The ceiling, saturation and open-loop phases against one server with `workers` processes."""
    port = _load.free_port()
    proc = _load.spawn([sys.executable, __file__, "--serve-only", url, str(port), str(workers)], port)
    run = f"{time.time_ns():x}"  # idempotency keys unique across runs on a reused --db
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def body(phase: str) -> str:  # a format string with one %d: the request counter
        return '{"completion_id":"%s","kind":"thumbs","value":1,"idempotency_key":"%s-%s-%%d"}' % (cid, run, phase)

    base = f"http://127.0.0.1:{port}"
    tag = f" (w{workers})"
    before = _count(url)
    try:
        _load.run_wrk("warm-up", base + "/bench/noop", _load.wrk_post_script("/bench/noop", headers, body("w")),
                      args.connections, 2, proc.pid)
        noop = _metered(lambda: _load.run_wrk("no-op ceiling" + tag, base + "/bench/noop",
                                              _load.wrk_post_script("/bench/noop", headers, body("n")),
                                              args.connections, args.seconds, proc.pid))
        print(noop.line(), flush=True)
        print(_cpu_line(noop), flush=True)
        ingest = _metered(lambda: _load.run_wrk("feedback (saturation)" + tag, base + "/v1/feedback",
                                                _load.wrk_post_script("/v1/feedback", headers, body("s")),
                                                args.connections, args.seconds, proc.pid))
        print(ingest.line(), flush=True)
        print(_cpu_line(ingest), flush=True)
        print(f"feedback / no-op ceiling with {workers} worker(s): {100 * ingest.rps / noop.rps:.0f} %", flush=True)
        open_body = body("o")
        opened = _load.open_loop(
            f"feedback @ {args.rate:g}/s" + tag, port, "/v1/feedback", {"Authorization": f"Bearer {key}"},
            lambda i: (open_body % i).encode(), args.rate, args.seconds, proc.pid)
        print(opened.line(), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    stored = _count(url) - before
    expected = ingest.requests + opened.requests - opened.errors
    print(f"stored events: {stored} (acknowledged by the two feedback phases: >= {expected})")
    return [noop, ingest, opened]


_TICK = os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds used so far by every live process named `postgres` (this machine's server)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" not in text:
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _machine_busy() -> float:
    """CPU seconds (all cores) the machine spent not idle so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICK


def _metered(run):  # noqa: ANN001, ANN202
    """run() -> LoadResult, with the PostgreSQL and whole-machine CPU seconds of the phase added."""
    pg, busy = _postgres_cpu(), _machine_busy()
    r = run()
    r.extra["postgres_cpu"] = _postgres_cpu() - pg
    r.extra["machine_busy"] = _machine_busy() - busy
    return r


def _cpu_line(r: _load.LoadResult) -> str:
    n = max(r.requests, 1)
    return (f"    CPU per request: server {1000 * r.server_cpu / n:.2f} ms, PostgreSQL processes "
            f"{1000 * r.extra['postgres_cpu'] / n:.2f} ms ({100 * r.extra['postgres_cpu'] / r.seconds:.0f} % of a core), "
            f"generator {1000 * r.generator_cpu / n:.2f} ms; machine busy "
            f"{100 * r.extra['machine_busy'] / r.seconds:.0f} % of {os.cpu_count()} cores")


def _count(url: str) -> int:
    from posttrain.store import Store
    from posttrain.store import feedback as feedback_queries

    store = Store.open(url, upgrade=False)
    try:
        with store.session() as s:
            return feedback_queries.count_events(s)
    finally:
        store.close()


if __name__ == "__main__":
    main()
