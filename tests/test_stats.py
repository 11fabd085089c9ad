"""The dashboard and the arena's store side, on SQLite and PostgreSQL, through the real app:
chats, thumbs, regenerations and pairwise votes go in over HTTP; the figures come out."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.test_ab import upstream  # noqa: F401  (the fixture)


@pytest.fixture
def env(store, upstream):  # noqa: F811
    from posttrain.models.registry import register_model
    from posttrain.serve.testing import make_env

    register_model(store, "base", "openai", {"base_url": upstream, "model": "plain"})
    register_model(store, "other", "openai", {"base_url": upstream, "model": "flatter"})
    return make_env(store, default_model="base")


def _chat(c, messages, model=None):
    body = {"messages": messages, **({"model": model} if model else {})}
    r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _fill(env):
    q = [{"role": "user", "content": "What is the capital of France?"}]
    with env.client("alice") as c:
        a1 = _chat(c, q)
        a2 = _chat(c, [*q, {"role": "assistant", "content": a1["choices"][0]["message"]["content"]},
                       {"role": "user", "content": "And of Italy?"}])
        o1 = _chat(c, q, model="other")
        for payload in (
            {"completion_id": a1["id"], "kind": "thumbs", "value": 1},
            {"completion_id": a2["id"], "kind": "thumbs", "value": -1, "reasons": ["wrong", "too_long"]},
            {"completion_id": a2["id"], "kind": "implicit", "signal": "regenerate"},
            {"completion_id": a1["id"], "kind": "pairwise", "value": "a", "other_completion_id": o1["id"],
             "positions": {"left": o1["id"], "right": a1["id"]}},
        ):
            assert c.post("/v1/feedback", json=payload).status_code == 201
    with env.client("bob") as c:
        b1 = _chat(c, q)
        b2 = _chat(c, q, model="other")
        assert c.post("/v1/feedback", json={"completion_id": b1["id"], "kind": "pairwise", "value": "tie",
                                            "other_completion_id": b2["id"]}).status_code == 201
    return a1, o1


def test_dashboard_per_model_and_week(env):
    from posttrain.experiments._stats import STATEMENT, dashboard
    from posttrain.store import evals as eq

    _fill(env)
    run = eq.create_run(env.store, suite="capability", suite_version="v", model="base", params={}, seed=0)
    eq.finish_run(env.store, run, metrics={"accuracy": 0.75}, n_cases=4)
    d = dashboard(env.store)
    assert d["statement"] == STATEMENT and "nothing in posttrain optimizes them by default" in d["statement"]
    rows = {r["model"]: r for r in d["rows"]}
    base, other = rows["base"], rows["other"]
    assert base["engagement"]["conversations"] == 2  # alice's two turns are one conversation, bob's is another
    assert base["engagement"]["turns_per_conversation"] == 1.5
    assert base["engagement"]["regenerations"] == 1 and base["engagement"]["minutes_per_conversation"] >= 0
    assert base["feedback"]["thumbs_up"] == 1 and base["feedback"]["thumbs_down"] == 1
    assert base["feedback"]["down_reasons"] == {"too_long": 1, "wrong": 1}
    assert base["task_success"]["wrong_rate"] == 0.5
    assert base["task_success"]["evals"] == {"capability": {"accuracy": 0.75}}
    assert base["feedback"]["pairwise_win_rate"] == 0.75 and other["feedback"]["pairwise_win_rate"] == 0.25
    assert base["week"].startswith("20") and "-W" in base["week"]

    from posttrain.cli import app

    r = CliRunner().invoke(app, ["stats", "--json", "--db", env.store.engine.url.render_as_string(hide_password=False)])
    assert r.exit_code == 0, r.output
    assert {x["model"] for x in json.loads(r.output)["rows"]} == {"base", "other"}


def test_store_votes_and_the_append_only_model_record(env):
    from posttrain.arena import fit, model_record, record_models, votes_from_store

    a1, o1 = _fill(env)
    votes = votes_from_store(env.store)
    assert len(votes) == 2
    first = next(v for v in votes if v["winner"] == "model_a")
    assert (first["model_a"], first["model_b"]) == ("base", "other")
    assert first["positions"]["left"] == "model_b"  # "other" was shown on the left
    assert first["text_a"] and first["prompt"] and first["user"]
    res = fit(votes, rounds=5, style=True)
    record = record_models(env.store, res)
    assert {r["model"] for r in record} == {"base", "other"}
    record_models(env.store, {"models": [{"model": "base", "votes": 99}]})  # nothing new: nothing changes
    again = {r["model"]: r for r in model_record(env.store)}
    assert again["base"]["first_votes"] == 2
    for stmt in ("DELETE FROM arena_models", "UPDATE arena_models SET first_votes = 0"):
        with pytest.raises(Exception, match="append-only"):
            with env.store.engine.begin() as conn:
                conn.execute(text(stmt))
    assert len(model_record(env.store)) == 2

    from posttrain.cli import app

    url = env.store.engine.url.render_as_string(hide_password=False)
    r = CliRunner().invoke(app, ["arena", "fit", "--rounds", "5", "--json", "--db", url])
    assert r.exit_code == 0, r.output
    assert {x["model"] for x in json.loads(r.output)["record"]} == {"base", "other"}
