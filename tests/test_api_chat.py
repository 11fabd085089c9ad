"""POST /v1/chat/completions and GET /v1/models in-process, on SQLite and PostgreSQL: what is
logged for each exchange, conversation continuity, ownership, and the real embedded model."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from posttrain.serve.app import DEFAULT_SYSTEM_PROMPT
from posttrain.serve.testing import make_env
from posttrain.store import Completion, Conversation, Message
from posttrain.store import chat as chat_queries


@pytest.fixture
def env(store, tiny_model_dir):
    return make_env(store, tiny_model_dir)


def _chat(client, messages, **extra):
    body = {"model": "tiny", "messages": messages, "max_tokens": 6, **extra}
    return client.post("/v1/chat/completions", json=body)


def _transcript(store, conversation_id):
    with store.session() as s:
        rows = s.execute(
            select(Message.role, Message.content, Message.completion_id)
            .where(Message.conversation_id == conversation_id).order_by(Message.position)
        ).all()
    return [tuple(r) for r in rows]


def _count(store, model) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_an_exchange_is_logged_with_everything_needed_to_learn_from_it(env, store):
    with env.client("alice") as c:
        r = _chat(c, [{"role": "user", "content": "Name a colour."}], temperature=0.5, top_p=0.9, seed=7, stop=["\n\n"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    choice = body["choices"][0]
    assert body["id"] == choice["completion_id"]
    with store.session() as s:
        row = chat_queries.get_completion(s, body["id"])
    assert row is not None
    assert row["user_id"] == env.users["alice"].id
    assert row["conversation_id"] == body["conversation_id"]
    assert row["model"] == "tiny"
    assert row["text"] == choice["message"]["content"]
    assert row["finish_reason"] == choice["finish_reason"]
    assert row["params"]["max_new_tokens"] == 6 and row["params"]["temperature"] == 0.5
    assert row["params"]["top_p"] == 0.9 and row["params"]["seed"] == 7 and row["params"]["stop"] == ["\n\n"]
    # No personalization set: the server's own system message, so the template adds none.
    assert row["prompt"] == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "Name a colour."}]
    assert row["custom_instructions"] is None and row["memory"] == []
    assert row["latency_ms"] > 0
    assert row["prompt_tokens"] == body["usage"]["prompt_tokens"] > 0
    assert row["completion_tokens"] == body["usage"]["completion_tokens"] > 0
    assert _transcript(store, body["conversation_id"]) == [
        ("user", "Name a colour.", None), ("assistant", choice["message"]["content"], body["id"]),
    ]


def test_n_choices_share_a_request_and_only_choice_zero_enters_the_transcript(env, store):
    with env.client("alice") as c:
        body = _chat(c, [{"role": "user", "content": "hi"}], n=3).json()
    ids = [ch["completion_id"] for ch in body["choices"]]
    assert len(set(ids)) == 3 and [ch["index"] for ch in body["choices"]] == [0, 1, 2]
    with store.session() as s:
        rows = [chat_queries.get_completion(s, i) for i in ids]
    assert len({r["request_id"] for r in rows}) == 1
    assert [r["choice_index"] for r in rows] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    assert [m[2] for m in _transcript(store, body["conversation_id"])] == [None, ids[0]]


def test_a_resent_history_continues_the_conversation_it_matches(env, store):
    with env.client("alice") as c:
        first = _chat(c, [{"role": "user", "content": "one"}]).json()
        answer = first["choices"][0]["message"]["content"]
        history = [{"role": "user", "content": "one"}, {"role": "assistant", "content": answer}]
        second = _chat(c, [*history, {"role": "user", "content": "two"}]).json()
        other = _chat(c, [{"role": "user", "content": "one"}, {"role": "assistant", "content": "not it"},
                          {"role": "user", "content": "two"}]).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert other["conversation_id"] != first["conversation_id"]
    roles = [m[0] for m in _transcript(store, first["conversation_id"])]
    assert roles == ["user", "assistant", "user", "assistant"]


def test_regenerate_and_edit_rewrite_the_transcript_but_keep_every_completion(env, store):
    with env.client("alice") as c:
        first = _chat(c, [{"role": "user", "content": "q1"}]).json()
        conv = first["conversation_id"]
        regen = _chat(c, [{"role": "user", "content": "q1"}], conversation_id=conv).json()
        a1 = regen["choices"][0]["message"]["content"]
        more = _chat(c, [{"role": "user", "content": "q1"}, {"role": "assistant", "content": a1},
                         {"role": "user", "content": "q2"}], conversation_id=conv).json()
        edited = _chat(c, [{"role": "user", "content": "q1 (edited)"}], conversation_id=conv).json()
        listing = c.get(f"/v1/conversations/{conv}").json()
    assert {regen["conversation_id"], more["conversation_id"], edited["conversation_id"]} == {conv}
    assert _transcript(store, conv) == [
        ("user", "q1 (edited)", None),
        ("assistant", edited["choices"][0]["message"]["content"], edited["id"]),
    ]
    assert {c_["id"] for c_ in listing["completions"]} == {first["id"], regen["id"], more["id"], edited["id"]}
    assert listing["messages"][-1]["completion_id"] == edited["id"]


def test_another_users_conversation_is_not_found_and_nothing_is_stored(env, store):
    with env.client("alice") as alice, env.client("bob") as bob:
        conv = _chat(alice, [{"role": "user", "content": "mine"}]).json()["conversation_id"]
        before = (_count(store, Conversation), _count(store, Completion), _count(store, Message))
        r = _chat(bob, [{"role": "user", "content": "x"}], conversation_id=conv)
        assert r.status_code == 404
        assert r.json()["error"]["message"] == f"conversation {conv!r} not found"
        assert bob.get(f"/v1/conversations/{conv}").status_code == 404
        assert bob.get("/v1/conversations").json() == []
        assert [x["id"] for x in alice.get("/v1/conversations").json()] == [conv]
    assert (_count(store, Conversation), _count(store, Completion), _count(store, Message)) == before


def test_conversations_list_newest_first(env):
    with env.client("alice") as c:
        a = _chat(c, [{"role": "user", "content": "first topic"}]).json()["conversation_id"]
        b = _chat(c, [{"role": "user", "content": "second topic"}]).json()["conversation_id"]
        listing = c.get("/v1/conversations").json()
    assert [x["id"] for x in listing] == [b, a]
    assert listing[0]["title"] == "second topic"
    assert set(listing[0]) == {"id", "title", "created_at", "updated_at"}


def test_unknown_model_is_404_and_models_lists_registered_ones(env, store):
    with env.client("alice") as c:
        r = _chat(c, [{"role": "user", "content": "hi"}], model="no-such-model")
        models = c.get("/v1/models").json()
    assert r.status_code == 404
    assert "no-such-model" in r.json()["error"]["message"] and "\n" not in r.json()["error"]["message"]
    assert _count(store, Completion) == 0
    assert models["object"] == "list"
    names = {m["id"] for m in models["data"]}
    assert {"tiny", "smollm2-135m"} <= names
    assert all(m["object"] == "model" for m in models["data"])


def test_the_default_model_answers_when_none_is_named(env):
    with env.client("alice") as c:
        body = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).json()
    assert body["model"] == "tiny"


def test_streaming_logs_the_streamed_text_under_the_chunk_id(env, store):
    with env.client("alice") as c:
        r = _chat(c, [{"role": "user", "content": "stream please"}], stream=True,
                  stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    import json

    events = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    ids = {ch["id"] for ch in chunks}
    assert len(ids) == 1 and len({ch["conversation_id"] for ch in chunks}) == 1
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    finishes = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    usage = chunks[-1]["usage"]
    with store.session() as s:
        row = chat_queries.get_completion(s, ids.pop())
    assert row["text"] == text and row["params"]["stream"] is True
    assert row["completion_tokens"] == usage["completion_tokens"] > 0


def test_stream_with_n_above_one_is_refused(env, store):
    with env.client("alice") as c:
        r = _chat(c, [{"role": "user", "content": "x"}], stream=True, n=2)
    assert r.status_code == 422 and r.json()["error"]["message"] == "n: must be 1 when stream is true"
    assert _count(store, Completion) == 0


@pytest.mark.anyio
async def test_feedback_is_answered_while_a_model_generates(env):
    """Generation runs in a worker thread: feedback on an earlier answer must not wait for it."""
    async with env.aclient("alice") as c:
        first = (await c.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "a"}], "max_tokens": 2})).json()
        slow_started = time.perf_counter()
        slow = asyncio.create_task(c.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "b"}], "max_tokens": 200,
            "temperature": 1.0}))
        await asyncio.sleep(0.2)  # let the generation start
        sent = time.perf_counter()
        r = await c.post("/v1/feedback", json={"completion_id": first["id"], "kind": "thumbs", "value": 1})
        feedback_seconds = time.perf_counter() - sent
        # The answer to the feedback arrived while the generation was still running.
        assert not slow.done(), "generation finished too fast to show concurrency; raise max_tokens"
        slow_response = await slow
    assert r.status_code == 201
    assert slow_response.status_code == 200
    assert feedback_seconds < time.perf_counter() - slow_started


def test_the_real_embedded_model_answers_end_to_end(store):
    """smollm2-135m (SmolLM2-135M-Instruct), the default model, through the whole API."""
    env = make_env(store, default_model="smollm2-135m")
    with env.client("alice") as c:
        r = c.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 12, "temperature": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        fb = c.post("/v1/feedback", json={"completion_id": body["id"], "kind": "thumbs", "value": 1})
    answer = body["choices"][0]["message"]["content"]
    assert body["model"] == "smollm2-135m"
    assert "Paris" in answer, answer  # greedy decoding of the real model knows this one
    assert fb.status_code == 201
    with store.session() as s:
        row = chat_queries.get_completion(s, body["id"])
    assert row["text"] == answer and row["params"]["temperature"] == 0


def test_a_resent_answer_picked_from_a_comparison_keeps_its_completion_link(env, store):
    with env.client("alice") as c:
        pair = _chat(c, [{"role": "user", "content": "compare"}], n=2).json()
        conv = pair["conversation_id"]
        picked = pair["choices"][1]  # the user preferred the second answer
        nxt = _chat(c, [{"role": "user", "content": "compare"},
                        {"role": "assistant", "content": picked["message"]["content"]},
                        {"role": "user", "content": "and then?"}], conversation_id=conv).json()
    transcript = _transcript(store, conv)
    assert transcript[1] == ("assistant", picked["message"]["content"], picked["completion_id"])
    assert transcript[3][2] == nxt["id"]
