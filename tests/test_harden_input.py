"""Client input that answered 500/502 at 7b61e5a is a one-line 4xx naming the field, on SQLite
and PostgreSQL alike, and nothing is stored: deep JSON nesting, ids of the wrong type, lone
surrogates, NUL characters (in bodies, ids, model names and path parameters), strings where
booleans or integers belong, and OpenAI fields posttrain does not support."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from posttrain.serve.testing import make_env
from posttrain.store import Completion, Conversation, CustomInstructions, FeedbackEvent, Memory, Message

TABLES = (Completion, Conversation, Message, FeedbackEvent, Memory, CustomInstructions)
CHAT = "/v1/chat/completions"


@pytest.fixture
def env(store, tiny_model_dir):
    return make_env(store, tiny_model_dir)


@pytest.fixture
def cids(env):
    with env.client("alice") as c:
        r = c.post(CHAT, json={"messages": [{"role": "user", "content": "q"}], "max_tokens": 2, "n": 2})
    assert r.status_code == 200, r.text
    return [ch["completion_id"] for ch in r.json()["choices"]]


def counts(store) -> tuple[int, ...]:
    with store.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in TABLES)


def post_raw(client, path: str, body, method: str = "POST"):
    """Send `body` as ASCII-escaped JSON (a lone surrogate travels as the escape `\\ud800`, as a
    JavaScript or Java client would send it)."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.request(method, path, content=data, headers={"content-type": "application/json"})


def assert_refused(r, status: int, field: str | None = None) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type"} and "\n" not in err["message"]
    if field is not None:
        assert err["message"].startswith(field + ":"), err["message"]
    return err["message"]


def nested(depth: int):
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_json_is_a_4xx(env, store):
    before = counts(store)
    deep = '{"completion_id": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with env.client("alice") as c:
        for path in ("/v1/feedback", CHAT, "/v1/me/memory", "/v1/me/instructions"):
            method = "PUT" if path.endswith("instructions") else "POST"
            r1 = post_raw(c, path, deep, method)
            r2 = post_raw(c, path, {"text": nested(40), "messages": nested(40)}, method)
            assert_refused(r1, 400)
            assert "nested deeper than" in assert_refused(r2, 400)
    assert counts(store) == before


def test_positions_of_the_wrong_type_are_422(env, store, cids):
    before = counts(store)
    with env.client("alice") as c:
        for positions in ({"left": ["a"], "right": "b"}, {"left": {"x": 1}, "right": {"y": 2}}):
            r = c.post("/v1/feedback", json={"completion_id": cids[0], "other_completion_id": cids[1],
                                             "kind": "pairwise", "value": "a", "positions": positions})
            assert_refused(r, 422, "positions.left")
    assert counts(store) == before


def cases_for(cids, bad):
    return [
        ("/v1/feedback", {"completion_id": cids[0], "kind": "thumbs", "value": 1, "comment": bad}, "comment", "POST"),
        ("/v1/feedback", {"completion_id": cids[0], "kind": "thumbs", "value": 1, "idempotency_key": bad}, "idempotency_key", "POST"),
        ("/v1/feedback", {"completion_id": bad, "kind": "thumbs", "value": 1}, "completion_id", "POST"),
        ("/v1/feedback", {"completion_id": cids[0], "kind": "edit", "edited_text": bad}, "edited_text", "POST"),
        (CHAT, {"messages": [{"role": "user", "content": bad}], "max_tokens": 2}, "messages[0].content", "POST"),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": bad}]}], "max_tokens": 2},
         "messages[0].content[0].text", "POST"),
        (CHAT, {"model": bad, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, "model", "POST"),
        (CHAT, {"conversation_id": bad, "messages": [{"role": "user", "content": "hi"}]}, "conversation_id", "POST"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "stop": [bad]}, "stop[0]", "POST"),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}], "stream": True, bad: 1}, None, "POST"),
        ("/v1/me/memory", {"text": bad + " likes tea"}, "text", "POST"),
        ("/v1/me/instructions", {"text": "be brief " + bad}, "text", "PUT"),
    ]


def test_lone_surrogates_and_nul_are_422_naming_the_field_everywhere(env, store, cids):
    before = counts(store)
    with env.client("alice") as c:
        for bad in ("\ud800", "a\udfffb", "\x00", "nul\x00inside"):
            for path, body, field, method in cases_for(cids, bad):
                r = post_raw(c, path, body, method)
                message = assert_refused(r, 422, field)
                assert "NUL" in message or "surrogate" in message, (path, body, message)
    assert counts(store) == before


def test_nul_in_path_parameters_is_422(env, store):
    before = counts(store)
    with env.client("alice") as c:
        for path in ("/v1/conversations/abc%00def", "/v1/me/memory/abc%00def", "/v1/models/tiny%00", "/v1/me?x=%00"):
            method = "DELETE" if "/memory/" in path else "GET"
            assert_refused(c.request(method, path), 422)
    assert counts(store) == before


def test_invalid_utf8_body_names_the_problem(env, store):
    with env.client("alice") as c:
        for path in (CHAT, "/v1/me/memory", "/v1/feedback"):
            r = post_raw(c, path, b'{"text": "caf\xe9"}')
            assert "not valid UTF-8" in assert_refused(r, 400), path  # was "There was an error parsing the body"


STRICT = [
    ("/v1/me/consent", {"consent": "no"}, "consent", "PUT"),
    ("/v1/me/consent", {"consent": 0}, "consent", "PUT"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "n": "2"}, "n", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "n": 2.0}, "n", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "stream": 1}, "stream", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "8"}, "max_tokens", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "temperature": "0.5"}, "temperature", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "seed": True}, "seed", "POST"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "stream": False, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage", "POST"),
]


def test_strings_are_not_booleans_or_integers(env, store):
    before = counts(store)
    with env.client("alice") as c:
        for path, body, field, method in STRICT:
            assert_refused(c.request(method, path, json=body), 422, field)
        me = c.get("/v1/me").json()
    assert me["consent"] is True and counts(store) == before


UNSUPPORTED = [
    ("logprobs", True), ("frequency_penalty", 0.5), ("presence_penalty", 0.1), ("logit_bias", {"1": 2}),
    ("user", "me"), ("functions", [{"name": "f"}]), ("audio", {"voice": "x"}), ("modalities", ["text"]),
]


def test_unsupported_openai_fields_are_400_naming_the_field(env, store):
    before = counts(store)
    with env.client("alice") as c:
        for field, value in UNSUPPORTED:
            r = c.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, field: value})
            assert_refused(r, 400, field)
        r_msg = c.post(CHAT, json={"messages": [{"role": "user", "content": "hi", "refusal": None}], "max_tokens": 2})
    assert_refused(r_msg, 400, "messages[0].refusal")
    assert counts(store) == before


def test_the_local_model_refuses_tools_and_json_formats(env, store):
    hi = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    cases = [
        ({"tools": [tool]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "user", "content": "hi"},
                       {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                             "function": {"name": "f", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "c1", "content": "42"}]}, "messages[1].tool_calls"),
    ]
    before = counts(store)
    with env.client("alice") as c:
        for patch, field in cases:
            r = c.post(CHAT, json={"messages": hi, "max_tokens": 2, **patch})
            assert "cannot" in assert_refused(r, 400, field)
        ok = c.post(CHAT, json={"messages": hi, "max_tokens": 2, "response_format": {"type": "text"}})
    assert ok.status_code == 200, ok.text
    assert counts(store)[0] == before[0] + 1
