"""The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama,
a hosted API), over plain HTTP with httpx.

A batch is sent as concurrent single requests (`concurrency` in flight): these servers batch
across requests themselves (continuous batching), so that is how they are fastest.

The server proxies one answer at a time with `agenerate`, on its own event loop through aiohttp:
no worker thread per request (the sync httpx call in a thread pool cost two thread hand-offs
per proxied request; httpx's own async client cost more CPU than that, see BENCHMARKS.md).
Everything else (batches, streams, the eval runner, the CLI) uses the sync httpx client.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from posttrain.models.base import DecodingParams, Generation, Messages, StreamChunk, register_backend

__all__ = ["BackendHTTPError", "OpenAIBackend"]


class BackendHTTPError(RuntimeError):
    """The server could not be reached or answered with an error; the message is one line."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(resp: httpx.Response) -> str:
    """The server's own error message when it sent OpenAI-style JSON, else its body or status."""
    return _reason_of(resp.content, resp.reason_phrase)


def _reason_of(raw: bytes, reason_phrase: str) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _one_line(str(err["message"]))
        if isinstance(err, str) and err:
            return _one_line(err)
        if body.get("detail"):
            return _one_line(json.dumps(body["detail"]) if not isinstance(body["detail"], str) else body["detail"])
    return _one_line(text) or reason_phrase


def _finish(reason: Any) -> str:
    """The upstream's finish_reason in posttrain's vocabulary: length, tool_calls, else stop."""
    return reason if reason in ("length", "tool_calls") else "stop"


# Upstream connections kept per backend instance: enough for the requests a server proxies at once.
PROXY_CONNECTIONS = 64
# event loop -> the backends that opened an aiohttp session on it (closed by `aclose_sessions`).
# A server process runs one loop for its life; tests run several, each app closing its own.
_LOOP_SESSIONS: dict[asyncio.AbstractEventLoop, list[Any]] = {}


async def aclose_sessions() -> None:
    """Close the aiohttp sessions that `agenerate` opened on the running loop (the server calls
    this when it shuts down; a session must be closed on its own loop)."""
    loop = asyncio.get_running_loop()
    for backend in _LOOP_SESSIONS.pop(loop, []):
        session = backend._sessions.pop(loop, None)
        if session is not None:
            await session.close()


