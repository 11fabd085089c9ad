"""Several server processes on one store: what each caches stays correct for the others.

Two real `posttrain serve` processes on two ports share one store (SQLite file, and PostgreSQL
when POSTTRAIN_TEST_DATABASE_URL is set): the way several hosts run behind a load balancer,
and the same code as `--workers 2` (whose processes cannot be addressed one by one). A change
made through one process, or by a third (this test, as the CLI would), must be honoured by the
other within the bound docs/scale.md documents: at once on SQLite, within RESYNC_SECONDS (1 s)
on PostgreSQL even if a notification were lost. The chat model is a fake OpenAI-compatible
upstream in this process, so no weights load.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select

from posttrain.store import Completion, FeedbackEvent, Store
from posttrain.store.invalidation import RESYNC_SECONDS
from posttrain.store.users import add_user, revoke_key
from tests.conftest import PG_URL, _drop_pg_schema, _pg_schema_url
from tests.test_durability import _free_port, _seed, _start, _stop

# The bound a change made elsewhere may take to reach a process (docs/scale.md), plus the time
# one request takes on a loaded 2-core machine.
BOUND = {"sqlite": 0.0, "postgresql": RESYNC_SECONDS}
SLACK = 1.0

_ANSWER = json.dumps({
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}).encode()


class _Upstream(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(_ANSWER)))
        self.end_headers()
        self.wfile.write(_ANSWER)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request, tmp_path_factory):
    """(store url, dialect, [base url of process A, of process B], upstream model name)."""
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path_factory.mktemp('workers') / 'store.db'}", None
    else:
        if not PG_URL:
            pytest.skip("PostgreSQL store tests skipped: POSTTRAIN_TEST_DATABASE_URL is not set")
        url, schema = _pg_schema_url()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    from posttrain.models.registry import register_model

    store = Store.open(url)
    for name in ("up", "up-candidate"):
        register_model(store, name, "openai",
                       {"base_url": f"http://127.0.0.1:{upstream.server_port}/v1", "model": "fake"})
    store.close()
    log = tmp_path_factory.mktemp("logs") / "servers.log"
    ports = [_free_port(), _free_port()]
    procs = [_start(url, port, log, "--model", "up") for port in ports]
    try:
        yield url, request.param, [f"http://127.0.0.1:{p}" for p in ports], "up"
    finally:
        for proc in procs:
            _stop(proc)
        upstream.shutdown()
        if schema:
            _drop_pg_schema(schema)


def _user(url: str, name: str) -> tuple[str, str]:
    store = Store.open(url, upgrade=False)
    try:
        user, key = add_user(store, name)
        return user.id, key
    finally:
        store.close()


def _until(check, bound: float) -> float:
    """Seconds until check() is true (polling every 5 ms); fails past bound + SLACK."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > bound + SLACK:
            pytest.fail(f"not seen by the other process within {bound + SLACK:.1f} s")
        time.sleep(0.005)
    return time.monotonic() - start


def _chat(base: str, key: str, model: str = "up") -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": "Capital of France?"}]})


def test_a_key_revoked_elsewhere_is_refused_by_every_process(pair):
    url, dialect, (a, b), _ = pair
    _, key = _user(url, "revokee")
    for base in (a, b):  # both processes have now cached the key
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    store = Store.open(url, upgrade=False)
    try:
        revoke_key(store, "revokee")  # a third process, as `posttrain users revoke-key` is
    finally:
        store.close()
    for base in (a, b):
        took = _until(lambda base=base: httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {key}"})
                      .status_code == 401, BOUND[dialect])
        print(f"{dialect}: revoked key refused after {1000 * took:.0f} ms")


def test_instructions_and_memory_changed_through_one_process_reach_the_other(pair):
    url, dialect, (a, b), _ = pair
    uid, key = _user(url, "personal")
    auth = {"Authorization": f"Bearer {key}"}
    assert _chat(b, key).status_code == 200  # B caches "no instructions, no memory"

    def latest() -> tuple[str | None, list[str]]:
        store = Store.open(url, upgrade=False)
        try:
            with store.session() as s:
                row = s.execute(select(Completion.custom_instructions, Completion.memory)
                                .where(Completion.user_id == uid)
                                .order_by(Completion.created_at.desc(), Completion.id.desc())).first()
                return row.custom_instructions, list(row.memory or [])
        finally:
            store.close()

    assert latest() == (None, [])
    assert httpx.put(f"{a}/v1/me/instructions", headers=auth, json={"text": "Answer in French."}).status_code == 200
    added = httpx.post(f"{a}/v1/me/memory", headers=auth, json={"text": "Lives in Lyon."})
    assert added.status_code == 201
    took = _until(lambda: _chat(b, key).status_code == 200 and latest() == ("Answer in French.", ["Lives in Lyon."]),
                  BOUND[dialect])
    print(f"{dialect}: instructions and memory used by the other process after {1000 * took:.0f} ms")
    assert httpx.delete(f"{a}/v1/me/memory/{added.json()['id']}", headers=auth).status_code == 204
    _until(lambda: _chat(b, key).status_code == 200 and latest() == ("Answer in French.", []), BOUND[dialect])


def test_models_and_ab_experiments_changed_elsewhere_reach_every_process(pair):
    url, dialect, (a, b), upstream = pair
    _, key = _user(url, "routed")
    from posttrain.experiments import _manage
    from posttrain.models.registry import get_model, register_model

    assert _chat(b, key, "registered-later").status_code == 404  # unknown: not cached as such
    store = Store.open(url, upgrade=False)
    try:
        config = get_model(store, upstream).config
        register_model(store, "registered-later", "openai", config)
        assert _chat(b, key, "registered-later").status_code == 200  # a miss reads the registry

        for base in (a, b):
            assert _chat(base, key).json()["model"] == upstream
        _manage.start(store, "workers-ab", baseline=upstream, candidate="up-candidate", fraction=0.5,
                      actor="test")
        _manage.promote(store, "workers-ab", actor="test")  # every user now gets the candidate
    finally:
        store.close()
    for base in (a, b):
        took = _until(lambda base=base: _chat(base, key).json()["model"] == "up-candidate", BOUND[dialect])
        print(f"{dialect}: promotion followed after {1000 * took:.0f} ms")


def test_an_idempotency_key_sent_to_two_processes_at_once_is_stored_once(pair):
    url, _, (a, b), _ = pair
    user_id, key, cid = _seed(url)
    keys = [f"twice-{i}" for i in range(40)]

    async def both(http: httpx.AsyncClient, k: str) -> list[tuple[int, str]]:
        body = {"completion_id": cid, "kind": "thumbs", "value": 1, "idempotency_key": k}
        rs = await asyncio.gather(*(http.post(f"{base}/v1/feedback", json=body) for base in (a, b)))
        return [(r.status_code, r.json()["id"]) for r in rs]

    async def run() -> list[list[tuple[int, str]]]:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            return await asyncio.gather(*(both(http, k) for k in keys))

    answers = asyncio.run(run())
    for k, pair_of in zip(keys, answers):
        statuses = sorted(s for s, _ in pair_of)
        assert statuses == [200, 201], (k, pair_of)  # one created it, the other found it
        assert pair_of[0][1] == pair_of[1][1], (k, pair_of)  # and both name the same event
    store = Store.open(url, upgrade=False)
    try:
        with store.session() as s:
            stored = s.scalars(select(FeedbackEvent.idempotency_key).where(FeedbackEvent.user_id == user_id)).all()
    finally:
        store.close()
    assert sorted(stored) == sorted(keys)
