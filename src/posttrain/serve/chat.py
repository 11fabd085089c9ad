"""POST /v1/chat/completions (OpenAI-compatible, streaming or not).

Every exchange is logged before the client hears the end of it: the conversation and its
transcript, and one completion row per choice holding the model, the decoding parameters (tools
and response_format included), the exact prompt the model saw (personalization and the server's
system message included), the text and tool calls, latency, token counts, and the custom
instructions and memory in effect. Each request is admitted by the per-user limits and each
answer waits for a fair slot (serve/scheduler.py). Generation runs in worker threads, so the
event loop keeps answering feedback while a model is busy. A client that disconnects, streaming
or not, stops the generation (the model is free for the next request at once); that exchange is
stored with the text generated so far and finish_reason "abandoned", and nothing else (no
feedback event) is added.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from posttrain.feedback import personalization
from posttrain.ids import new_id
from posttrain.models.base import Backend, DecodingParams, Generation, StreamChunk
from posttrain.serve.auth import current_user
from posttrain.serve.errors import ApiError, error_body, one_line
from posttrain.serve.generation import ABANDONED, generate_choices, lane_of, output_checks, watch_disconnect
from posttrain.serve.scheduler import RateLimited, Ticket, TooLarge
from posttrain.serve.schemas import UNSUPPORTED_HINT, ChatRequest
from posttrain.store import chat as chat_queries
from posttrain.store import personal as personal_queries
from posttrain.store.users import UserInfo

router = APIRouter(tags=["chat"])
log = logging.getLogger("posttrain.serve")
__all__ = ["ABANDONED", "router"]


@dataclass
class Turn:
    """What one request resolved to before generating."""

    user: UserInfo
    model: str
    messages: list[dict[str, Any]]  # as the client sent them (normalized)
    prompt: list[dict[str, Any]]  # as the model sees them
    params: DecodingParams
    conversation_id: str
    is_new: bool
    instructions: str | None
    memory: list[str]
    extra: dict[str, Any] | None = None  # OpenAI fields passed upstream (tools, response_format)
    response_format: Any = None
    assignment: dict[str, Any] | None = None  # the A/B arm this request was routed to


def _params(req: ChatRequest) -> DecodingParams:
    defaults = DecodingParams()
    stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    return DecodingParams(
        max_new_tokens=req.max_completion_tokens or req.max_tokens or defaults.max_new_tokens,
        temperature=defaults.temperature if req.temperature is None else req.temperature,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        stop=tuple(stop),
        seed=req.seed,
    )


def _title(messages: list[dict[str, str]]) -> str:
    first = next((m["content"] for m in messages if m["role"] == "user"), "")
    return one_line(first, limit=80) or "New conversation"


async def _backend(request: Request, name: str) -> Backend:
    from posttrain.models.registry import UnknownModel, cached_backend, load_backend

    store = request.app.state.store
    backend = cached_backend(store, name)  # the usual case: no thread hop, no read
    if backend is not None:
        return backend
    try:
        return await anyio.to_thread.run_sync(load_backend, store, name)
    except UnknownModel as exc:
        raise ApiError(404, f"model {name!r} not found; GET /v1/models lists the registered models") from exc
    except ValueError as exc:  # a registered model whose config no longer loads
        raise ApiError(400, f"model {name!r} cannot be loaded: {exc}") from exc


async def _resolve(request: Request, req: ChatRequest, user: UserInfo) -> tuple[Turn, Backend]:
    store = request.app.state.store
    model = req.model or request.app.state.default_model
    from posttrain.experiments import route  # A/B: sticky routing, cached per process

    model, assignment = route(store, user.id, model)
    messages = [m.plain() for m in req.messages]
    cache = request.app.state.personalization
    personal = cache.get(user.id)
    token = cache.token()
    continues = req.conversation_id is not None or len(messages) > 1

    def read() -> tuple[str | None, tuple[str | None, list[str]]]:
        with store.session() as s:
            if req.conversation_id is not None:
                owned = chat_queries.owns_conversation(s, user.id, req.conversation_id)
                conv = req.conversation_id if owned else None
            elif len(messages) > 1:
                conv = chat_queries.find_conversation_by_transcript(
                    s, user.id, chat_queries.transcript_hash(messages[:-1])
                )
            else:
                conv = None
            return conv, personal or personal_queries.personalization(s, user.id)

    conv: str | None = None
    if continues or personal is None:  # a new conversation with cached personalization reads nothing
        conv, fresh = await anyio.to_thread.run_sync(read)
        if personal is None:
            cache.put(user.id, fresh, token)
        personal = fresh
    if req.conversation_id is not None and conv is None:
        raise ApiError(404, f"conversation {req.conversation_id!r} not found")
    instructions, memory = personal
    backend = await _backend(request, model)
    turn = Turn(
        user=user, model=model, messages=messages,
        prompt=personalization.apply(messages, instructions, memory,
                                     default_system=request.app.state.system_prompt),
        params=_params(req), conversation_id=conv or new_id(), is_new=conv is None,
        instructions=instructions, memory=memory, extra=req.upstream_extra(),
        response_format=req.response_format, assignment=assignment,
    )
    return turn, backend


async def _log(request: Request, turn: Turn, gens: list[Generation], request_id: str,
               ids: list[str], stream: bool) -> None:
    """Commit the exchange (returns only after the commit) and prime the feedback cache."""
    now = datetime.now(timezone.utc)
    # The tools and response format were part of what the model saw: stored with the params.
    params = {**turn.params.to_dict(), "n": len(gens), "stream": stream, **(turn.extra or {}),
              **({"experiment": turn.assignment} if turn.assignment else {})}
    completions = [
        {
            "id": cid, "request_id": request_id, "choice_index": i,
            "conversation_id": turn.conversation_id, "user_id": turn.user.id, "model": turn.model,
            "params": params, "prompt": turn.prompt, "text": g.text, "finish_reason": g.finish_reason,
            "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "latency_ms": g.latency_ms, "custom_instructions": turn.instructions,
            "memory": turn.memory, "created_at": now, "tool_calls": g.tool_calls,
            "checks": output_checks(g, turn.response_format),
        }
        for i, (cid, g) in enumerate(zip(ids, gens))
    ]
    transcript = [{"id": new_id(), **m} for m in turn.messages]
    transcript.append({"id": new_id(), "role": "assistant", "content": gens[0].text, "completion_id": ids[0],
                       "tool_calls": gens[0].tool_calls})
    exchange = chat_queries.Exchange(
        user_id=turn.user.id, conversation_id=turn.conversation_id, is_new=turn.is_new,
        title=_title(turn.messages), transcript=transcript, completions=completions, now=now,
    )
    await request.app.state.exchanges.record(exchange)  # with the concurrent requests' (exchange_log.py)
    key = chat_queries.prompt_key(turn.prompt)
    for cid in ids:
        request.app.state.feedback.remember(cid, turn.user.id, request_id, key)


def _usage(gens: list[Generation]) -> dict[str, int]:
    prompt = gens[0].prompt_tokens if gens else 0
    completion = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _check_fields(req: ChatRequest) -> None:
    """400 naming the first field posttrain does not support; nothing is silently ignored."""
    field = req.unsupported()
    if field is not None:
        raise ApiError(400, f"{field}: not supported; {UNSUPPORTED_HINT}")
    if req.stream and req.n != 1:
        raise ApiError(422, "n: must be 1 when stream is true")


def _check_backend(req: ChatRequest, turn: Turn, backend: Backend) -> None:
    """400 naming the field for what this request needs that the model's backend cannot do."""
    needs = req.uses_tools() or ("response_format" if turn.extra else None)
    if needs and not getattr(backend, "supports_tools", False):
        what = "call tools" if needs != "response_format" else "constrain its output to JSON"
        raise ApiError(400, f"{needs}: model {turn.model!r} cannot {what} (its backend is "
                            f"{type(backend).__name__}); use an OpenAI-compatible backend")
    if needs and req.stream:
        raise ApiError(400, f"stream: not supported together with {needs}; send stream false")


