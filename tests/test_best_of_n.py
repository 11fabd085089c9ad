"""Best-of-n with a reward model: a registered model that samples n answers from a base model and
returns the one the RM scores highest — served over the real API and run through an eval like any
other model. Base: the tiny random Llama; RM: a MiniLM RM trained for a few steps."""

from __future__ import annotations

import json

import pytest

from posttrain.models.base import DecodingParams


@pytest.fixture(scope="module")
def rm_store(tmp_path_factory, tiny_model_dir):
    from posttrain.models.registry import register_model
    from posttrain.reward import train_reward_model
    from posttrain.store import Store

    root = tmp_path_factory.mktemp("bon")
    rows = [{"prompt": f"Say something about {w}.", "chosen": f"{w} is nice.", "rejected": "no"} for w in
            ["cats", "rain", "tea", "maps", "bread", "snow", "music", "trees"]]
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store.open(f"sqlite:///{root / 's.db'}")
    register_model(store, "tiny", "local", {"path": str(tiny_model_dir)})
    train_reward_model(store, name="rm", pairs=root / "p.jsonl", max_steps=2, max_length=32, heldout=0.25,
                       progress=False, out=root / "rm")
    yield store
    store.close()


def test_best_of_n_returns_the_sample_the_rm_scores_highest(rm_store):
    from posttrain.models.best_of_n import register_best_of_n
    from posttrain.models.registry import get_model, load_backend
    from posttrain.reward import load_reward_model

    info = register_best_of_n(rm_store, "tiny-bo4", "tiny", "rm", n=4)
    assert info.backend == "best_of_n" and info.parent == "tiny"
    assert get_model(rm_store, "tiny-bo4").metrics["best_of_n"] == {"reward_model": "rm", "n": 4, "rm_audit_flagged": None}
    backend = load_backend(rm_store, "tiny-bo4")
    convs = [[{"role": "user", "content": "hello"}], [{"role": "user", "content": "name a colour"}]]
    gens = backend.generate(convs, DecodingParams(max_new_tokens=6, temperature=0, seed=1))
    rm = load_reward_model(rm_store, "rm")
    for conv, g in zip(convs, gens):
        meta = g.extra["best_of_n"]
        assert meta["n"] == 4 and len(meta["scores"]) == 4
        assert meta["chosen"] == max(range(4), key=lambda k: meta["scores"][k])
        assert rm.score(conv, g.text) == pytest.approx(meta["scores"][meta["chosen"]], abs=1e-3)
        assert meta["sampled_tokens"] >= g.completion_tokens
    assert len(backend.version()) == 16


def test_best_of_n_is_refused_over_a_reward_model_and_an_rm_cannot_chat(rm_store):
    from posttrain.models.best_of_n import register_best_of_n
    from posttrain.models.registry import load_backend

    with pytest.raises(ValueError, match="not a reward model"):
        register_best_of_n(rm_store, "x", "tiny", "tiny")
    with pytest.raises(ValueError, match="the base must be a chat model"):
        register_best_of_n(rm_store, "y", "rm", "rm")
    with pytest.raises(ValueError, match="n must be an integer"):
        register_best_of_n(rm_store, "z", "tiny", "rm", n=0)
    with pytest.raises(ValueError, match="is a reward model"):
        load_backend(rm_store, "rm").generate([[{"role": "user", "content": "hi"}]], DecodingParams())


def test_best_of_n_is_served_and_evaluated_like_any_model(rm_store):
    from posttrain.evals.runner import run_suite
    from posttrain.models.best_of_n import register_best_of_n
    from posttrain.serve.testing import make_env

    register_best_of_n(rm_store, "tiny-bo2", "tiny", "rm", n=2)
    env = make_env(rm_store, None)
    with env.client("alice") as c:
        r = c.post("/v1/chat/completions", json={"model": "tiny-bo2", "max_tokens": 5,
                                                 "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "tiny-bo2" and isinstance(r.json()["choices"][0]["message"]["content"], str)
        names = {m["id"] for m in c.get("/v1/models").json()["data"]}
    assert "tiny-bo2" in names
    summary = run_suite(rm_store, "engagement", "tiny-bo2", limit=2, progress=False,
                        params={"max_new_tokens": 5})
    assert summary.n_cases == 2 and summary.model == "tiny-bo2"
