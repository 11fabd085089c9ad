"""Every error the API sends has the OpenAI shape `{"error": {"message", "type"}}` and one line.

FastAPI's own validation errors are lists of dicts; clients (the `openai` package, the web page)
show `error.message`, so the first problem is summarised in one line such as
`kind: must be one of thumbs, pairwise, edit, implicit`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("posttrain.serve")

MAX_BODY_BYTES = 1 << 20  # 1 MiB
MAX_HEADER_BYTES = 16 * 1024  # all request headers together (serve/guard.py answers 431)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "request_too_large",
}


class ApiError(StarletteHTTPException):
    """Raise anywhere in a handler to answer `status` with a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=one_line(message), headers=headers)


def one_line(text: str, limit: int = 300) -> str:
    # Client-supplied names can hold lone surrogates; a message must still encode as UTF-8.
    text = " ".join(str(text).encode("utf-8", "backslashreplace").decode("utf-8").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": one_line(message), "type": _TYPES.get(status, "server_error")}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def _loc(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _describe(err: dict[str, Any]) -> str:
    """A short human phrase for one pydantic error."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip().strip("'\"") for c in expected.replace(" or ", ", ").split(",")]
        return "must be one of " + ", ".join(c for c in choices if c)
    if kind == "extra_forbidden":
        return "unknown field"
    simple = {
        "int_type": "must be an integer", "int_parsing": "must be an integer",
        "int_from_float": "must be an integer", "float_type": "must be a number",
        "float_parsing": "must be a number", "bool_type": "must be true or false",
        "bool_parsing": "must be true or false", "string_type": "must be a string",
        "dict_type": "must be an object", "model_type": "must be an object",
        "model_attributes_type": "must be an object", "list_type": "must be an array",
        "union_tag_invalid": "has an invalid type", "finite_number": "must be a finite number",
    }
    if kind in simple:
        return simple[kind]
    bounds = {
        "greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "")
        if isinstance(limit, float):
            limit = f"{limit:g}"
        return f"must be {bounds[kind]} {limit}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty" if ctx.get("min_length") == 1 else f"is too short ({err.get('msg')})"
    if kind in ("string_too_long", "too_long"):
        return f"is too long (at most {ctx.get('max_length')})"
    if kind == "value_error":
        # Our own validators raise ValueError("..."); pydantic prefixes "Value error, ".
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return str(err.get("msg", "is invalid")).lower()


def summarize(errors: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """(status, one-line message) for a list of pydantic/FastAPI validation errors."""
    if not errors:
        return 422, "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return 400, f"request body is not valid JSON: {detail}".rstrip(": ")
    loc = tuple(first.get("loc") or ())
    if first.get("type") == "missing" and loc == ("body",):
        return 422, "request body is required (a JSON object)"
    if loc == ("body",) and first.get("type") in ("model_attributes_type", "dict_type", "model_type") \
            and isinstance(first.get("input"), (bytes, bytearray)):
        return 422, "request body must be a JSON object sent as Content-Type: application/json"
    branch = next((i for i, seg in enumerate(loc) if _is_branch(seg)), None)
    if branch is not None:
        return 422, _union_message(errors, loc[:branch])
    where, what = _loc(loc), _describe(first)
    inner = _INNER.match(what) if first.get("type") == "value_error" else None
    if inner:  # our validators name the sub-field: "tool_call_id: required ..." -> loc.tool_call_id
        sub, what = inner.group(1), inner.group(2)
        where = (where + sub if sub.startswith("[") else f"{where}.{sub}") if where != "body" else sub
    return 422, f"{where}: {what}"


_INNER = re.compile(r"^((?:\[\d+\])?[a-z_]*(?:\[\d+\]|\.[a-z_]+)*): (.+)$")


_TAG_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
              "none": "null"}


def _is_branch(seg: Any) -> bool:
    """pydantic names the branch of a union (`str`, `list[str]`, a model name) in the location."""
    return isinstance(seg, str) and (seg in _TAG_WORDS or "[" in seg or seg[:1].isupper())


def _union_message(errors: Sequence[dict[str, Any]], prefix: tuple) -> str:
    n = len(prefix)
    group = [e for e in errors if tuple(e.get("loc") or ())[:n] == prefix
             and len(e.get("loc") or ()) > n and _is_branch(e["loc"][n])]
    deepest = max(group, key=lambda e: len(e["loc"]))
    if len(deepest["loc"]) > n + 1:  # the input matched a branch's type and failed inside it
        inner = prefix + tuple(deepest["loc"][n + 1:])
        return f"{_loc(inner)}: {_describe(deepest)}"
    words = []
    for e in group:
        tag = e["loc"][n]
        word = _TAG_WORDS.get(tag) or ("an array" if tag.startswith("list[") else "an object")
        if word not in words:
            words.append(word)
    return f"{_loc(prefix)}: must be {' or '.join(words)}"


async def _validation_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    status, message = summarize(list(exc.errors()))
    return error_response(status, message)


async def _http_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint; see /openapi.json"
    if exc.status_code == 405:
        message = "method not allowed on this endpoint; see /openapi.json"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


def describe_failure(exc: BaseException) -> str:
    """The traceback of an unexpected error without any values: frames (file, line, code) and
    the exception types of the chain. Messages are left out on purpose: a database error's text
    carries the statement's parameters, i.e. users' words."""
    import traceback

    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        orig = getattr(current, "orig", None)  # SQLAlchemy wraps the driver's error
        if isinstance(orig, BaseException):
            name += f" (driver error {type(orig).__module__}.{type(orig).__qualname__})"
        parts.append(f"{frames}{name}")
        current = current.__cause__ or current.__context__
    return "\n-- caused by --\n".join(parts)


class _TrackStart:
    """A `send` that remembers whether the response has started (then no error body can follow)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class CatchAll:
    """Innermost-but-one middleware: an unexpected exception becomes a one-line 500 and is logged
    exactly once, without request values. (Starlette's own error middleware re-raises after its
    handler, so the server logged the full exception, SQL parameters included, a second time.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _TrackStart(send)
        try:
            await self.app(scope, receive, tracked)
        except BodyTooLarge:
            raise  # BodyLimit answers 413
        except Exception as exc:
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            log.error("unhandled error in %s %s\n%s", scope.get("method"), route, describe_failure(exc))
            if not tracked.started:
                await send_json(send, 500, error_body(500, f"internal error ({type(exc).__name__}); see the server log"))


def install(app: FastAPI) -> None:
    """Register the one-line OpenAI-shaped error handlers, the 500 catch-all, the edge text
    policy (serve/guard.py) and the 1 MiB body limit (outermost, so it bounds what the guard reads)."""
    from posttrain.serve.guard import EdgeGuard

    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_middleware(CatchAll)
    app.add_middleware(EdgeGuard)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)


class BodyTooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        size = f"{max_bytes / (1 << 20):g} MiB" if max_bytes >= 1 << 20 else f"{max_bytes} bytes"
        super().__init__(413, f"request body is larger than {size}")


_FORM = b"application/x-www-form-urlencoded"


class BodyLimit:
    """Refuse bodies over `max_bytes`: by Content-Length up front, and by counting what arrives,
    so a chunked upload without Content-Length cannot slip past.

    Counting raises BodyTooLarge from `receive()`; FastAPI re-raises HTTPExceptions met while
    reading the body, so the handler answers 413 before anything is stored.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        for name, value in headers:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await send_json(send, 413, error_body(413, BodyTooLarge(self.max_bytes).detail))
                    return
                break
        if any(n == b"content-type" and v.startswith(_FORM) for n, v in headers):
            # `curl -d '{...}'` labels JSON as a form; this API speaks only JSON, so read it as such
            # (malformed JSON then gets the same 400 as from any other client).
            scope = dict(scope)
            scope["headers"] = [(n, b"application/json" if n == b"content-type" else v) for n, v in headers]
        seen = 0
        tracked = _TrackStart(send)

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counted_receive, tracked)
        except BodyTooLarge as exc:  # raised outside a route's body parsing
            if tracked.started:
                raise
            await send_json(send, 413, error_body(413, exc.detail))


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
    })
    await send({"type": "http.response.body", "body": data})
