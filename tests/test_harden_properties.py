"""Property-based tests (hypothesis) of every string and JSON field of the API, on SQLite and on
PostgreSQL: any value in any field, including NUL characters, lone surrogates, deep or odd JSON
and unknown field names, is answered without a 5xx, and a 4xx stores nothing.

Bounded: MAX_EXAMPLES requests per store, answers cut to 2 tokens of the tiny model."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from posttrain.serve.testing import make_env
from posttrain.store import Completion, Conversation, CustomInstructions, FeedbackEvent, Memory, Message, User

TABLES = (Completion, Conversation, Message, FeedbackEvent, Memory, CustomInstructions, User)
MAX_EXAMPLES = 200

# Any text: printable or not, NUL, and lone surrogates (hypothesis leaves those out by default).
TEXT = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d", "👍", "\ufeff", "null"]),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
VALUE = st.one_of(TEXT, JSON)


def _counts(store) -> tuple[int, ...]:
    with store.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in TABLES)


def _set(body: dict, path: tuple, value) -> dict:
    """A copy of `body` with the field at `path` (keys and list indexes) replaced by `value`."""
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _operations(cids: list[str], memory_id: str, conversation_id: str) -> list[tuple]:
    """(method, path template, valid body, field paths to vary) for every body and path field."""
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}
    thumbs = {"completion_id": cids[0], "kind": "thumbs", "value": 1, "reasons": ["wrong"], "comment": "c",
              "idempotency_key": "k"}
    pair = {"completion_id": cids[0], "other_completion_id": cids[1], "kind": "pairwise", "value": "a",
            "positions": {"left": cids[0], "right": cids[1]}}
    edit = {"completion_id": cids[0], "kind": "edit", "edited_text": "better"}
    implicit = {"completion_id": cids[0], "kind": "implicit", "signal": "copy"}
    return [
        ("POST", "/v1/chat/completions", chat,
         [("model",), ("messages", 0, "content"), ("messages", 0, "role"), ("messages", 0, "name"),
          ("messages",), ("conversation_id",), ("stop",), ("seed",), ("n",), ("stream",), ("temperature",),
          ("top_p",), ("stream_options",), ("tools",), ("tool_choice",), ("response_format",), ("logprobs",),
          ("messages", 0, "tool_calls"), ("messages", 0, "tool_call_id")]),
        ("POST", "/v1/feedback", thumbs,
         [("completion_id",), ("kind",), ("value",), ("reasons",), ("reasons", 0), ("comment",),
          ("idempotency_key",), ("edited_text",), ("unknown",)]),
        ("POST", "/v1/feedback", pair,
         [("other_completion_id",), ("positions",), ("positions", "left"), ("positions", "right"), ("value",)]),
        ("POST", "/v1/feedback", edit, [("edited_text",), ("signal",)]),
        ("POST", "/v1/feedback", implicit, [("signal",), ("positions",)]),
        ("POST", "/v1/me/memory", {"text": "likes tea"}, [("text",), ("extra",)]),
        ("PUT", "/v1/me/instructions", {"text": "be brief"}, [("text",), ("extra",)]),
        ("PUT", "/v1/me/consent", {"consent": True}, [("consent",), ("extra",)]),
        ("DELETE", "/v1/me/memory/{}", memory_id, [None]),
        ("GET", "/v1/conversations/{}", conversation_id, [None]),
        ("GET", "/v1/models/{}", "tiny", [None]),
    ]


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _check_any_value(env, ops, failures, data) -> None:
    method, template, valid, fields = data.draw(st.sampled_from(ops))
    field = data.draw(st.sampled_from(fields))
    value = data.draw(VALUE if field is not None else TEXT)
    if field is None:  # a path parameter
        path, content = template.format(quote(value, safe="", errors="surrogatepass")), None
    else:
        path, content = template, json.dumps(_set(valid, field, value))  # ASCII escapes keep surrogates
    before = _counts(env.store)
    with env.client("alice") as c:
        r = c.request(method, path, content=content,
                      headers={"content-type": "application/json"} if content is not None else {})
    where = f"{method} {path} {field}={value!r:.80}"
    if r.status_code >= 500:
        failures.append(f"{where} -> {r.status_code}: {r.text[:200]}")
    elif r.status_code >= 400:
        err = r.json().get("error", {})
        if set(err) != {"message", "type"} or "\n" in err["message"]:
            failures.append(f"{where}: error not one OpenAI-shaped line: {r.text[:200]}")
        if _counts(env.store) != before:
            failures.append(f"{where} -> {r.status_code} but something was stored")


@pytest.mark.timeout(300)
def test_no_5xx_and_nothing_stored_on_4xx_for_any_field_value(store, tiny_model_dir):
    env = make_env(store, tiny_model_dir)
    with env.client("alice") as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}], "max_tokens": 2, "n": 2})
        cids = [ch["completion_id"] for ch in r.json()["choices"]]
        memory_id = c.post("/v1/me/memory", json={"text": "likes tea"}).json()["id"]
    failures: list[str] = []
    _check_any_value(env, _operations(cids, memory_id, r.json()["conversation_id"]), failures)
    assert failures == [], "\n".join(failures[:10])
