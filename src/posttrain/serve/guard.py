"""What text posttrain accepts, decided once at the edge for every endpoint and both stores.

A string anywhere in a request (a JSON body value or key, a path segment, a query value) must be
valid Unicode text that every store can hold: no NUL character (PostgreSQL's text type cannot
store U+0000) and no unpaired surrogate (U+D800-U+DFFF: not encodable as UTF-8, so neither
SQLite nor PostgreSQL can store it, and JSON written back out would be invalid). A JSON body may
nest at most MAX_DEPTH levels, must be UTF-8, and its request headers at most MAX_HEADER_BYTES.
Anything else answers a one-line 4xx naming the field before any handler, model or store sees
it, so SQLite and PostgreSQL behave the same and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posttrain.serve.errors import MAX_HEADER_BYTES, error_body, send_json

MAX_DEPTH = 32


def bad_text(value: str) -> str | None:
    """Why `value` is not acceptable text, or None when it is."""
    if value.isascii():
        return "must not contain NUL characters" if "\x00" in value else None
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogates (invalid Unicode)"
    return None


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def safe_name(text: str) -> str:
    """A field name or value fit for an error message (surrogates escaped, NUL shown as \\x00)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def check_json(value: Any) -> tuple[str, str] | None:
    """(field path, problem) for the first unacceptable string or nesting in a decoded JSON
    value, else None. Iterative, so a deep document cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = bad_text(item)
            if problem:
                return path or "body", problem
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return path or "body", f"is nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for k, v in item.items():
                    problem = bad_text(k)
                    where = _join(path, safe_name(k))
                    if problem:
                        return where, "field name " + problem
                    stack.append((v, where, depth + 1))
            else:
                stack.extend((v, _join(path, i), depth + 1) for i, v in enumerate(item))
    return None


def decode_body(raw: bytes) -> tuple[Any, tuple[int, str] | None]:
    """(decoded JSON or None, (status, message) when the body must be refused)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (400, f"request body is not valid UTF-8 (byte {exc.start})")
    try:
        value = json.loads(text)
    except RecursionError:
        return None, (400, f"body: is nested deeper than {MAX_DEPTH} levels")
    except ValueError:
        return None, None  # not JSON: the endpoint's own parser answers 400 with the position
    found = check_json(value)
    if found:
        return value, (422 if "nested" not in found[1] else 400, f"{found[0]}: {found[1]}")
    return value, None


class EdgeGuard:
    """ASGI middleware applying the text policy to paths, query strings, JSON bodies and headers.

    The body is read here (the body-size limit outside this middleware bounds it) and replayed
    to the app; after the body, `receive` is the server's again, so disconnects still arrive.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(n) + len(v) for n, v in scope.get("headers", ()))
        if size > MAX_HEADER_BYTES:
            await send_json(send, 431, error_body(431, f"request headers are larger than {MAX_HEADER_BYTES // 1024} KiB"))
            return
        path = scope.get("path", "")
        problem = bad_text(path)
        if problem is None and b"%00" in scope.get("query_string", b"").lower():
            problem = "must not contain NUL characters"
            where = "query"
        else:
            where = "path"
        if problem:
            await send_json(send, 422, error_body(422, f"{where}: {problem}"))
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        if raw.strip():
            _, refusal = decode_body(raw)
            if refusal:
                await send_json(send, refusal[0], error_body(*refusal))
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
