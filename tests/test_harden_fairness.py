"""Model time is shared fairly: a client that leaves stops its generation, one user's batch does
not starve another user, per-user limits answer 429 with Retry-After, and headers, memory and
failed key checks are bounded. The timing tests run the real app under uvicorn on a loopback
port with the tiny random model (about 150 tokens/s here), with bounds relative to a measured
single answer so a slow, busy machine does not make them flaky."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from posttrain.serve.scheduler import Limits, RateLimited, Scheduler, TooLarge
from posttrain.serve.testing import make_env, serve_in_thread
from posttrain.store import chat as chat_queries
from posttrain.store.users import UserInfo

CHAT = "/v1/chat/completions"


def _ask(tokens: int, n: int = 1, text: str = "Tell me a long story.") -> dict:
    # temperature 0: the tiny model then runs to max_tokens (no sampled end-of-text token).
    return {"messages": [{"role": "user", "content": text}], "max_tokens": tokens, "n": n, "temperature": 0}


def _rows(store, user_id: str) -> list[dict]:
    from sqlalchemy import select

    from posttrain.store import Completion

    with store.session() as s:
        ids = s.scalars(select(Completion.id).where(Completion.user_id == user_id)).all()
        return [chat_queries.get_completion(s, i) for i in ids]


def test_a_non_streaming_client_that_leaves_stops_its_generation(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir)
    alice, bob = env.headers("alice"), env.headers("bob")
    with serve_in_thread(env.app) as url:
        assert httpx.post(url + CHAT, json=_ask(2), headers=bob, timeout=60).status_code == 200  # model loaded
        # n=4 x 1500 tokens is 10-40 s of the tiny model here; the client gives up after 1.5 s.
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + CHAT, json=_ask(1500, n=4), headers=alice, timeout=1.5)
        started = time.perf_counter()
        r = httpx.post(url + CHAT, json=_ask(2), headers=bob, timeout=60)
        light = time.perf_counter() - started
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while len(rows := _rows(sqlite_store, env.users["alice"].id)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(rows) == 4, "the abandoned exchange was not stored"
    assert {row["finish_reason"] for row in rows} == {"abandoned"}
    assert sum(row["completion_tokens"] for row in rows) < 4 * 1500 / 2, "generation went on after the client left"
    assert light < 6, f"the other user waited {light:.1f} s for a 2-token answer"


def test_a_heavy_user_does_not_starve_a_light_one(sqlite_store, tiny_model_dir):
    """One user queues four requests of four 600-token answers (16 answers); another then asks
    for 2 tokens. Served in turn, the light user waits for at most the one answer running, not
    for the queue: its latency is bounded by about one answer's time (t1), however much the
    heavy user queued."""
    env = make_env(sqlite_store, tiny_model_dir)
    alice, bob = env.headers("alice"), env.headers("bob")

    async def scenario(url: str) -> tuple[float, float, list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as light_client:
            await light_client.post(CHAT, json=_ask(2), headers=bob)  # model loaded
            started = time.perf_counter()
            r = await light_client.post(CHAT, json=_ask(600), headers=alice)
            t1 = time.perf_counter() - started
            assert r.json()["choices"][0]["finish_reason"] == "length"
            heavy_clients = [httpx.AsyncClient(base_url=url, timeout=120) for _ in range(4)]
            heavy = [asyncio.create_task(c.post(CHAT, json=_ask(600, n=4), headers=alice)) for c in heavy_clients]
            await asyncio.sleep(0.5)  # the heavy requests are queued and generating
            started = time.perf_counter()
            r = await light_client.post(CHAT, json=_ask(2), headers=bob)
            light = time.perf_counter() - started
            assert r.status_code == 200, r.text
            done = [t.result().status_code for t in heavy if t.done()]
            for t in heavy:  # leave: their generations are cancelled, the test ends quickly
                t.cancel()
            await asyncio.gather(*heavy, return_exceptions=True)
            for c in heavy_clients:
                await c.aclose()
            return t1, light, done

    with serve_in_thread(env.app) as url:
        t1, light, done = asyncio.run(scenario(url))
    assert done == [], "the heavy requests finished before the light one was served: no contention tested"
    # Served in turn it waits for one running answer (~t1); 3 x t1 + 1 s leaves room for a busy
    # machine, while waiting for the heavy user's queue would take up to 16 x t1.
    assert light < 3 * t1 + 1, f"light request took {light:.2f} s; one 600-token answer takes {t1:.2f} s"


def test_over_a_limit_is_429_with_retry_after_in_openai_shape(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir, limits=Limits(user_concurrency=4, user_tokens_per_minute=100,
                                                                request_tokens=200))
    with env.client("alice") as c:
        assert c.post(CHAT, json=_ask(60)).status_code == 200
        r = c.post(CHAT, json=_ask(60))
        too_big = c.post(CHAT, json=_ask(100, n=4))
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "rate_limit_error"}}
    assert "tokens per minute" in r.json()["error"]["message"]
    assert too_big.status_code == 400 and too_big.json()["error"]["message"].startswith("max_tokens: n x max_tokens is 400")
    with env.client("bob") as c:  # limits are per user
        assert c.post(CHAT, json=_ask(60)).status_code == 200


def test_concurrency_limit_and_admin_exemption():
    def user(admin: bool = False) -> UserInfo:
        return UserInfo("u-admin" if admin else "u1", "x", admin, True)

    limited = Scheduler(Limits(user_concurrency=2, user_tokens_per_minute=1000, request_tokens=500))
    a, b = limited.admit(user(), 10), limited.admit(user(), 10)
    with pytest.raises(RateLimited) as exc:
        limited.admit(user(), 10)
    assert exc.value.retry_after == 1
    limited.release(a, 3)
    limited.admit(user(), 10)  # a place came free
    limited.release(b, 10)
    with pytest.raises(TooLarge):
        limited.admit(user(), 501)
    # Admins are limited too unless configured otherwise.
    for _ in range(2):
        limited.admit(user(admin=True), 10)
    with pytest.raises(RateLimited):
        limited.admit(user(admin=True), 10)
    exempt = Scheduler(Limits(user_concurrency=1, user_tokens_per_minute=10, exempt_admins=True))
    for _ in range(5):
        exempt.admit(user(admin=True), 10)
    # The token window forgets after a minute, and counts what was really generated.
    s = Scheduler(Limits(user_concurrency=0, user_tokens_per_minute=100))
    t = s.admit(user(), 80, now=0.0)
    s.release(t, 20)
    s.admit(user(), 80, now=1.0)  # 20 + 80 <= 100
    with pytest.raises(RateLimited) as exc:
        s.admit(user(), 10, now=2.0)
    assert exc.value.retry_after == 58  # the 20-token entry (at t=0) must leave the window
    s.admit(user(), 10, now=61.0)


def test_request_headers_and_memory_are_bounded(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir)
    with env.client("alice") as c:
        big = c.get("/v1/me", headers={"X-Padding": "a" * 20_000})
        assert big.status_code == 431 and big.json()["error"]["message"] == "request headers are larger than 16 KiB"
        for i in range(2):
            assert c.post("/v1/me/memory", json={"text": f"{i} " + "m" * 1998}).status_code == 201
        full = c.post("/v1/me/memory", json={"text": "one more fact"})
        assert full.status_code == 409 and full.json()["error"]["message"].startswith("memory is full")
        # A chat still fits the model's context with a full memory.
        assert c.post(CHAT, json=_ask(2)).status_code == 200
    with env.client("bob") as c:
        for i in range(50):
            assert c.post("/v1/me/memory", json={"text": f"fact {i}"}).status_code == 201
        assert c.post("/v1/me/memory", json={"text": "fact 51"}).status_code == 409
        assert len(c.get("/v1/me/memory").json()) == 50


def test_failed_authentication_is_rate_limited_per_address(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir, auth_failures_per_minute=3)
    with env.client() as c:
        for _ in range(3):
            assert c.get("/v1/me", headers={"Authorization": "Bearer pt-guess"}).status_code == 401
        r = c.get("/v1/me", headers={"Authorization": "Bearer pt-guess"})
        valid = c.get("/v1/me", headers=env.headers("alice"))  # same address: blocked too
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert valid.status_code == 429


def test_slots_go_round_robin_between_users():
    """Unit check of the turn order: the user whose answer just ran goes behind the others."""
    order: list[str] = []

    async def scenario() -> None:
        sched = Scheduler()
        gate = asyncio.Event()

        async def job(user: str) -> None:
            async with sched.slot("lane", 1, user):
                order.append(user)
                await gate.wait()  # the first job holds the slot until everyone is queued

        heavy = [asyncio.create_task(job("heavy")) for _ in range(6)]
        for _ in range(3):
            await asyncio.sleep(0)  # heavy's first job runs, five wait
        light = [asyncio.create_task(job("light")), asyncio.create_task(job("other"))]
        for _ in range(3):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*heavy, *light)

    asyncio.run(scenario())
    assert order[:4] == ["heavy", "light", "other", "heavy"], order
