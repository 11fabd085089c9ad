"""Durability of logged chat exchanges under SIGKILL: every answer the server sent was committed
first, whole (conversation, transcript, completion), however the exchanges of concurrent
requests were grouped into commits (serve/exchange_log.py).

The real `posttrain serve --workers 2` proxies a small OpenAI-compatible upstream (a raw asyncio
server in a thread of this process, answering after 2 ms) on SQLite, and PostgreSQL when
POSTTRAIN_TEST_DATABASE_URL is set; 16 concurrent clients chat until the parent and both
workers are SIGKILLed at once, mid-load.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
from sqlalchemy import select

from posttrain.models.registry import register_model
from posttrain.store import Store
from posttrain.store.schema import Completion, Conversation, Message
from posttrain.store.users import add_user
from test_durability import _free_port, _kill_all, _start, _workers

CLIENTS = 16
KILL_AT = 300  # answers received before the kill (or after KILL_BY seconds, whichever is first)
KILL_BY = 20.0

_ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive; every request gets the same chat.completion after 2 ms."""

    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            length = next((int(line[15:]) for line in self.buf[:end].split(b"\r\n")
                           if line[:15].lower() == b"content-length:"), 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            asyncio.get_running_loop().call_later(0.002, self._answer)

    def _answer(self):
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)


def _upstream() -> int:
    port, ready = _free_port(), threading.Event()

    def run():
        loop = asyncio.new_event_loop()
        loop.run_until_complete(loop.create_server(_Upstream, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(10)
    return port


async def _chat_then_kill(base: str, key: str, kill) -> tuple[dict[str, str], int]:
    """Chat from CLIENTS clients until `kill()`; (acknowledged completion id -> conversation id,
    requests sent)."""
    acked: dict[str, str] = {}
    sent = 0
    killed = asyncio.Event()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        for i in range(100_000):
            if killed.is_set():
                return
            sent += 1
            try:
                r = await http.post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": f"client {n} question {i}"}], "max_tokens": 8})
            except httpx.HTTPError:
                if killed.is_set():
                    return
                continue
            assert r.status_code == 200, r.text
            body = r.json()
            acked[body["choices"][0]["completion_id"]] = body["conversation_id"]

    async def killer() -> None:
        deadline = time.monotonic() + KILL_BY
        while len(acked) < KILL_AT and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        kill()
        killed.set()

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 limits=limits, timeout=10) as http:
        await asyncio.gather(killer(), *(client(n, http) for n in range(CLIENTS)))
    return acked, sent


def test_every_answered_chat_exchange_survives_sigkill_of_two_workers(db_url, tmp_path):
    up = _upstream()
    store = Store.open(db_url)
    try:
        user, key = add_user(store, "chatty")
        register_model(store, "up", "openai", {"base_url": f"http://127.0.0.1:{up}/v1", "model": "fake"})
    finally:
        store.close()
    port, log = _free_port(), tmp_path / "server.log"
    proc = _start(db_url, port, log, "--model", "up", "--workers", "2",
                  "--user-concurrency", "0", "--user-tokens-per-minute", "0")
    try:
        deadline = time.monotonic() + 60
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_workers(proc.pid)) == 2
        acked, sent = asyncio.run(_chat_then_kill(f"http://127.0.0.1:{port}", key, lambda: _kill_all(proc)))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            _kill_all(proc)
    assert proc.returncode == -signal.SIGKILL
    print(f"answered {len(acked)} of {sent} requests before the kill")
    assert len(acked) >= 50 and sent > len(acked)

    store = Store.open(db_url, upgrade=False)
    try:
        with store.session() as s:
            completions = dict(s.execute(select(Completion.id, Completion.conversation_id)
                                         .where(Completion.user_id == user.id)).all())
            conversations = set(s.scalars(select(Conversation.id).where(Conversation.user_id == user.id)))
            messages = s.execute(select(Message.conversation_id, Message.position, Message.role,
                                        Message.completion_id)
                                 .where(Message.conversation_id.in_(conversations))).all()
    finally:
        store.close()
    lost = [cid for cid in acked if cid not in completions]
    assert not lost, f"{len(lost)} of {len(acked)} answered exchanges lost, e.g. {lost[:3]}"
    assert all(completions[cid] == conv for cid, conv in acked.items())
    # Whole or not at all, acknowledged or not: each stored completion has its conversation and
    # its two transcript messages, the answer linked to it.
    answers = {m.completion_id: m.conversation_id for m in messages if m.role == "assistant"}
    assert set(completions.values()) == conversations
    assert answers == completions
    assert len(messages) == 2 * len(completions)
