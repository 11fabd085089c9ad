"""The caller's own settings: profile and consent, custom instructions, memory.

Custom instructions are versioned (a PUT adds a row; the newest is in effect) and memory is
soft-deleted, so every stored completion can still be explained by what was in effect then.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request, Response

from posttrain.serve.auth import current_user
from posttrain.serve.errors import ApiError
from posttrain.serve.schemas import ConsentIn, InstructionsIn, MemoryIn
from posttrain.store import invalidation
from posttrain.store import personal as personal_queries
from posttrain.store import users as user_queries
from posttrain.store.users import UserInfo

router = APIRouter(tags=["me"])

# Bounds on what one user's memory adds to every prompt: without them, 50 facts of 2 KB made
# every later chat a 400 for exceeding the model's context.
MAX_MEMORY_ITEMS = 50
MAX_MEMORY_CHARS = 4000

# Every change to custom instructions or memory bumps this store/invalidation.py topic in its
# own transaction; every process's cache drops its entries when the topic moved, so a change made
# through any server process or host is used from that process's next request once visible to
# it (docs/scale.md). The TTL is only a backstop.
PERSONAL_TOPIC = "personal"
PERSONALIZATION_TTL = 60.0


class PersonalizationCache:
    """user id -> (custom instructions, memory texts) in effect.

    The chat path read both on every request (18 % of the server's CPU per proxied exchange).
    Usage: `got = cache.get(uid)`; on a miss take `token = cache.token()` before reading the
    store and `cache.put(uid, value, token)` after: a put is dropped when any invalidation
    happened in between, so a read that raced a change cannot re-cache the old value. With a
    `store`, the cache also follows the "personal" topic (changes made by other processes).
    """

    def __init__(self, store: Any = None, ttl: float = PERSONALIZATION_TTL, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, str | None, tuple[str, ...]]] = {}
        self._changes = 0  # bumped by every invalidation
        self._lock = threading.Lock()
        self._watch = invalidation.watcher(store) if store is not None else None
        self._version = self._watch.version(PERSONAL_TOPIC) if self._watch is not None else 0

    def _follow(self) -> None:
        """Drop everything when another process (or this one) changed someone's settings."""
        if self._watch is None:
            return
        version = self._watch.version(PERSONAL_TOPIC)
        if version != self._version:
            with self._lock:
                self._changes += 1
                self._entries.clear()
                self._version = version

    def get(self, user_id: str) -> tuple[str | None, list[str]] | None:
        """The cached (instructions, memory) for the user, or None when absent or expired."""
        self._follow()
        entry = self._entries.get(user_id)
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1], list(entry[2])

    def token(self) -> int:
        """Take before reading the store (right after get()); pass to put()."""
        return self._changes

    def put(self, user_id: str, value: tuple[str | None, list[str]], token: int) -> None:
        """Cache what was read, unless something was invalidated since `token` was taken."""
        with self._lock:
            if token != self._changes:
                return
            if len(self._entries) >= self.size:
                self._entries.clear()  # rare; a full cache just refills
            self._entries[user_id] = (time.monotonic(), value[0], tuple(value[1]))

    def invalidate(self, user_id: str) -> None:
        """Forget the user's entry after this process changed their instructions or memory."""
        with self._lock:
            self._changes += 1
            self._entries.pop(user_id, None)


def _bumped(session: Any, result: Any) -> Any:
    """Write function part: bump the "personal" topic after a change; returns `result`."""
    invalidation.bump(session, PERSONAL_TOPIC)
    return result


def _me(user: UserInfo) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "is_admin": user.is_admin, "consent": user.consent}


async def _read(request: Request, fn: Any, *args: Any) -> Any:
    def run() -> Any:
        with request.app.state.store.session() as s:
            return fn(s, *args)

    return await anyio.to_thread.run_sync(run)


@router.get("/v1/me", summary="Who you are")
async def me(request: Request, user: UserInfo = Depends(current_user)) -> dict[str, Any]:
    # Read the row, not the key cache: consent may have been changed by another process.
    fresh = await _read(request, user_queries.get_user, user.id)
    return _me(fresh or user)


@router.put("/v1/me/consent", summary="May your conversations and feedback train models?")
async def put_consent(request: Request, body: ConsentIn, user: UserInfo = Depends(current_user)) -> dict[str, Any]:
    await request.app.state.store.awrite(lambda s: user_queries.set_consent(s, user.id, body.consent))
    updated = replace(user, consent=body.consent)
    request.app.state.keys.update(updated)
    return _me(updated)


@router.get("/v1/me/instructions", summary="Your custom instructions")
async def get_instructions(request: Request, user: UserInfo = Depends(current_user)) -> dict[str, str]:
    text = await _read(request, personal_queries.current_instructions, user.id)
    return {"text": text or ""}


@router.put("/v1/me/instructions", summary="Set custom instructions (empty string clears)")
async def put_instructions(request: Request, body: InstructionsIn, user: UserInfo = Depends(current_user)) -> dict[str, str]:
    text = body.text.strip()
    await request.app.state.store.awrite(lambda s: (personal_queries.add_instructions(s, user.id, text),
                                                    invalidation.bump(s, PERSONAL_TOPIC)))
    request.app.state.personalization.invalidate(user.id)
    return {"text": text}


@router.get("/v1/me/memory", summary="What the assistant remembers about you")
async def get_memory(request: Request, user: UserInfo = Depends(current_user)) -> list[dict[str, Any]]:
    return await _read(request, personal_queries.list_memory, user.id)


@router.post("/v1/me/memory", status_code=201, summary="Add a memory",
             responses={409: {"description": "memory is full (at most 50 facts, 4000 characters)"}})
async def post_memory(request: Request, body: MemoryIn, user: UserInfo = Depends(current_user)) -> dict[str, Any]:
    try:
        added = await request.app.state.store.awrite(lambda s: _bumped(s, personal_queries.add_memory(
            s, user.id, body.text, max_items=MAX_MEMORY_ITEMS, max_chars=MAX_MEMORY_CHARS)))
    except personal_queries.MemoryFull as exc:
        raise ApiError(409, str(exc)) from exc
    request.app.state.personalization.invalidate(user.id)
    return added


@router.delete(
    "/v1/me/memory/{memory_id}", status_code=204, summary="Forget a memory",
    responses={404: {"description": "not yours, or already deleted"}},
)
async def delete_memory(
    request: Request, memory_id: str = Path(max_length=200), user: UserInfo = Depends(current_user)
) -> Response:
    deleted = await request.app.state.store.awrite(
        lambda s: _bumped(s, personal_queries.delete_memory(s, user.id, memory_id))
    )
    request.app.state.personalization.invalidate(user.id)
    if not deleted:
        raise ApiError(404, f"memory {memory_id!r} not found")
    return Response(status_code=204)
