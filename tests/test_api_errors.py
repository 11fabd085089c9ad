"""Bad input: malformed JSON is 400, wrong types and values 422, oversized bodies 413 (also when
chunked), bad keys 401, with one OpenAI-shaped line each — and nothing is stored on any 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from posttrain.serve.testing import make_env
from posttrain.store import Completion, Conversation, CustomInstructions, FeedbackEvent, Memory, Message

TABLES = (Completion, Conversation, Message, FeedbackEvent, Memory, CustomInstructions)


@pytest.fixture
def env(store, tiny_model_dir):
    return make_env(store, tiny_model_dir)


@pytest.fixture
def cid(env):
    with env.client("alice") as c:
        r = c.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "q"}], "max_tokens": 2})
    return r.json()["id"]


def _counts(store) -> tuple[int, ...]:
    with store.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in TABLES)


def _assert_error(r, status: int, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type"} and err["message"] and "\n" not in err["message"]
    if message is not None:
        assert err["message"] == message


FEEDBACK_422 = [
    ({"kind": "thumbs", "value": 1}, "completion_id: required"),
    ({"completion_id": 5, "kind": "thumbs", "value": 1}, "completion_id: must be a string"),
    ({"completion_id": "@", "kind": "like", "value": 1}, "kind: must be one of thumbs, pairwise, edit, implicit"),
    ({"completion_id": "@", "kind": "thumbs", "value": 2}, "value: must be 1 or -1 for thumbs"),
    ({"completion_id": "@", "kind": "thumbs", "value": True}, "value: must be 1 or -1 for thumbs"),
    ({"completion_id": "@", "kind": "thumbs", "value": "1"}, "value: must be 1 or -1 for thumbs"),
    ({"completion_id": "@", "kind": "thumbs"}, "value: required for thumbs (1 or -1)"),
    ({"completion_id": "@", "kind": "thumbs", "value": -1, "reasons": ["rude"]},
     "reasons[0]: must be one of wrong, unhelpful, too_long, flattering, evasive, unsafe, other"),
    ({"completion_id": "@", "kind": "thumbs", "value": -1, "reasons": "wrong"}, "reasons: must be an array"),
    ({"completion_id": "@", "kind": "thumbs", "value": 1, "signal": "copy"}, "signal: only allowed when kind is implicit"),
    ({"completion_id": "@", "kind": "thumbs", "value": 1, "reason": "typo"},
     "reason: unknown field; allowed: completion_id, kind, value, reasons, comment, other_completion_id, "
     "positions, edited_text, signal, idempotency_key"),
    ({"completion_id": "@", "kind": "pairwise", "value": "c", "other_completion_id": "x"},
     "value: must be one of a, b, tie for pairwise"),
    ({"completion_id": "@", "kind": "pairwise", "value": "a"}, "other_completion_id: required"),
    ({"completion_id": "@", "kind": "pairwise", "value": "a", "other_completion_id": "@"},
     "other_completion_id: must differ from completion_id"),
    ({"completion_id": "@", "kind": "pairwise", "value": "a", "other_completion_id": "x", "positions": {"left": "x"}},
     'positions: must be {"left": <completion_id>, "right": <completion_id>}'),
    ({"completion_id": "@", "kind": "edit"}, "edited_text: required"),
    ({"completion_id": "@", "kind": "edit", "edited_text": "   "}, "edited_text: must not be empty"),
    ({"completion_id": "@", "kind": "edit", "value": 1, "edited_text": "x"}, "value: must be null or absent for edit"),
    ({"completion_id": "@", "kind": "implicit", "signal": "like"},
     "signal: must be one of regenerate, copy, abandon, continue"),
    ({"completion_id": "@", "kind": "implicit", "signal": "copy", "idempotency_key": "k" * 201},
     "idempotency_key: must be at most 200 characters"),
    ([{"completion_id": "@"}], "body: must be a JSON object"),
]


@pytest.mark.parametrize("payload,message", FEEDBACK_422, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(FEEDBACK_422)])
def test_invalid_feedback_is_422_with_one_line_and_stores_nothing(env, store, cid, payload, message):
    if isinstance(payload, dict) and payload.get("completion_id") == "@":
        payload = {**payload, "completion_id": cid}
        if payload.get("other_completion_id") == "@":
            payload["other_completion_id"] = cid
    before = _counts(store)
    with env.client("alice") as c:
        r = c.post("/v1/feedback", json=payload)
    _assert_error(r, 422, message)
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert _counts(store) == before


CHAT_422 = [
    ({}, "messages: required"),
    ({"messages": []}, "messages: must not be empty"),
    ({"messages": "hi"}, "messages: must be an array"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role: must be one of system, developer, user, assistant, tool"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id: required on tool messages and only there"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content: must be a string or an array"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "messages: the last message must have role user (or tool, answering a tool call)"),
    ({"max_tokens": 0}, "max_tokens: must be >= 1"),
    ({"max_tokens": "many"}, "max_tokens: must be an integer"),
    ({"temperature": 3}, "temperature: must be <= 2"),
    ({"top_p": 0}, "top_p: must be > 0"),
    ({"n": 5}, "n: must be <= 4"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop: at most 4 stop strings"),
    ({"stream": "yes please"}, "stream: must be true or false"),
]


@pytest.mark.parametrize("patch,message", CHAT_422, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(CHAT_422)])
def test_invalid_chat_requests_are_422_and_store_nothing(env, store, patch, message):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **patch}
    if patch == {}:
        body.pop("messages")
    before = _counts(store)
    with env.client("alice") as c:
        r = c.post("/v1/chat/completions", json=body)
    _assert_error(r, 422, message)
    assert _counts(store) == before


@pytest.mark.parametrize("method,path", [
    ("post", "/v1/chat/completions"), ("post", "/v1/feedback"), ("post", "/v1/me/memory"),
    ("put", "/v1/me/consent"), ("put", "/v1/me/instructions"),
])
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", None])
def test_malformed_json_is_400_on_every_body_endpoint(env, store, method, path, content_type):
    before = _counts(store)
    headers = {"Content-Type": content_type} if content_type else {}
    with env.client("alice") as c:
        r = getattr(c, method)(path, content=b'{"text": "unterminated', headers=headers)
    _assert_error(r, 400)
    assert r.json()["error"]["message"].startswith("request body is not valid JSON")
    assert _counts(store) == before


def test_oversized_bodies_are_413_by_length_and_when_chunked(env, store, cid):
    big = b'{"completion_id": "' + cid.encode() + b'", "kind": "edit", "edited_text": "' + b"x" * (1 << 20) + b'"}'
    before = _counts(store)
    with env.client("alice") as c:
        by_length = c.post("/v1/feedback", content=big, headers={"Content-Type": "application/json"})

        def chunks():  # a generator body is sent chunked, without Content-Length
            for i in range(0, len(big), 64 * 1024):
                yield big[i:i + 64 * 1024]

        chunked = c.post("/v1/feedback", content=chunks(), headers={"Content-Type": "application/json"})
        chat = c.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        just_under = c.post("/v1/feedback", json={"completion_id": cid, "kind": "edit", "edited_text": "y" * 90_000})
    for r in (by_length, chunked, chat):
        _assert_error(r, 413, "request body is larger than 1 MiB")
        assert r.json()["error"]["type"] == "request_too_large"
    assert just_under.status_code == 201
    assert _counts(store)[3] == before[3] + 1  # only the accepted edit


def test_missing_or_wrong_keys_are_401_and_health_needs_none(env):
    with env.client() as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        missing = anon.get("/v1/models")
        _assert_error(missing, 401)
        assert missing.headers["www-authenticate"] == "Bearer"
        _assert_error(anon.get("/v1/me", headers={"Authorization": "Bearer pt-not-a-key"}), 401, "invalid API key")
        _assert_error(anon.get("/v1/me", headers={"Authorization": "Basic abc"}), 401)
        r = anon.post("/v1/feedback", json={"completion_id": "x", "kind": "thumbs", "value": 1})
        _assert_error(r, 401)
        assert r.json()["error"]["type"] == "authentication_error"


def test_unknown_paths_and_methods_answer_in_the_error_shape(env):
    with env.client("alice") as c:
        _assert_error(c.get("/v1/nope"), 404)
        _assert_error(c.delete("/v1/feedback"), 405)
        _assert_error(c.get("/v1/conversations/" + "x" * 41), 404)
        _assert_error(c.get("/v1/conversations/" + "x" * 201), 422)
        _assert_error(c.delete("/v1/me/memory/does-not-exist"), 404, "memory 'does-not-exist' not found")


def test_openapi_documents_every_endpoint_and_the_feedback_body(env):
    with env.client() as c:
        spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/chat/completions", "/v1/models", "/v1/feedback", "/v1/conversations",
                 "/v1/conversations/{conversation_id}", "/v1/me", "/v1/me/consent", "/v1/me/instructions",
                 "/v1/me/memory", "/v1/me/memory/{memory_id}", "/v1/admin/users", "/healthz"):
        assert path in paths, path
    schema = paths["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["kind"]["enum"] == ["thumbs", "pairwise", "edit", "implicit"]
