"""The OpenAI-compatible backend against a real HTTP server on a loopback port.

The server is a small FastAPI app speaking the chat-completions format (JSON and SSE), run by
uvicorn in a thread: every request is a real round trip through httpx and a socket.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from posttrain.models.base import DecodingParams, create_backend
from posttrain.models.openai_http import BackendHTTPError, OpenAIBackend

KEY = "sk-test-123"


def _answer(body: dict) -> tuple[str, str, int, int]:
    """Deterministic 'model': echoes the last user message word by word, honouring max_tokens
    and stop like a real server. Returns (text, finish_reason, prompt_tokens, completion_tokens)."""
    prompt = " ".join(m["content"] for m in body["messages"])
    words = ("echo: " + body["messages"][-1]["content"]).split(" ")
    limit = body.get("max_tokens") or 100
    text = " ".join(words[:limit])
    finish = "length" if len(words) > limit else "stop"
    for s in body.get("stop") or []:
        if s in text:
            text, finish = text[: text.index(s)], "stop"
    return text, finish, len(prompt.split()), len(text.split())


def _make_app(state: dict):
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict, request: Request):  # sync: FastAPI runs it in a thread pool, so requests overlap
        state["requests"].append(body)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "auth"}}, 401)
        content = body["messages"][-1]["content"]
        if content == "crash":
            return PlainTextResponse("Internal Server Error\nTraceback (most recent call last): ...", 500)
        with state["lock"]:
            state["inflight"] += 1
            state["max_inflight"] = max(state["max_inflight"], state["inflight"])
        try:
            time.sleep(float(body.get("seed") or 0) / 1000)  # the tests slow some requests down
            text, finish, p, c = _answer(body)
        finally:
            with state["lock"]:
                state["inflight"] -= 1
        if not body.get("stream"):
            return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                    "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}

        def events():
            pieces = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
            for piece in pieces:
                chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield ": keep-alive comment\n\n"
            yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': p, 'completion_tokens': c}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    state = {"requests": [], "lock": threading.Lock(), "inflight": 0, "max_inflight": 0}
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(_make_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", state
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def backend(server):
    url, state = server
    state["requests"].clear()
    b = OpenAIBackend(url, "served-model", api_key=KEY, concurrency=3)
    yield b
    b.close()


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be nice"}, {"role": "user", "content": text}]


def test_plain_round_trip_sends_the_decoding_params(backend, server):
    params = DecodingParams(max_new_tokens=50, temperature=0.3, top_p=0.9, stop=("END",), seed=7)
    gen = backend.generate([_conv("hello there world END ignored")], params)[0]
    assert gen.text == "echo: hello there world "
    assert (gen.finish_reason, gen.prompt_tokens, gen.completion_tokens) == ("stop", 7, 4)
    assert gen.latency_ms > 0
    sent = server[1]["requests"][-1]
    assert sent["model"] == "served-model"
    assert sent["messages"] == _conv("hello there world END ignored")
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (50, 0.3, 0.9, ["END"], 7)


def test_length_finish_reason_comes_from_the_server(backend):
    gen = backend.generate([_conv("one two three four five")], DecodingParams(max_new_tokens=3))[0]
    assert gen.text == "echo: one two"
    assert gen.finish_reason == "length"


def test_batch_runs_concurrently_and_keeps_order(backend, server):
    texts = [f"question {i}" for i in range(7)]
    # seed=300 makes the test server take 0.3 s per request.
    gens = backend.generate([_conv(t) for t in texts], DecodingParams(seed=300))
    assert [g.text for g in gens] == [f"echo: {t}" for t in texts]
    assert 2 <= server[1]["max_inflight"] <= 3  # concurrency=3 in flight, never more


def test_stream_round_trip(backend):
    params = DecodingParams(max_new_tokens=5)
    chunks = list(backend.stream(_conv("a b c d e f g"), params))
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == backend.generate([_conv("a b c d e f g")], params)[0].text
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("length", 9, 5)
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_wrong_key_is_a_one_line_error_naming_the_server(server):
    url, _ = server
    bad = OpenAIBackend(url, "served-model", api_key="sk-wrong")
    for call in (lambda: bad.generate([_conv("hi")], DecodingParams()),
                 lambda: list(bad.stream(_conv("hi"), DecodingParams()))):
        with pytest.raises(BackendHTTPError) as exc:
            call()
        assert str(exc.value) == (f"OpenAI-compatible server at {url}/chat/completions answered 401: "
                                  "Incorrect API key provided")


def test_key_is_read_from_the_named_environment_variable(server, monkeypatch):
    url, _ = server
    b = create_backend("openai", base_url=url, model="served-model", api_key_env="TEST_SERVER_KEY")
    monkeypatch.delenv("TEST_SERVER_KEY", raising=False)
    with pytest.raises(BackendHTTPError, match=r"\$TEST_SERVER_KEY, which is not set"):
        b.generate([_conv("hi")], DecodingParams())
    monkeypatch.setenv("TEST_SERVER_KEY", KEY)
    assert b.generate([_conv("hi")], DecodingParams())[0].text == "echo: hi"


def test_server_error_with_a_plain_text_body(backend, server):
    with pytest.raises(BackendHTTPError) as exc:
        backend.generate([_conv("crash")], DecodingParams())
    message = str(exc.value)
    assert message.startswith(f"OpenAI-compatible server at {server[0]}/chat/completions answered 500: Internal Server Error")
    assert "\n" not in message


def test_unreachable_server_is_a_one_line_error():
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    b = OpenAIBackend(url, "m", timeout=5)
    with pytest.raises(BackendHTTPError, match="could not be reached") as exc:
        b.generate([_conv("hi")], DecodingParams())
    assert url in str(exc.value) and "\n" not in str(exc.value)


def _agenerate(backend: OpenAIBackend, conv, params: DecodingParams, extra=None):
    """backend.agenerate on a loop of its own, its sessions closed as the server closes them."""
    import asyncio

    from posttrain.models.openai_http import aclose_sessions

    async def main():
        try:
            return await backend.agenerate(conv, params, extra)
        finally:
            await aclose_sessions()

    return asyncio.run(main())


def test_agenerate_sends_and_answers_as_generate_does(backend, server):
    """The server's path (aiohttp on the event loop) against the sync one (httpx): the same
    request body, the same Generation."""
    params = DecodingParams(max_new_tokens=50, temperature=0.3, top_p=0.9, stop=("END",), seed=7)
    extra = {"response_format": {"type": "json_object"}}
    sync = backend.generate([_conv("hello there world END ignored")], params, extra=extra)[0]
    sent_sync = server[1]["requests"][-1]
    gen = _agenerate(backend, _conv("hello there world END ignored"), params, extra)
    assert server[1]["requests"][-1] == sent_sync
    assert (gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens, gen.tool_calls) == \
        (sync.text, sync.finish_reason, sync.prompt_tokens, sync.completion_tokens, sync.tool_calls) == \
        ("echo: hello there world ", "stop", 7, 4, None)
    assert gen.latency_ms > 0 and gen.extra == {"usage_reported": True}
    assert _agenerate(backend, _conv("one two three"), DecodingParams(max_new_tokens=2)).finish_reason == "length"


def test_agenerate_errors_are_the_same_one_line_errors(server):
    url, _ = server
    bad = OpenAIBackend(url, "served-model", api_key="sk-wrong")
    with pytest.raises(BackendHTTPError) as exc:
        _agenerate(bad, _conv("hi"), DecodingParams())
    assert str(exc.value) == f"OpenAI-compatible server at {url}/chat/completions answered 401: Incorrect API key provided"
    good = OpenAIBackend(url, "served-model", api_key=KEY)
    with pytest.raises(BackendHTTPError) as exc:
        _agenerate(good, _conv("crash"), DecodingParams())
    assert str(exc.value).startswith(f"OpenAI-compatible server at {url}/chat/completions answered 500: Internal Server Error")
    assert "\n" not in str(exc.value)
    nowhere = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(BackendHTTPError, match="could not be reached") as exc:
        _agenerate(OpenAIBackend(nowhere, "m", timeout=5), _conv("hi"), DecodingParams())
    assert nowhere in str(exc.value) and "\n" not in str(exc.value)


def test_version_and_bad_config():
    assert OpenAIBackend("http://h:1/v1/", "m").version() == "http://h:1/v1|m"
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend("h:1/v1", "m")
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIBackend("http://h:1/v1", "m", concurrency=0)


def test_posttrain_serve_proxies_an_openai_upstream_and_logs_the_exchange(server, tmp_path):
    """posttrain in front of an OpenAI-compatible upstream: the answer comes from the upstream
    and the exchange is logged like any other."""
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from posttrain.models.registry import register_model
    from posttrain.serve.app import create_app
    from posttrain.store import Completion, Store
    from posttrain.store.users import add_user

    url, state = server
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        register_model(store, "upstream", "openai", {"base_url": url, "model": "served-model", "api_key_env": "UPSTREAM_KEY"})
        _, key = add_user(store, "alice")
        import os

        os.environ["UPSTREAM_KEY"] = KEY
        try:
            app = create_app(store, default_model="upstream")
            with TestClient(app) as client:
                r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"messages": [{"role": "user", "content": "proxy me please"}], "max_tokens": 10, "n": 2})
            # The upstream was called on the event loop (agenerate), not from the generation pool.
            assert not app.state.generation_pool._threads
        finally:
            del os.environ["UPSTREAM_KEY"]
        assert r.status_code == 200, r.text
        body = r.json()
        assert [c["message"]["content"] for c in body["choices"]] == ["echo: proxy me please"] * 2
        assert state["requests"][-1]["model"] == "served-model"
        with store.session() as s:
            rows = s.scalars(select(Completion).where(Completion.request_id.is_not(None))).all()
        assert sorted(c.id for c in rows) == sorted(c["completion_id"] for c in body["choices"])
        assert {(c.model, c.text) for c in rows} == {("upstream", "echo: proxy me please")}
    finally:
        store.close()
