"""Tools and response_format through the chat API: passed to an OpenAI-compatible upstream (a
real HTTP server on a loopback port) unchanged, logged with the exchange (tool calls on the
completion row, tool results in the transcript, JSON answers checked), and rated like any
other exchange."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi import FastAPI

from posttrain.models.registry import register_model
from posttrain.serve.testing import make_env, serve_in_thread
from posttrain.store import chat as chat_queries

CHAT = "/v1/chat/completions"
KEY = "sk-upstream"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _upstream(requests: list[dict]) -> FastAPI:
    """A tool-calling 'model': asked with tools, it calls the first one; given a tool result,
    it answers with it; asked for JSON, it answers JSON (or not, when the prompt says 'broken')."""
    app = FastAPI()
    lock = threading.Lock()

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        with lock:
            requests.append(body)
        last = body["messages"][-1]
        message: dict = {"role": "assistant", "content": None}
        finish = "stop"
        if last["role"] == "tool":
            message["content"] = f"It is {last['content']} there."
        elif body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": name, "arguments": json.dumps({"city": "Oslo"})}}]
            finish = "tool_calls"
        elif body.get("response_format"):
            message["content"] = "{broken" if "broken" in last["content"] else json.dumps({"answer": 42})
        else:
            message["content"] = "plain"
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    return app


@pytest.fixture(scope="module")
def upstream():
    requests: list[dict] = []
    with serve_in_thread(_upstream(requests)) as url:
        yield url + "/v1", requests


@pytest.fixture
def env(store, upstream, monkeypatch):
    url, requests = upstream
    requests.clear()
    monkeypatch.setenv("HARDEN_UPSTREAM_KEY", KEY)
    env = make_env(store, default_model="upstream")
    register_model(store, "upstream", "openai", {"base_url": url, "model": "served", "api_key_env": "HARDEN_UPSTREAM_KEY"})
    return env


def test_a_tool_exchange_passes_through_is_stored_and_rated(env, store, upstream):
    _, requests = upstream
    first = [{"role": "user", "content": "Weather in Oslo?"}]
    with env.client("alice") as c:
        r = c.post(CHAT, json={"messages": first, "tools": [WEATHER], "tool_choice": "auto",
                               "parallel_tool_calls": False})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        sent = requests[-1]
        assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        calls = choice["message"]["tool_calls"]
        assert calls[0]["function"]["name"] == "get_weather"

        history = first + [{"role": "assistant", "content": None, "tool_calls": calls},
                           {"role": "tool", "tool_call_id": "call_1", "content": "12 C and raining"}]
        r2 = c.post(CHAT, json={"messages": history, "tools": [WEATHER]})
        assert r2.status_code == 200, r2.text
        assert r2.json()["choices"][0]["message"]["content"] == "It is 12 C and raining there."
        assert r2.json()["conversation_id"] == r.json()["conversation_id"]  # the same conversation
        # The upstream got the tool turns unchanged (after posttrain's system message).
        assert requests[-1]["messages"][1:] == [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "12 C and raining", "tool_call_id": "call_1"},
        ]
        rated = c.post("/v1/feedback", json={"completion_id": choice["completion_id"], "kind": "thumbs", "value": 1})
        assert rated.status_code == 201, rated.text
        conv = c.get(f"/v1/conversations/{r.json()['conversation_id']}").json()

    with store.session() as s:
        row = chat_queries.get_completion(s, choice["completion_id"])
    assert row["tool_calls"] == calls and row["finish_reason"] == "tool_calls"
    assert row["params"]["tools"] == [WEATHER] and row["params"]["tool_choice"] == "auto"
    roles = [(m["role"], m.get("tool_call_id"), bool(m.get("tool_calls"))) for m in conv["messages"]]
    assert roles == [("user", None, False), ("assistant", None, True), ("tool", "call_1", False), ("assistant", None, False)]
    assert conv["messages"][2]["content"] == "12 C and raining"
    tool_answer = next(cp for cp in conv["completions"] if cp["id"] == choice["completion_id"])
    assert tool_answer["tool_calls"] == calls and tool_answer["feedback"][0]["value"] == 1


def test_response_format_is_passed_upstream_and_json_answers_are_checked(env, store, upstream):
    _, requests = upstream
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    with env.client("alice") as c:
        ok = c.post(CHAT, json={"messages": [{"role": "user", "content": "6 x 7?"}], "response_format": fmt})
        assert requests[-1]["response_format"] == fmt
        bad = c.post(CHAT, json={"messages": [{"role": "user", "content": "broken please"}],
                                 "response_format": {"type": "json_object"}})
        streamed = c.post(CHAT, json={"messages": [{"role": "user", "content": "x"}], "stream": True,
                                      "response_format": {"type": "json_object"}})
    assert ok.status_code == 200 and bad.status_code == 200
    assert streamed.status_code == 400 and streamed.json()["error"]["message"].startswith("stream:")
    with store.session() as s:
        ok_row = chat_queries.get_completion(s, ok.json()["id"])
        bad_row = chat_queries.get_completion(s, bad.json()["id"])
    assert ok_row["checks"] == {"json": True, "schema": True}
    assert bad_row["checks"] == {"json": False}
    assert ok_row["params"]["response_format"] == fmt
