"""A/B experiments through the real server: sticky routing logged on every completion, automatic
rollback when a guardrail shows harm, promote and rollback taking effect without a restart.

The two models are OpenAI-compatible upstreams served by this test (a plain answerer and a
flatterer that fishes for another turn), so the server, the store, the CLI and the detectors
are the real ones and no model weights load."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from posttrain.loop.server import Server as ServeProcess
from posttrain.store import Completion, Store
from tests.test_web_browser import _env, _free_port, _posttrain, wait_for

ANSWERS = {
    "plain": "Paris is the capital of France. It lies on the Seine and about two million people live in the city itself.",
    "flatter": "What a fascinating question! Paris is the capital of France. Would you like me to tell you more about it?",
}


def _upstream_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        text = ANSWERS[body["model"]]
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 5}}

    return app


@pytest.fixture(scope="module")
def upstream():
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(_upstream_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(10)


def _cli(home, db, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([_posttrain(), *args, "--db", db], capture_output=True, text=True, env=_env(home),
                          timeout=120, check=check)


@contextmanager
def serving(root: Path, db: str, model: str) -> Iterator[str]:
    """`posttrain serve` as a subprocess on a free port; yields its URL, stops it on exit."""
    serve = ServeProcess(db, root / "home", root / "server.log", model=model, env=_env(root / "home"))
    try:
        yield serve.start(timeout=60).url
    finally:
        serve.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, upstream):
    from posttrain.models.registry import register_model
    from posttrain.store.users import add_user

    root = tmp_path_factory.mktemp("ab")
    db = f"sqlite:///{root / 'store.db'}"
    store = Store.open(db)
    register_model(store, "base", "openai", {"base_url": upstream, "model": "plain"})
    register_model(store, "cand", "openai", {"base_url": upstream, "model": "flatter"})
    try:
        with serving(root, db, "base") as url:
            keys = {f"u{i}": add_user(store, f"u{i}")[1] for i in range(16)}
            yield {"url": url, "db": db, "home": root / "home", "store": store, "keys": keys}
    finally:
        store.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _chat(live, user: str) -> dict:
    r = httpx.post(f"{live['url']}/v1/chat/completions", timeout=30,
                   headers={"Authorization": f"Bearer {live['keys'][user]}"},
                   json={"messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert r.status_code == 200, r.text
    return r.json()


def _params(live, completion_id: str) -> dict:
    with live["store"].session() as s:
        return s.scalar(select(Completion.params).where(Completion.id == completion_id))


def test_sticky_routing_guardrail_rollback_and_promote_on_a_running_server(live):
    home, db = live["home"], live["db"]
    out = _cli(home, db, "ab", "start", "flat", "--baseline", "base", "--candidate", "cand", "--fraction", "0.5",
               "--check-seconds", "1", "--json")
    exp = json.loads(out.stdout)
    assert exp["status"] == "running"
    from posttrain.experiments import bucket

    expected = {u: ("cand" if bucket(exp["id"], live["store"] and _uid(live, u)) < 0.5 else "base") for u in live["keys"]}
    assert set(expected.values()) == {"base", "cand"}  # 16 users: both arms are used

    def routed_all() -> bool:
        return all(_chat(live, u)["model"] == expected[u] for u in live["keys"])

    wait_for(routed_all, 30, "the running server to pick up the experiment")  # no restart
    seen: dict[str, set[str]] = {u: set() for u in live["keys"]}
    rolled = False
    for _ in range(12):  # the guardrail check runs in the server every second
        for u in live["keys"]:
            body = _chat(live, u)
            p = _params(live, body["id"])
            if "experiment" not in p:
                rolled = True
                break
            assert p["experiment"]["experiment"] == "flat" and p["experiment"]["id"] == exp["id"]
            assert (p["experiment"]["arm"] == "candidate") == (body["model"] == "cand")
            seen[u].add(body["model"])
        if rolled:
            break
        time.sleep(0.5)
    assert all(len(v) == 1 and v == {expected[u]} for u, v in seen.items())  # sticky per user
    from posttrain import experiments

    store = live["store"]
    wait_for(lambda: experiments.get(store, "flat")["status"] == "rolled_back", 60, "the automatic rollback")
    status = experiments.status(store, "flat", check=False)
    kinds = [e["kind"] for e in status["events"]]
    assert kinds[:1] == ["started"] and "rolled_back" in kinds
    auto = next(e for e in status["events"] if e["kind"] == "rolled_back")
    assert auto["actor"] == "guardrail" and "flattery_rate" in auto["data"]["reason"]
    flattery = next(m for m in status["metrics"] if m["metric"] == "flattery_rate")
    assert flattery["harm"] and flattery["cs"][0] > flattery["margin"]
    assert next(m for m in status["metrics"] if m["metric"] == "follow_up_offer_rate")["verdict"] == "candidate worse"
    wait_for(lambda: all(_chat(live, u)["model"] == "base" for u in live["keys"]), 30, "everyone back on base")

    experiments.start(store, "again", baseline="base", candidate="cand", fraction=0.2, check_seconds=3600)
    _cli(home, db, "ab", "promote", "again")
    t0 = time.monotonic()
    wait_for(lambda: all(_chat(live, u)["model"] == "cand" for u in live["keys"]), 30, "the promotion")
    assert time.monotonic() - t0 < 15  # 0.25 s refresh; generous for a loaded machine
    body = _chat(live, "u0")
    assert _params(live, body["id"])["experiment"]["arm"] == "promoted"
    experiments.rollback(store, "again", reason="changed our mind")
    wait_for(lambda: all(_chat(live, u)["model"] == "base" for u in live["keys"]), 30, "the manual rollback")
    st = experiments.status(store, "again")
    assert [e["kind"] for e in st["events"]] == ["started", "promoted", "rolled_back"]
    assert st["events"][2]["data"]["reason"] == "changed our mind"


def _uid(live, name: str) -> str:
    from posttrain.store import User

    with live["store"].session() as s:
        return s.scalar(select(User.id).where(User.name == name))


def test_cli_errors_are_one_line(live):
    from typer.testing import CliRunner

    from posttrain.cli import app

    def run(*args: str):
        return CliRunner().invoke(app, [*args, "--db", live["db"]])

    bad = run("ab", "start", "x", "--baseline", "base", "--candidate", "nope")
    assert bad.exit_code == 2 and "unknown model 'nope'" in bad.output and len(bad.output.strip().splitlines()) == 1
    bad = run("ab", "start", "x", "--baseline", "base", "--candidate", "cand", "--fraction", "1.5")
    assert bad.exit_code == 2 and "fraction" in bad.output
    bad = run("ab", "promote", "missing")
    assert bad.exit_code == 2 and "no experiment named 'missing'" in bad.output
    listed = run("ab", "status", "--json")
    assert listed.exit_code == 0 and {e["name"] for e in json.loads(listed.output)} >= {"flat", "again"}


def test_peeking_daily_keeps_false_wins_under_five_percent_only_with_the_confidence_sequence():
    from posttrain.experiments import simulate_null

    sim = simulate_null(experiments=2000, days=30, per_day=100, seed=1)
    assert sim["confidence_sequence_false_better"] <= 0.05
    assert sim["fixed_horizon_peeked_false_better"] > 0.08  # peeking breaks the fixed-horizon test
    assert sim["fixed_horizon_once_false_better"] <= 0.04  # which is fine when read once


def test_confidence_sequence_detects_a_real_difference():
    from posttrain.experiments import diff_interval

    iv = diff_interval(0.40, 0.24, 4000, 0.30, 0.21, 4000)
    assert iv["cs"][0] > 0 and iv["fixed_ci"][0] > iv["cs"][0]  # valid at every look costs width


def test_buckets_are_sticky_uniform_and_independent_across_experiments():
    from posttrain.experiments import bucket

    users = [f"user-{i}" for i in range(20000)]
    a = np.array([bucket("exp-a", u) for u in users])
    b = np.array([bucket("exp-b", u) for u in users])
    assert bucket("exp-a", "user-1") == a[1]
    assert abs((a < 0.1).mean() - 0.1) < 0.01
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


def test_routing_without_experiments_costs_microseconds(sqlite_store):
    from posttrain.experiments import route

    assert route(sqlite_store, "u", "m") == ("m", None)
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        route(sqlite_store, "u", "m")
    per_call = (time.perf_counter() - t) / n
    assert per_call < 20e-6, per_call  # one version read per 0.25 s, a dict lookup otherwise


def test_experiment_lifecycle_on_each_database(store, upstream):  # noqa: F811
    from posttrain import experiments
    from posttrain.models.registry import register_model

    register_model(store, "base", "openai", {"base_url": upstream, "model": "plain"})
    register_model(store, "cand", "openai", {"base_url": upstream, "model": "flatter"})
    exp = experiments.start(store, "e1", baseline="base", candidate="cand", fraction=0.5)
    arms = {u: experiments.route(store, u, "base") for u in (f"user{i}" for i in range(40))}
    assert {a[1]["arm"] for a in arms.values()} == {"baseline", "candidate"}
    assert all(m == ("cand" if a["arm"] == "candidate" else "base") for m, a in arms.values())
    assert experiments.route(store, "user1", "other-model") == ("other-model", None)
    with pytest.raises(ValueError, match="already routes 'base'"):
        experiments.start(store, "e2", baseline="base", candidate="cand", fraction=0.1)
    experiments.promote(store, "e1")
    assert experiments.route(store, "user1", "base")[0] == "cand"
    with pytest.raises(ValueError, match="is promoted"):
        experiments.stop(store, "e1")
    experiments.rollback(store, "e1", reason="test")
    assert experiments.route(store, "user1", "base") == ("base", None)
    with pytest.raises(ValueError, match="already exists"):
        experiments.start(store, "e1", baseline="base", candidate="cand", fraction=0.1)
    st = experiments.status(store, "e1")
    assert [e["kind"] for e in st["events"]] == ["started", "promoted", "rolled_back"]
    assert st["experiment"]["id"] == exp["id"] and st["experiment"]["status"] == "rolled_back"
