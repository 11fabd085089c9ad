"""Shared load-generation code for the HTTP benchmarks (bench_ingest.py, bench_proxy.py).

Two generators, both in a process of their own so they never share the server's GIL:
- closed loop at saturation: `wrk` (C, epoll; `apt-get install wrk`) with a Lua script, one
  thread, N keep-alive connections;
- open loop at a fixed arrival rate: `open_loop` below, a lean asyncio client on raw sockets.
  Requests leave on a fixed schedule whether or not earlier ones have answered, and latency is
  measured from the *scheduled* send time, so a server stall shows up in the tail instead of
  silently slowing the generator down (coordinated omission).
Each result carries the generator's own CPU seconds, so a reader can see what it cost the
2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class LoadResult:
    """One load phase: completed requests, their latency percentiles (ms), errors, CPU used."""

    name: str
    seconds: float
    requests: int
    errors: int
    p50: float
    p99: float
    p999: float | None = None
    generator_cpu: float = 0.0  # CPU seconds the load generator used
    server_cpu: float = 0.0  # CPU seconds the server process used during the phase
    extra: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        p999 = f" p999 {self.p999:6.2f} ms" if self.p999 is not None else ""
        kinds = self.extra.get("errors")
        errors = f"{self.errors}" + (f" {kinds}" if kinds else "")
        if self.extra.get("reconnects"):
            errors += f" (reconnects after keep-alive close: {self.extra['reconnects']})"
        return (f"{self.name:<22} {self.rps:8.0f} req/s  p50 {self.p50:6.2f} ms  p99 {self.p99:6.2f} ms{p999}"
                f"  errors {errors}  server CPU {100 * self.server_cpu / self.seconds:3.0f} %"
                f" ({1000 * self.server_cpu / max(self.requests, 1):.2f} ms/req)"
                f"  generator CPU {100 * self.generator_cpu / self.seconds:3.0f} %")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                kids = [int(x) for x in task.read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and of its live descendants (a server with
    several worker processes counts them all; Linux /proc)."""
    total = _own_cpu(pid)
    for child in _descendants(pid):
        try:
            total += _own_cpu(child)
        except OSError:  # exited meanwhile
            pass
    return total


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not healthy after {timeout} s")


def spawn(argv: list[str], port: int) -> subprocess.Popen:
    """Start a server process and wait until GET /healthz answers."""
    proc = subprocess.Popen(argv)
    try:
        wait_healthy(port, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def seed(url: str, name: str = "bench") -> tuple[str, str]:
    """A user and one completion of theirs, written through the store API: (api_key, completion_id)."""
    from datetime import datetime, timezone

    from posttrain.ids import new_id
    from posttrain.store import Store
    from posttrain.store import chat as chat_queries
    from posttrain.store.users import add_user

    store = Store.open(url)
    try:
        user, key = add_user(store, f"{name}-{new_id()[-6:]}")
        cid, conv, now = new_id(), new_id(), datetime.now(timezone.utc)
        prompt = [{"role": "user", "content": "hi"}]
        ex = chat_queries.Exchange(
            user_id=user.id, conversation_id=conv, is_new=True, title="hi", now=now,
            transcript=[{"id": new_id(), **prompt[0]},
                        {"id": new_id(), "role": "assistant", "content": "hello", "completion_id": cid}],
            completions=[{"id": cid, "request_id": new_id(), "choice_index": 0, "conversation_id": conv,
                          "user_id": user.id, "model": "none", "params": {}, "prompt": prompt,
                          "text": "hello", "memory": [], "created_at": now}],
        )
        store.write(lambda s: chat_queries.record_exchange(s, ex))
        return key, cid
    finally:
        store.close()


# -- wrk (closed loop) ------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d,'
    .. ' "read": %d, "write": %d, "timeout": %d, "p50": %d, "p99": %d, "p999": %d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_post_script(path: str, headers: dict[str, str], body_format: str) -> str:
    """A wrk Lua script POSTing `body_format` (a Lua format string with one %d: a counter that is
    unique per request, e.g. for idempotency keys)."""
    hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return f"""
wrk.method = "POST"
{hdrs}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "{path}", nil, string.format('{body_format}', counter))
end
""" + _WRK_DONE


def run_wrk(name: str, url: str, script: str, connections: int, seconds: float,
            server_pid: int | None = None) -> LoadResult:
    """Closed-loop load with wrk (one thread, `connections` keep-alive connections)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = cpu_seconds(server_pid) if server_pid else 0.0
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "-s", f.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    s1 = cpu_seconds(server_pid) if server_pid else 0.0
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    errors = r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return LoadResult(
        name=name, seconds=r["duration_us"] / 1e6, requests=r["requests"], errors=errors,
        p50=r["p50"] / 1000, p99=r["p99"] / 1000, p999=r["p999"] / 1000,
        generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        server_cpu=s1 - s0,
    )


# -- open loop (constant arrival rate) --------------------------------------------------------

class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def _request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _open_loop(host: str, port: int, path: str, headers: dict[str, str],
                     body: Callable[[int], bytes], rate: float, seconds: float):
    idle: list[_Conn] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    reconnects = [0]
    n = int(rate * seconds)
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    start = time.perf_counter() + 0.05

    async def one(i: int, due: float) -> None:
        request = _request(host, port, path, headers, body(i))
        try:
            if idle:
                conn = idle.pop()
                try:
                    status = await conn.roundtrip(request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # The server closed a connection that sat idle past its keep-alive timeout
                    # (the pool grows after a stall); resend on a fresh one, as HTTP clients do.
                    reconnects[0] += 1
                    conn = _Conn(*await asyncio.open_connection(host, port))
                    status = await conn.roundtrip(request)
            else:
                conn = _Conn(*await asyncio.open_connection(host, port))
                status = await conn.roundtrip(request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            return
        latencies.append(time.perf_counter() - due)
        if status >= 300:
            errors[f"HTTP {status}"] += 1
        idle.append(conn)

    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    for c in idle:
        c.writer.close()
    return latencies, errors, reconnects[0], time.perf_counter() - start


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q / 100 * len(sorted_ms)))]


def open_loop(name: str, port: int, path: str, headers: dict[str, str], body: Callable[[int], bytes],
              rate: float, seconds: float, server_pid: int | None = None) -> LoadResult:
    """Offer `rate` requests/s for `seconds` (POST `body(i)` to `path`), latency from the
    scheduled send time. Runs in this process (the server is another one)."""
    try:
        import uvloop  # the generator's own overhead is lower on uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    before = resource.getrusage(resource.RUSAGE_SELF)
    s0 = cpu_seconds(server_pid) if server_pid else 0.0
    latencies, errors, reconnects, took = runner(_open_loop("127.0.0.1", port, path, headers, body, rate, seconds))
    after = resource.getrusage(resource.RUSAGE_SELF)
    s1 = cpu_seconds(server_pid) if server_pid else 0.0
    ms = sorted(x * 1000 for x in latencies)
    return LoadResult(
        name=name, seconds=took, requests=len(ms), errors=sum(errors.values()),
        p50=_pct(ms, 50), p99=_pct(ms, 99), p999=_pct(ms, 99.9),
        generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        server_cpu=s1 - s0, extra={"offered": rate, "errors": dict(errors), "reconnects": reconnects},
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
