"""Durability under SIGKILL: every feedback write the server acknowledged survives the process
being killed mid-load, exactly once, and replaying every key afterwards stores no duplicate.

The real `posttrain serve` runs as a subprocess on loopback (SQLite WAL, and PostgreSQL when
POSTTRAIN_TEST_DATABASE_URL is set); 16 concurrent httpx clients post thumbs, each with its own
idempotency key; the server is SIGKILLed after about a second of load and restarted on the
same database. The same again with `--workers 2`: both worker processes take the load (each
commits through its own writer), and all of them and their parent are SIGKILLed at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
from sqlalchemy import select

from posttrain.ids import new_id
from posttrain.store import FeedbackEvent, Store
from posttrain.store import chat as chat_queries
from posttrain.store.users import add_user

CLIENTS = 16
PER_CLIENT = 5_000  # a bound only: the kill comes first (a few hundred per client here)
KILL_AFTER = 1.0  # seconds of load before SIGKILL


def _seed(url: str) -> tuple[str, str, str]:
    """A user, their API key and one completion of theirs, written through the store's API."""
    store = Store.open(url)
    try:
        user, key = add_user(store, "durable")
        cid, conv = new_id(), new_id()
        now = datetime.now(timezone.utc)
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
        return user.id, key, cid
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(url: str, port: int, log: Path, *args: str) -> subprocess.Popen:
    """`posttrain serve --db url --port port *args`, once it answers and its model is loaded."""
    exe = Path(sys.executable).with_name("posttrain")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from posttrain.cli import main; main()"]
    proc = subprocess.Popen(cmd + ["serve", "--db", url, "--port", str(port), *args],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    # `posttrain serve` loads its default model at start-up (torch and the weights: a few
    # seconds, far more on a busy machine).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            # Ready once the default model's weights are in: loading them in the background
            # competes with the load this test puts on the server.
            if health.status_code == 200 and health.json().get("model", "ready") == "ready":
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not come up in 120 s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (graceful: workers too), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(x) for x in task.read_text().split()]
        except OSError:
            pass
    return kids


