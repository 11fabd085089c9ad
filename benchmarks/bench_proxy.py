"""Chat proxy overhead: an OpenAI-compatible upstream called directly, through a bare
pass-through proxy (the floor), and through posttrain at 1, 2, 4... worker processes.

    .venv/bin/python benchmarks/bench_proxy.py [--delay-ms 50 0] [--workers 1 2] [--seconds 10]
        [--connections 16] [--db URL] [--profile DIR] [--compare-src DIR [--rounds N]]

The upstream is a fake OpenAI-compatible server in its own process: a raw asyncio protocol
that answers every POST with the same short chat.completion after `--delay-ms` (0 = as fast as
it can; a positive delay stands for the model's generation time). No model runs: the point is
what posttrain adds.

The floor is the least a Python gateway can do: FastAPI + an httpx.AsyncClient, parsing the
body and forwarding it, with no auth and no logging, run by uvicorn as `posttrain serve` runs.
posttrain runs as the real `posttrain serve --model upstream --workers N`, with the upstream
registered as a model of backend `openai`, so every proxied request also resolves the user,
creates a conversation and commits the exchange (completion row + transcript) before it answers.
The per-user fair-share limits are turned off (`--user-concurrency 0 --user-tokens-per-minute
0`): the load is one user with 16 connections, which those limits exist to stop.

The same wrk load (closed loop, `--connections` keep-alive connections) goes to each in turn;
the figures are the throughput kept (% of direct), the added p50/p99 latency, and the server
CPU per request (all of a server's processes counted) as a multiple of the floor's. Targets
(issue 13): CPU per logged exchange <= 1.5x the floor's; >= 95 % of direct throughput at
--workers 2 and a 50 ms upstream. `--profile DIR` records a py-spy profile of each posttrain
phase (pip install py-spy) and prints its top functions. `--compare-src DIR` measures a change
side by side: each posttrain phase runs first from the `src` folder DIR of another checkout
(e.g. `git archive HEAD src | tar -x -C /tmp/base`, then DIR=/tmp/base/src), labelled "(compare)",
then from this one; `--rounds N` repeats the posttrain phases N times, alternating.
`--aiohttp-floor` adds, for reference, the same bare proxy with aiohttp as its upstream client
(posttrain's server-side client); the targets stay against the httpx floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load  # noqa: E402
from fastapi import Request  # noqa: E402  (module level: the floor's route annotations resolve here)
from fastapi.responses import JSONResponse  # noqa: E402

_ANSWER = json.dumps({
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}).encode()
_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
             + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER)


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one fixed answer per request (after `delay` seconds)."""

    delay = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)


def run_upstream(port: int, delay: float) -> None:
    """Serve the fake upstream (GET /healthz answers too: any request gets the fixed answer)."""
    import uvloop

    _Upstream.delay = delay

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def _chat_script(key: str | None, model: str) -> str:
    """A new one-message conversation per request (the counter makes each prompt unique)."""
    body = json.dumps({"model": model, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "What is the capital of France? (%d)"}]})
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    return _load.wrk_post_script("/v1/chat/completions", headers, body)


def bare_app(upstream_url: str):  # noqa: ANN201
    """The floor: a pass-through proxy with FastAPI + httpx, no auth, no logging."""
    import httpx
    from fastapi import FastAPI

    app = FastAPI()
    client = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        r = await client.post(upstream_url, json=body)
        return JSONResponse(r.json(), status_code=r.status_code)

    return app


def bare_aiohttp_app(upstream_url: str):  # noqa: ANN201
    """The floor with the upstream client posttrain uses (aiohttp), for reference only: the
    targets are against `bare_app`."""
    import aiohttp
    from fastapi import FastAPI

    app = FastAPI()
    sessions: list[aiohttp.ClientSession] = []

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)))
        async with sessions[0].post(upstream_url, json=body) as r:
            return JSONResponse(json.loads(await r.read()), status_code=r.status)

    return app


