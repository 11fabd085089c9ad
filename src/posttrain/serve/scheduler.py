"""Fair model time: per-user limits and a round-robin scheduler in front of generation.

Every chat request is first *admitted* (per user: requests in flight, generated tokens per
minute, and a cap on n x max_tokens per request; over a limit answers 429 with Retry-After in
OpenAI's error shape), then each of its answers waits for a *slot* on the model's lane. A lane
has as many slots as the backend serves at once (the local model: one; an OpenAI-compatible
upstream: many). When slots are short, the next one goes to the next user in turn, not to the
oldest request: a user with a batch of four answers queued gets one slot, then everybody else
waiting gets theirs, so one user's batch cannot starve the others. A light request therefore
waits for at most one answer already running per other active user.

All state lives on the event loop's thread (no locks); generation itself runs in threads.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from posttrain.store.users import UserInfo

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """Per-user limits; 0 turns a limit off. Admins are limited too unless exempt_admins."""

    user_concurrency: int = 4  # chat requests in flight (queued or generating) per user
    user_tokens_per_minute: int = 20_000  # tokens reserved (n x max_tokens) per rolling minute
    request_tokens: int = 8192  # n x max_tokens of one request
    exempt_admins: bool = False


class RateLimited(Exception):
    """Over a per-user limit: answer 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooLarge(ValueError):
    """The request alone exceeds a limit; waiting would not help (answer 400)."""


@dataclass
class Ticket:
    """An admitted request: its reservation in the user's token window."""

    user_id: str
    reserved: int
    entry: list[float] | None = None  # [time, tokens] in the user's window, or None when exempt
    released: bool = False


@dataclass
class _UserState:
    inflight: int = 0
    window: deque = field(default_factory=deque)  # [time, tokens] entries, oldest first


class _Lane:
    """The slots of one backend and the users waiting for them, in turn order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.running = 0
        self.waiting: OrderedDict[str, deque[asyncio.Future]] = OrderedDict()
        self._turns = 0
        self._last_turn: dict[str, int] = {}  # user -> number of the last slot they were given

    def took_turn(self, user_id: str) -> None:
        self._turns += 1
        self._last_turn[user_id] = self._turns
        if len(self._last_turn) > 10_000:  # forget users long gone (keep those waiting)
            self._last_turn = {u: t for u, t in self._last_turn.items() if u in self.waiting}

    def grant_next(self) -> None:
        """Give free slots to the waiting users served least recently (round-robin: the user
        whose answer just finished goes behind everyone else waiting)."""
        while self.running < self.capacity and self.waiting:
            user_id = min(self.waiting, key=lambda u: self._last_turn.get(u, 0))
            queue = self.waiting[user_id]
            fut = queue.popleft()
            if not queue:
                del self.waiting[user_id]
            if not fut.done():
                self.running += 1
                self.took_turn(user_id)
                fut.set_result(None)


class Scheduler:
    """Admission (limits) and fair slots for one server process."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._users: dict[str, _UserState] = {}
        self._lanes: dict[object, _Lane] = {}

    # -- admission -------------------------------------------------------------------------------

    def _exempt(self, user: UserInfo) -> bool:
        return self.limits.exempt_admins and user.is_admin

    def admit(self, user: UserInfo, tokens: int, now: float | None = None) -> Ticket:
        """Admit a request that may generate up to `tokens` tokens, or raise RateLimited/TooLarge."""
        lim = self.limits
        if lim.request_tokens and tokens > lim.request_tokens:
            raise TooLarge(f"n x max_tokens is {tokens}; this server allows at most {lim.request_tokens} per request")
        if self._exempt(user):
            return Ticket(user.id, tokens)
        state = self._users.setdefault(user.id, _UserState())
        now = time.monotonic() if now is None else now
        if lim.user_concurrency and state.inflight >= lim.user_concurrency:
            raise RateLimited(f"too many requests in flight: at most {lim.user_concurrency} at once per user", 1)
        if lim.user_tokens_per_minute:
            if tokens > lim.user_tokens_per_minute:
                raise TooLarge(f"n x max_tokens is {tokens}; your limit is {lim.user_tokens_per_minute} tokens per minute")
            while state.window and now - state.window[0][0] >= WINDOW_S:
                state.window.popleft()
            used = sum(e[1] for e in state.window)
            if used + tokens > lim.user_tokens_per_minute:
                # Wait until enough of the oldest reservations leave the window.
                need, wait = used + tokens - lim.user_tokens_per_minute, WINDOW_S
                for at, n in state.window:
                    need -= n
                    if need <= 0:
                        wait = at + WINDOW_S - now
                        break
                raise RateLimited(
                    f"token rate limit: {used} of {lim.user_tokens_per_minute} tokens per minute in use; "
                    f"this request reserves {tokens} (n x max_tokens)", math.ceil(wait))
        entry = [now, tokens]
        state.window.append(entry)
        state.inflight += 1
        return Ticket(user.id, tokens, entry)

    def release(self, ticket: Ticket, used_tokens: int) -> None:
        """The request is over: free its place and keep only the tokens it really generated."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.entry is None:
            return
        ticket.entry[1] = min(ticket.reserved, max(0, used_tokens))
        state = self._users.get(ticket.user_id)
        if state is not None:
            state.inflight = max(0, state.inflight - 1)

    # -- fair slots ------------------------------------------------------------------------------

    def lane(self, key: object, capacity: int) -> _Lane:
        """The lane named `key` (a string, or a backend object by identity)."""
        k = key if isinstance(key, str) else id(key)
        lane = self._lanes.get(k)
        if lane is None:
            lane = self._lanes[k] = _Lane(capacity)
        return lane

    @asynccontextmanager
    async def slot(self, key: object, capacity: int, user_id: str) -> AsyncIterator[None]:
        """Hold one of the lane's slots; waiting users are served in round-robin order."""
        lane = self.lane(key, capacity)
        if lane.running < lane.capacity and not lane.waiting:
            lane.running += 1
            lane.took_turn(user_id)
        else:
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            lane.waiting.setdefault(user_id, deque()).append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():  # granted just as we were cancelled
                    lane.running -= 1
                    lane.grant_next()
                else:
                    queue = lane.waiting.get(user_id)
                    if queue is not None and fut in queue:
                        queue.remove(fut)
                        if not queue:
                            del lane.waiting[user_id]
                raise
        try:
            yield
        finally:
            lane.running -= 1
            lane.grant_next()