def _workers(pid: int) -> list[int]:
    """The server processes among the children (not multiprocessing's resource tracker)."""
    out = []
    for kid in _children(pid):
        try:
            if b"resource_tracker" not in Path(f"/proc/{kid}/cmdline").read_bytes():
                out.append(kid)
        except OSError:
            pass
    return out


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the server and every worker process at once (the parent first: no restarts)."""
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _load_then_kill(base: str, key: str, cid: str, proc: subprocess.Popen, kill=None):
    """Post thumbs from CLIENTS clients until the server dies (`kill()`, default: SIGKILL
    `proc`). Returns (acked key -> event id, every key sent)."""
    acked: dict[str, str] = {}
    sent: list[str] = []
    killed = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        # Send until the kill (the cap only bounds a run whose kill never comes).
        for i in range(PER_CLIENT):
            if killed.is_set():
                return
            k = f"c{n}-{i}"
            sent.append(k)
            try:
                r = await http.post("/v1/feedback", json={
                    "completion_id": cid, "kind": "thumbs", "value": 1 if i % 2 else -1, "idempotency_key": k})
            except httpx.HTTPError:
                if killed.is_set():
                    return
                continue
            assert r.status_code == 201, r.text  # every key is new: anything else is a bug
            # An answer that arrives after the kill was sent still counts: it was acknowledged.
            acked[k] = r.json()["id"]

    async def killer() -> None:
        await asyncio.sleep(KILL_AFTER)
        (kill or (lambda: proc.send_signal(signal.SIGKILL)))()
        killed.set()

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 limits=limits, timeout=10) as http:
        await asyncio.gather(killer(), *(client(n, http) for n in range(CLIENTS)))
    proc.wait(timeout=10)
    return acked, sent


async def _replay(base: str, key: str, cid: str, keys: list[str]) -> dict[str, tuple[int, str]]:
    sem = asyncio.Semaphore(CLIENTS)
    out: dict[str, tuple[int, str]] = {}

    async def one(http: httpx.AsyncClient, k: str) -> None:
        async with sem:
            r = await http.post("/v1/feedback", json={
                "completion_id": cid, "kind": "thumbs", "value": 1, "idempotency_key": k})
            out[k] = (r.status_code, r.json().get("id"))

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        await asyncio.gather(*(one(http, k) for k in keys))
    return out


def _stored(url: str, user_id: str) -> list[tuple[str, str]]:
    store = Store.open(url, upgrade=False)
    try:
        with store.session() as s:
            return [tuple(r) for r in s.execute(
                select(FeedbackEvent.idempotency_key, FeedbackEvent.id).where(FeedbackEvent.user_id == user_id))]
    finally:
        store.close()


def _check_exactly_once(db_url: str, user_id: str, acked: dict[str, str], sent: list[str]) -> dict[str, str]:
    """Every acknowledged event stored once, as acknowledged; returns key -> stored event id."""
    unacked = [k for k in sent if k not in acked]
    print(f"acknowledged {len(acked)}, unacknowledged {len(unacked)}")
    # Otherwise the test proves nothing: load was acknowledged, and the kill cut some of it off.
    assert len(acked) >= 50, f"only {len(acked)} acknowledged before the kill"
    assert unacked, "the kill came after the load finished"
    rows = _stored(db_url, user_id)
    per_key = Counter(k for k, _ in rows)
    assert max(per_key.values()) == 1, "a key was stored twice"
    stored_ids = dict(rows)
    lost = [k for k in acked if k not in stored_ids]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost, e.g. {lost[:3]}"
    assert all(stored_ids[k] == acked[k] for k in acked), "a stored event is not the acknowledged one"
    assert set(stored_ids) <= set(sent)
    return stored_ids


def _check_replay(db_url: str, user_id: str, base: str, key: str, cid: str, sent: list[str],
                  stored_ids: dict[str, str]) -> None:
    replay = asyncio.run(_replay(base, key, cid, sent))
    # Stored before the kill (acknowledged or not): 200 with the first event; never stored: 201.
    for k in sent:
        status, event_id = replay[k]
        if k in stored_ids:
            assert (status, event_id) == (200, stored_ids[k]), k
        else:
            assert status == 201, (k, status)
    after = _stored(db_url, user_id)
    assert len(after) == len(sent) == len(set(sent))
    assert Counter(k for k, _ in after) == Counter(sent)
    assert {k: i for k, i in after if k in stored_ids} == stored_ids


def test_acknowledged_feedback_survives_sigkill_exactly_once(db_url, tmp_path):
    user_id, key, cid = _seed(db_url)
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"

    proc = _start(db_url, port, log)
    try:
        acked, sent = asyncio.run(_load_then_kill(base, key, cid, proc))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    stored_ids = _check_exactly_once(db_url, user_id, acked, sent)

    proc = _start(db_url, port, log)
    try:
        _check_replay(db_url, user_id, base, key, cid, sent, stored_ids)
    finally:
        _stop(proc)


def test_two_worker_processes_killed_at_once_lose_no_acknowledged_event(db_url, tmp_path):
    from posttrain.models.registry import register_model

    user_id, key, cid = _seed(db_url)
    store = Store.open(db_url)
    try:  # a default model that loads no weights (feedback needs none; it is never called)
        register_model(store, "nowhere", "openai", {"base_url": "http://127.0.0.1:9/v1", "model": "none"})
    finally:
        store.close()
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    args = ("--model", "nowhere", "--workers", "2")

    proc = _start(db_url, port, log, *args)
    try:
        deadline = time.monotonic() + 60
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _workers(proc.pid)
        assert len(workers) == 2, f"expected 2 worker processes, found {workers}"
        for _ in range(20):  # fresh connections: both workers are accepting
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        before = {pid: _cpu(pid) for pid in workers}
        used: dict[int, float] = {}

        def kill() -> None:
            used.update({pid: _cpu(pid) - before[pid] for pid in workers})
            _kill_all(proc)

        acked, sent = asyncio.run(_load_then_kill(base, key, cid, proc, kill))
    finally:
        if proc.poll() is None:
            _kill_all(proc)
    assert proc.returncode == -signal.SIGKILL
    print(f"CPU seconds per worker during the load: {used}")
    assert all(v > 0.05 for v in used.values()), f"a worker took no load: {used}"
    stored_ids = _check_exactly_once(db_url, user_id, acked, sent)

    proc = _start(db_url, port, log, *args)
    try:
        _check_replay(db_url, user_id, base, key, cid, sent, stored_ids)
    finally:
        _stop(proc)
