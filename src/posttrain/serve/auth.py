"""Bearer-key authentication.

The sha256 of a presented key is looked up in an in-process cache (hash -> user) first, so the
feedback hot path does no database read for auth; a miss reads the users table once. Unknown
keys are not cached (a user added by `posttrain users add` in another process works at once).
A revoked key, a deleted user or a changed consent/admin flag bumps the "users" topic of
store/invalidation.py; the cache checks that version before every lookup and starts afresh
when it moved, so such a change made by any process is honoured by the next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import anyio.to_thread
from fastapi import Request

from posttrain.serve.errors import ApiError
from posttrain.store import invalidation
from posttrain.store import users as user_queries
from posttrain.store._store import Store
from posttrain.store.users import UserInfo, hash_key


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class KeyCache:
    """sha256(key) -> UserInfo for keys seen by this process."""

    def __init__(self, store: Store, size: int = 10_000) -> None:
        self.store = store
        self.size = size
        self._users: dict[str, UserInfo] = {}
        self._lock = threading.Lock()
        self._watch = invalidation.watcher(store)
        self._version = self._watch.version(user_queries.USERS_TOPIC)

    def _load(self, key_hash: str) -> UserInfo | None:
        with self.store.session() as s:
            return user_queries.user_by_key_hash(s, key_hash)

    async def user(self, key: str) -> UserInfo | None:
        h = hash_key(key)
        version = self._watch.version(user_queries.USERS_TOPIC)
        if version != self._version:  # a key was revoked or a user changed somewhere: start afresh
            with self._lock:
                self._users.clear()
                self._version = version
        user = self._users.get(h)
        if user is None:
            user = await anyio.to_thread.run_sync(self._load, h)
            if user is not None:
                with self._lock:
                    if self._version != version:  # invalidated while we read: do not cache
                        return user
                    if len(self._users) >= self.size:
                        self._users.clear()  # rare; a full cache just refills from the table
                    self._users[h] = user
        return user

    def update(self, user: UserInfo) -> None:
        """Replace a cached user after this process changed it (e.g. consent)."""
        with self._lock:
            for h, u in list(self._users.items()):
                if u.id == user.id:
                    self._users[h] = user


class AuthFailures:
    """Failed key checks per client address in a rolling minute. Past `per_minute` failures the
    address gets 429 (with Retry-After) for every key, valid or not, until old failures age out:
    guessing keys from one address is throttled. Behind a reverse proxy every client shares the
    proxy's address; run uvicorn with --proxy-headers there. Event-loop thread only."""

    def __init__(self, per_minute: int = 30, window: float = 60.0, size: int = 100_000) -> None:
        self.per_minute = per_minute
        self.window = window
        self.size = size
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """Seconds until `address` may try again, or None when it may now."""
        times = self._failures.get(address)
        if not self.per_minute or not times:
            return None
        now = time.monotonic() if now is None else now
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.per_minute:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def record(self, address: str, now: float | None = None) -> None:
        if not self.per_minute:
            return
        if len(self._failures) >= self.size and address not in self._failures:
            self._failures.clear()  # rare; a flood of addresses just resets the counts
        self._failures.setdefault(address, deque()).append(time.monotonic() if now is None else now)


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def current_user(request: Request) -> UserInfo:
    """FastAPI dependency: the caller, or 401 with a one-line reason."""
    key = bearer_key(request)
    if key is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with 'posttrain users add NAME')",
                       headers=_CHALLENGE)
    failures: AuthFailures = request.app.state.auth_failures
    address = request.client.host if request.client else "unknown"
    wait = failures.retry_after(address)
    if wait is not None:
        raise ApiError(429, f"too many failed API key checks from {address}; try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    user = await request.app.state.keys.user(key)
    if user is None:
        failures.record(address)
        raise ApiError(401, "invalid API key", headers=_CHALLENGE)
    return user


async def admin_user(request: Request) -> UserInfo:
    """FastAPI dependency: the caller, who must be an admin (403 otherwise)."""
    user = await current_user(request)
    if not user.is_admin:
        raise ApiError(403, "this endpoint needs an admin key (posttrain users add NAME --admin)")
    return user