def _admit(request: Request, req: ChatRequest, turn: Turn) -> Ticket:
    try:
        return request.app.state.scheduler.admit(turn.user, req.n * turn.params.max_new_tokens)
    except TooLarge as exc:
        raise ApiError(400, f"max_tokens: {exc}") from exc
    except RateLimited as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc


def _used(gens: list[Generation]) -> int:
    return sum(g.completion_tokens for g in gens)


def _message(g: Generation) -> dict[str, Any]:
    if g.tool_calls:
        return {"role": "assistant", "content": g.text or None, "tool_calls": g.tool_calls}
    return {"role": "assistant", "content": g.text}


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible)")
async def chat_completions(request: Request, req: ChatRequest, user: UserInfo = Depends(current_user)) -> Any:
    """Generate `n` answers (or stream one) and log the exchange; see the API contract."""
    _check_fields(req)
    turn, backend = await _resolve(request, req, user)
    _check_backend(req, turn, backend)
    ticket = _admit(request, req, turn)
    request_id = new_id()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return _ClosingStreamingResponse(
            _stream(request, turn, backend, request_id, include_usage, ticket),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    cancel = threading.Event()
    watcher = asyncio.create_task(watch_disconnect(request, cancel))
    gens: list[Generation] = []
    try:
        # A pool of its own (generation_pool): long generations must not take the worker
        # threads that database reads (and so feedback and the other endpoints) need.
        gens = await generate_choices(request, backend, user.id, turn.prompt, turn.params, req.n,
                                      turn.extra or {}, cancel)
    except ValueError as exc:  # the backend refused the input (e.g. longer than its context)
        raise ApiError(400, str(exc)) from exc
    except Exception as exc:
        raise ApiError(502, f"model backend failed: {type(exc).__name__}: {exc}") from exc
    finally:
        watcher.cancel()
        request.app.state.scheduler.release(ticket, _used(gens))
    ids = [new_id("chatcmpl-") for _ in gens]
    await _log(request, turn, gens, request_id, ids, stream=False)
    return JSONResponse({
        "id": ids[0],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "conversation_id": turn.conversation_id,
        "choices": [
            {
                "index": i,
                "message": _message(g),
                "finish_reason": g.finish_reason,
                "logprobs": None,
                "completion_id": cid,
            }
            for i, (cid, g) in enumerate(zip(ids, gens))
        ],
        "usage": _usage(gens),
    })


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


async def _pieces(backend: Backend, prompt: list[dict[str, str]], params: DecodingParams) -> AsyncIterator[StreamChunk]:
    """`backend.stream` in a worker thread, yielding to async code; closing this generator (the
    client went away) makes the worker close the backend's iterator after its next chunk, which
    cancels the generation and frees the model (the local backend holds its lock until then)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    done = object()
    stop = threading.Event()

    def pump() -> None:
        it = None
        try:
            it = iter(backend.stream(prompt, params))
            for chunk in it:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(q.put_nowait, chunk)
        except BaseException as exc:  # surfaced to the consumer
            loop.call_soon_threadsafe(q.put_nowait, exc)
        finally:
            # Only this thread may close the iterator (it may be running here).
            close = getattr(it, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(q.put_nowait, done)

    threading.Thread(target=pump, name="posttrain-stream-pump", daemon=True).start()
    try:
        while True:
            item = await q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body generator when the response ends for any reason. When the client
    disconnects, Starlette cancels the send loop and would leave a generator that is parked at a
    `yield` to the garbage collector; closing it here runs its clean-up (logging the partial
    answer, cancelling the generation) at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


async def _stream(request: Request, turn: Turn, backend: Backend, request_id: str,
                  include_usage: bool, ticket: Ticket) -> AsyncIterator[bytes]:
    """The SSE body; holds one fair slot of the backend's lane while it generates."""
    sched = request.app.state.scheduler
    key, capacity = lane_of(backend)
    try:
        async with sched.slot(key, capacity, turn.user.id):
            async for event in _stream_events(request, turn, backend, request_id, include_usage, ticket):
                yield event
    finally:
        sched.release(ticket, ticket.reserved)  # refined by _stream_events when the count is known


async def _stream_events(request: Request, turn: Turn, backend: Backend, request_id: str,
                         include_usage: bool, ticket: Ticket) -> AsyncIterator[bytes]:
    cid = new_id("chatcmpl-")
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": turn.model,
            "conversation_id": turn.conversation_id,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        })

    parts: list[str] = []
    finish, prompt_tokens, completion_tokens = "stop", 0, 0
    start = time.perf_counter()

    def generation(reason: str) -> Generation:
        return Generation(
            text="".join(parts), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_ms=(time.perf_counter() - start) * 1000, finish_reason=reason,
        )

    pieces = _pieces(backend, turn.prompt, turn.params)
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in pieces:
            if piece.text:
                parts.append(piece.text)
                yield chunk({"content": piece.text})
            if piece.finish_reason:
                finish = piece.finish_reason
            if piece.prompt_tokens is not None:
                prompt_tokens = piece.prompt_tokens
            if piece.completion_tokens is not None:
                completion_tokens = piece.completion_tokens
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away mid-answer (cancelled while waiting for the model, or closed
        # while parked at a yield). Stop the generation, then store what the user saw as a
        # completion with finish_reason "abandoned" (token counts are those known so far);
        # nothing else is recorded. Shielded: the request's scope is already cancelled.
        with anyio.CancelScope(shield=True):
            await pieces.aclose()
            try:
                await _log(request, turn, [generation(ABANDONED)], request_id, [cid], stream=True)
            except Exception:  # nobody is left to tell; the server log has it
                log.exception("could not store the abandoned stream %s", cid)
        raise
    except Exception as exc:
        # Headers are sent: the error travels as an SSE event; nothing is logged.
        status = 400 if isinstance(exc, ValueError) else 502
        yield _sse(error_body(status, f"{type(exc).__name__}: {exc}" if status == 502 else str(exc)))
        yield _sse("[DONE]")
        return
    gen = generation(finish)
    request.app.state.scheduler.release(ticket, gen.completion_tokens)
    try:
        await _log(request, turn, [gen], request_id, [cid], stream=True)
    except Exception as exc:  # not stored: say so instead of sending a final chunk
        yield _sse(error_body(500, f"the answer could not be stored: {type(exc).__name__}"))
        yield _sse("[DONE]")
        return
    yield chunk({}, finish)
    if include_usage:
        yield _sse({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": turn.model,
            "conversation_id": turn.conversation_id, "choices": [], "usage": _usage([gen]),
        })
    yield _sse("[DONE]")
