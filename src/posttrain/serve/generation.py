"""Running the answers of one chat request: fair slots, cancellation, output checks.

Each answer (choice) of a request is one job: it waits for a slot on its backend's lane (see
scheduler.py), then runs in a worker thread. On the local model a job consumes the backend's
stream, so setting the request's cancel event (the client disconnected) stops the generation
after the next token and frees the model; an OpenAI-compatible upstream gets one plain request
per answer (the upstream batches across requests) that runs to its end, its answer kept. A
backend with an `agenerate` coroutine (the openai backend, over aiohttp) is awaited on the event
loop instead of taking a worker thread: two thread hand-offs fewer per proxied request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from typing import Any

from fastapi import Request

from posttrain.models.base import Backend, DecodingParams, Generation, Messages

# finish_reason of an answer whose client went away before receiving it.
ABANDONED = "abandoned"
LOCAL_LANE = "local-cpu"  # every in-process backend shares this machine's CPU: one lane


def lane_of(backend: Backend) -> tuple[object, int]:
    """(lane key, slots) of a backend: its own lane when it declares parallel_requests."""
    n = getattr(backend, "parallel_requests", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return backend, n
    return LOCAL_LANE, 1


def _consume(backend: Backend, prompt: Messages, params: DecodingParams, cancel: threading.Event) -> Generation:
    """One answer from backend.stream, stopped when `cancel` is set (closing the iterator
    cancels the local backend's generation)."""
    started = time.perf_counter()
    parts: list[str] = []
    finish: str | None = None
    prompt_tokens = completion_tokens = pieces = 0
    it = iter(backend.stream(prompt, params))
    try:
        for chunk in it:
            if chunk.text:
                parts.append(chunk.text)
                pieces += 1
            if chunk.finish_reason:
                finish = chunk.finish_reason
            if chunk.prompt_tokens is not None:
                prompt_tokens = chunk.prompt_tokens
            if chunk.completion_tokens is not None:
                completion_tokens = chunk.completion_tokens
            if cancel.is_set() and finish is None:
                finish = ABANDONED
                completion_tokens = pieces  # what was generated so far (a piece is about a token)
                break
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return Generation("".join(parts), prompt_tokens, completion_tokens,
                      (time.perf_counter() - started) * 1000, finish or "stop")


def run_choice(backend: Backend, prompt: Messages, params: DecodingParams, extra: dict[str, Any],
               cancel: threading.Event) -> Generation:
    """One answer, blocking (runs in a worker thread)."""
    if cancel.is_set():
        return Generation("", 0, 0, 0.0, ABANDONED)
    if getattr(backend, "parallel_requests", None) or extra:
        kwargs = {"extra": extra} if extra else {}
        return backend.generate([prompt], params, **kwargs)[0]
    return _consume(backend, prompt, params, cancel)


async def generate_choices(request: Request, backend: Backend, user_id: str, prompt: Messages,
                           params: DecodingParams, n: int, extra: dict[str, Any],
                           cancel: threading.Event) -> list[Generation]:
    """The request's `n` answers, each through a fair slot. With a seed, answer i uses seed + i
    (the same seed would make every answer of a sampled request identical). Answers are marked
    abandoned when `cancel` was set before they were returned."""
    sched = request.app.state.scheduler
    key, capacity = lane_of(backend)
    loop = asyncio.get_running_loop()
    pool = request.app.state.generation_pool
    # Only a backend with a lane of its own (parallel_requests: an HTTP upstream) is awaited on
    # the loop; an in-process model would block it.
    agenerate = getattr(backend, "agenerate", None) if key is not LOCAL_LANE else None

    async def one(i: int) -> Generation:
        p = params if params.seed is None or i == 0 else replace(params, seed=params.seed + i)
        async with sched.slot(key, capacity, user_id):
            if cancel.is_set():
                return Generation("", 0, 0, 0.0, ABANDONED)
            if agenerate is not None:
                return await agenerate(prompt, p, extra or None)
            return await loop.run_in_executor(pool, run_choice, backend, prompt, p, extra, cancel)

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise failed
    gens: list[Generation] = list(results)  # type: ignore[arg-type]
    if cancel.is_set():
        gens = [g if g.finish_reason == ABANDONED else replace(g, finish_reason=ABANDONED) for g in gens]
    return gens


async def watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set `cancel` when the client disconnects (the body is already read, so the next message
    the server sends on `receive` is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


def output_checks(gen: Generation, response_format: Any) -> dict[str, Any] | None:
    """For a JSON response_format: is the answer JSON, and does it match the schema? Stored with
    the completion whether or not the backend enforced the format."""
    if response_format is None or response_format.type == "text" or gen.tool_calls:
        return None
    try:
        value = json.loads(gen.text)
    except ValueError:
        return {"json": False}
    out: dict[str, Any] = {"json": True}
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    if schema is not None:
        import jsonschema

        try:
            jsonschema.validate(value, schema)
            out["schema"] = True
        except jsonschema.ValidationError:
            out["schema"] = False
        except jsonschema.SchemaError:
            out["schema"] = None  # the client's schema itself is invalid
    return out
