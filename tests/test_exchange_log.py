"""The server's exchange log (serve/exchange_log.py) on SQLite and PostgreSQL: the exchanges of
concurrent chat requests share one write (one multi-row insert per table), each caller returns
only once its exchange is committed, and a bad exchange in a group fails alone."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

from sqlalchemy import func, select

from posttrain.ids import new_id
from posttrain.serve.exchange_log import ExchangeLog
from posttrain.store import chat
from posttrain.store.schema import Completion, Conversation, Message
from posttrain.store.users import add_user


def _exchange(user_id: str, text: str, completion_id: str | None = None) -> chat.Exchange:
    conv, cid, now = new_id(), completion_id or new_id("chatcmpl-"), datetime.now(timezone.utc)
    prompt = [{"role": "user", "content": text}]
    return chat.Exchange(
        user_id=user_id, conversation_id=conv, is_new=True, title=text, now=now,
        transcript=[{"id": new_id(), **prompt[0]},
                    {"id": new_id(), "role": "assistant", "content": "answer", "completion_id": cid}],
        completions=[{"id": cid, "request_id": new_id(), "choice_index": 0, "conversation_id": conv,
                      "user_id": user_id, "model": "m", "params": {}, "prompt": prompt, "text": "answer",
                      "memory": [], "created_at": now}],
    )


def _count(store, table) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def _held(store):
    """Hold the store's writer until the returned event is set (so requests gather meanwhile)."""
    release, started = threading.Event(), threading.Event()

    def blocker(_s):
        started.set()
        release.wait(10)

    fut = store.writer.submit(blocker)
    assert started.wait(10)
    return release, fut


def test_concurrent_exchanges_share_one_write_and_return_after_their_commit(store):
    user, _ = add_user(store, "alice")
    log = ExchangeLog(store)
    exchanges = [_exchange(user.id, f"q{i}") for i in range(6)]

    async def main():
        release, held = _held(store)
        tasks = [asyncio.ensure_future(log.record(ex)) for ex in exchanges]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in tasks)  # nothing returns before its commit
        assert _count(store, Completion) == 0
        writes = store.writer.writes
        release.set()
        await asyncio.gather(*tasks)
        held.result(10)
        return store.writer.writes - writes

    writes = asyncio.run(main())
    # The six arrived together and went in as one write function (one by one: six).
    assert writes == 1 + 1  # the holder's, then the group's
    assert _count(store, Completion) == 6 and _count(store, Conversation) == 6 and _count(store, Message) == 12


def test_a_bad_exchange_in_a_group_fails_alone(store):
    user, _ = add_user(store, "alice")
    log = ExchangeLog(store)
    taken = new_id("chatcmpl-")
    store.write(lambda s: chat.record_exchange(s, _exchange(user.id, "first", taken)))
    exchanges = [_exchange(user.id, "a"), _exchange(user.id, "b", taken), _exchange(user.id, "c")]

    async def main():
        release, held = _held(store)
        first = asyncio.ensure_future(log.record(_exchange(user.id, "starts the group")))
        await asyncio.sleep(0.01)
        results = asyncio.gather(*(log.record(ex) for ex in exchanges), return_exceptions=True)
        await asyncio.sleep(0.01)
        release.set()
        held.result(10)
        await first
        return await results

    ok_a, bad, ok_c = asyncio.run(main())
    assert ok_a is None and ok_c is None
    assert isinstance(bad, Exception)  # the duplicate completion id
    with store.session() as s:
        titles = set(s.scalars(select(Conversation.title)))
    assert titles == {"first", "starts the group", "a", "c"}


def test_an_exchange_alone_is_written_at_once_and_the_next_ones_gather_meanwhile(store):
    user, _ = add_user(store, "alice")
    log = ExchangeLog(store)

    async def main():
        release, held = _held(store)
        first = asyncio.ensure_future(log.record(_exchange(user.id, "alone")))
        await asyncio.sleep(0.05)  # handed to the writer, which is busy
        later = [asyncio.ensure_future(log.record(_exchange(user.id, f"later {i}"))) for i in range(3)]
        await asyncio.sleep(0.01)
        writes = store.writer.writes
        release.set()
        held.result(10)
        await asyncio.gather(first, *later)
        return store.writer.writes - writes

    assert asyncio.run(main()) == 1 + 1 + 1  # the holder's, the first exchange's, the three later ones'
    assert _count(store, Completion) == 4