@register_backend("openai")
class OpenAIBackend:
    """Talks to `{base_url}/chat/completions`. The key comes from `api_key`, or from the
    environment variable named by `api_key_env` (the registry stores only that name).

    Tools, tool_choice, parallel_tool_calls and response_format are passed on unchanged
    (`generate(..., extra=...)`), as are tool-role messages and assistant tool_calls."""

    supports_tools = True
    parallel_requests = 64  # = PROXY_CONNECTIONS: the upstream batches across requests

    def __init__(self, base_url: str, model: str, api_key: str | None = None, api_key_env: str | None = None,
                 timeout: float = 120, concurrency: int = 8, name: str | None = None) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must name the model on the server (e.g. the name vLLM serves)")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model  # the registry passes its own name for the model
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.url = f"{self.base_url}/chat/completions"
        self._sessions: dict[asyncio.AbstractEventLoop, Any] = {}  # loop -> aiohttp.ClientSession
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            # `concurrency` bounds one generate() call's fan-out; the pool itself is shared by
            # every request the server proxies at once, so it must not queue them behind that
            # bound (a pool of `concurrency` halved proxy throughput at 16 clients).
            limits=httpx.Limits(max_connections=max(concurrency, PROXY_CONNECTIONS),
                                max_keepalive_connections=max(concurrency, PROXY_CONNECTIONS)),
        )

    def version(self) -> str:
        """The server and model name: we cannot see the weights behind an endpoint."""
        return f"{self.base_url}|{self.model}"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _headers(self) -> dict[str, str]:
        key = self.api_key
        if key is None and self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise BackendHTTPError(
                    f"the API key for {self.base_url} is read from ${self.api_key_env}, which is not set"
                )
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, conversation: Messages, params: DecodingParams, stream: bool,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {**(extra or {}),
            "model": self.model,
            "messages": conversation,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _fail(self, exc: Exception) -> BackendHTTPError:
        return BackendHTTPError(f"OpenAI-compatible server at {self.url} could not be reached: {_one_line(str(exc)) or type(exc).__name__}")

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            raise BackendHTTPError(f"OpenAI-compatible server at {self.url} answered {resp.status_code}: {_reason(resp)}")

    def _one(self, conversation: Messages, params: DecodingParams, extra: dict[str, Any] | None = None) -> Generation:
        started = time.perf_counter()
        try:
            resp = self._client.post(self.url, json=self._body(conversation, params, False, extra), headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        return self._generation(resp.status_code, resp.content, resp.reason_phrase, started)

    def _generation(self, status: int, raw: bytes, reason_phrase: str, started: float) -> Generation:
        """The answer in a chat.completion body, or BackendHTTPError naming what was wrong."""
        if status >= 400:
            raise BackendHTTPError(f"OpenAI-compatible server at {self.url} answered {status}: {_reason_of(raw, reason_phrase)}")
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            calls = choice["message"].get("tool_calls") or None
            if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
                raise TypeError("tool_calls")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise BackendHTTPError(
                f"OpenAI-compatible server at {self.url} sent a response without choices[0].message: "
                f"{_one_line(raw.decode('utf-8', 'replace'), 120)}"
            ) from None
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason=_finish(choice.get("finish_reason")),
            extra={"usage_reported": bool(usage)},
            tool_calls=calls,
        )

    async def agenerate(self, conversation: Messages, params: DecodingParams,
                        extra: dict[str, Any] | None = None) -> Generation:
        """One answer, awaited on the running event loop (aiohttp; one connection pool per
        loop). The same request, answer and errors as `generate([conversation], ...)[0]`."""
        import aiohttp

        started = time.perf_counter()
        body = json.dumps(self._body(conversation, params, False, extra)).encode()
        headers = {"Content-Type": "application/json", **self._headers()}
        try:
            async with self._session().post(self.url, data=body, headers=headers) as resp:
                raw = await resp.read()
                status, phrase = resp.status, resp.reason or ""
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None
        return self._generation(status, raw, phrase, started)

    def _session(self):  # noqa: ANN202  (aiohttp.ClientSession, imported where used)
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(self.concurrency, PROXY_CONNECTIONS)),
                timeout=aiohttp.ClientTimeout(total=None, connect=min(self.timeout, 10.0), sock_read=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),  # an API upstream sets no cookies worth keeping
            )
            self._sessions[loop] = session
            _LOOP_SESSIONS.setdefault(loop, []).append(self)
        return session

    def generate(self, conversations: list[Messages], params: DecodingParams,
                 extra: dict[str, Any] | None = None) -> list[Generation]:
        """One request per conversation, `concurrency` at a time; results in input order.
        `extra` holds OpenAI request fields passed on unchanged (tools, response_format...)."""
        if len(conversations) <= 1:
            return [self._one(c, params, extra) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(lambda c: self._one(c, params, extra), conversations))

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        """Parse the server's SSE stream; the last chunk carries finish_reason and usage."""
        finish, usage = None, {}
        try:
            with self._client.stream("POST", self.url, json=self._body(conversation, params, True),
                                     headers=self._headers()) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._check(resp)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments (": keep-alive"), event names
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        raise BackendHTTPError(
                            f"OpenAI-compatible server at {self.url} sent a stream line that is not JSON: {_one_line(payload, 120)}"
                        ) from None
                    if event.get("error"):
                        raise BackendHTTPError(f"OpenAI-compatible server at {self.url} reported: {_one_line(str(event['error']))}")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield StreamChunk(piece)
                        finish = choice.get("finish_reason") or finish
        except httpx.HTTPError as exc:
            raise self._fail(exc) from None
        yield StreamChunk(
            "",
            finish_reason="length" if finish == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