def run_bare(port: int, upstream_port: int, client: str = "httpx") -> None:
    import gc

    import uvicorn

    make = bare_aiohttp_app if client == "aiohttp" else bare_app
    app = make(f"http://127.0.0.1:{upstream_port}/v1/chat/completions")
    gc.collect()  # as `posttrain serve` does
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _profiled(pid: int, seconds: float, out: Path):  # noqa: ANN202
    """Start py-spy on `pid` and its worker processes for `seconds` (collapsed stacks)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
                             "--gil", "--rate", "200", "--duration", str(int(seconds)), "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(collapsed: Path, n: int = 15) -> list[str]:
    """The functions holding the most samples (inclusive and self) of a py-spy raw profile."""
    from collections import Counter

    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")[1:]]  # drop the process/thread frame
        for f in set(frames):
            inclusive[f] += c
        if frames:
            own[frames[-1]] += c
    lines = [f"    {total} samples; top by inclusive share:"]
    lines += [f"      {100 * c / total:5.1f} %  {f}" for f, c in inclusive.most_common(n)]
    lines += ["    top by self share:"]
    lines += [f"      {100 * c / total:5.1f} %  {f}" for f, c in own.most_common(n)]
    return lines


def _start_posttrain(url: str, port: int, model: str, workers: int, src: str | None = None):  # noqa: ANN202
    exe = Path(sys.executable).with_name("posttrain")
    # `env` execs the server, so the pid measured is the server's own.
    prefix = ["env", f"PYTHONPATH={Path(src).resolve()}"] if src else []
    return _load.spawn([*prefix, str(exe), "serve", "--db", url, "--port", str(port), "--model", model,
                        "--workers", str(workers), "--user-concurrency", "0", "--user-tokens-per-minute", "0"], port)


def measure(delay_ms: float, args: argparse.Namespace) -> dict[str, _load.LoadResult]:
    from posttrain.models.registry import register_model
    from posttrain.store import Store

    tmp = tempfile.TemporaryDirectory(prefix="bench-proxy-")
    url = args.db or f"sqlite:///{tmp.name}/store.db"
    up_port, bare_port = _load.free_port(), _load.free_port()
    upstream = _load.spawn([sys.executable, __file__, "--upstream-only", str(up_port), str(delay_ms)], up_port)
    bare = _load.spawn([sys.executable, __file__, "--bare-only", str(bare_port), str(up_port)], bare_port)
    bare_aio = None
    if args.aiohttp_floor:
        aio_port = _load.free_port()
        bare_aio = _load.spawn([sys.executable, __file__, "--bare-only", str(aio_port), str(up_port), "aiohttp"], aio_port)
    key, _ = _load.seed(url)
    store = Store.open(url)
    from posttrain.ids import new_id

    name = f"upstream-{delay_ms:g}ms-{new_id()[-6:].lower()}"  # unique on a reused --db
    register_model(store, name, "openai", {"base_url": f"http://127.0.0.1:{up_port}/v1", "model": "fake"})
    store.close()
    path = "/v1/chat/completions"
    results: dict[str, _load.LoadResult] = {}

    def phase(label: str, port: int, k: str | None, pid: int, profile: str | None = None) -> _load.LoadResult:
        _load.run_wrk("warm-up", f"http://127.0.0.1:{port}{path}", _chat_script(k, name), args.connections, 2)
        spy = out = None
        if profile and args.profile:
            out = Path(args.profile) / f"{profile}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            spy = _profiled(pid, args.seconds, out)
        r = _load.run_wrk(label, f"http://127.0.0.1:{port}{path}", _chat_script(k, name), args.connections,
                          args.seconds, pid)
        print(r.line(), flush=True)
        if spy is not None:
            spy.wait(timeout=60)
            if out.exists():
                print("\n".join(top_functions(out)), flush=True)
        results[label] = r
        return r

    try:
        direct = phase(f"upstream direct ({delay_ms:g} ms)", up_port, None, upstream.pid)
        floor = phase("bare proxy (floor)", bare_port, None, bare.pid, profile=f"bare-{delay_ms:g}ms")
        bare.terminate()
        bare.wait(timeout=30)
        if bare_aio is not None:
            phase("bare proxy (aiohttp)", aio_port, None, bare_aio.pid)
            bare_aio.terminate()
            bare_aio.wait(timeout=30)
        sources = [(" (compare)", args.compare_src), ("", None)] if args.compare_src else [("", None)]
        for rnd in range(args.rounds):
            for workers in args.workers:
                for tag, src in sources:
                    pt_port = _load.free_port()
                    proxy = _start_posttrain(url, pt_port, name, workers, src)
                    suffix = f" #{rnd + 1}" if args.rounds > 1 else ""
                    try:
                        phase(f"posttrain{tag} --workers {workers}{suffix}", pt_port, key, proxy.pid,
                              profile=f"posttrain{'-compare' if src else ''}-w{workers}-{delay_ms:g}ms{suffix.strip()}")
                    finally:
                        proxy.terminate()
                        proxy.wait(timeout=30)
    finally:
        for p in (bare, bare_aio, upstream):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        tmp.cleanup()

    def per_req(r: _load.LoadResult) -> float:
        return 1000 * r.server_cpu / max(r.requests, 1)

    print(f"  bare proxy: {100 * floor.rps / direct.rps:.1f} % of direct, {per_req(floor):.2f} ms CPU per request")
    aio = results.get("bare proxy (aiohttp)")
    if aio is not None:
        print(f"  bare proxy (aiohttp, reference only): {100 * aio.rps / direct.rps:.1f} % of direct,"
              f" {per_req(aio):.2f} ms CPU per request = {per_req(aio) / per_req(floor):.2f}x the floor's")
    for label, r in results.items():
        if not label.startswith("posttrain"):
            continue
        print(f"  {label}: {100 * r.rps / direct.rps:.1f} % of direct (bare proxy {100 * floor.rps / direct.rps:.1f} %);"
              f" added latency p50 {r.p50 - direct.p50:+.2f} ms, p99 {r.p99 - direct.p99:+.2f} ms;"
              f" CPU per logged exchange {per_req(r):.2f} ms = {per_req(r) / per_req(floor):.2f}x the bare proxy's"
              + (f" ({per_req(r) / per_req(aio):.2f}x the aiohttp one's)" if aio is not None else ""))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, nargs="+", default=[50],
                    help="upstream answer delays to measure (stand-in for generation time)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="posttrain worker processes to measure")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--db", help="store URL (default: a fresh SQLite file per delay)")
    ap.add_argument("--profile", metavar="DIR", help="record a py-spy profile of each proxy phase into DIR")
    ap.add_argument("--compare-src", metavar="DIR", help="also run posttrain from this src folder, alternating")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the posttrain phases, alternating (with --compare-src)")
    ap.add_argument("--upstream-only", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    ap.add_argument("--aiohttp-floor", action="store_true",
                    help="also measure the bare proxy with aiohttp as its upstream client (reference only)")
    ap.add_argument("--bare-only", nargs="+", metavar="PORT UPSTREAM_PORT [CLIENT]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream_only:
        run_upstream(int(args.upstream_only[0]), float(args.upstream_only[1]) / 1000)
        return
    if args.bare_only:
        run_bare(int(args.bare_only[0]), int(args.bare_only[1]), *args.bare_only[2:])
        return
    print(f"load average before: {_load.load_average()}  store: {(args.db or 'sqlite (temp file)').split('?')[0]}")
    for delay in args.delay_ms:
        measure(delay, args)
    print(f"load average after: {_load.load_average()}")


if __name__ == "__main__":
    main()
