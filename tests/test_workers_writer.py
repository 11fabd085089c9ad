"""The group-commit writer when several processes share a store (store/writer.py).

- A batch runs in one plain transaction; when one write fails, the batch is rolled back and run
  again with a savepoint per write, so only the failing write fails.
- On SQLite, the writers of different processes take turns through `<db>-writer.lock`: while
  one holds a transaction open, another process cannot take the lock.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select

from posttrain.store import User
from tests.test_store_basics import _user


def _batched(store, fns):
    """Submit fns while the writer is held, so they are drained as one batch."""
    release, started = threading.Event(), threading.Event()

    def blocker(s):
        started.set()
        release.wait(10)

    f0 = store.writer.submit(blocker)
    assert started.wait(10)
    futs = [store.writer.submit(fn) for fn in fns]
    release.set()
    f0.result(10)
    return futs


def test_a_batch_is_one_plain_transaction_and_a_failure_reruns_it_with_savepoints(store):
    store.write(lambda s: s.add(_user("taken")))
    runs = {"ok": 0}

    def ok(s):
        runs["ok"] += 1
        s.add(_user("fine"))
        return "stored"

    def clash(s):
        s.add(_user("taken"))  # unique name: fails at flush

    commits = store.writer.commits
    good, bad, other = _batched(store, [ok, clash, lambda s: s.add(_user("also-fine"))])
    assert good.result(10) == "stored"
    other.result(10)
    with pytest.raises(Exception):
        bad.result(10)
    assert runs["ok"] == 2  # once in the plain attempt (rolled back), once with savepoints
    assert store.writer.commits == commits + 2  # the holder's, the batch's: the rolled-back attempt none
    with store.session() as s:
        assert set(s.scalars(select(User.name))) == {"taken", "fine", "also-fine"}

    runs["ok"] = 0
    commits = store.writer.commits
    futs = _batched(store, [lambda s, i=i: s.add(_user(f"batch-{i}")) for i in range(5)])
    for f in futs:
        f.result(10)
    assert store.writer.commits == commits + 2  # the holder's, then five writes in one commit


def test_sqlite_writers_of_two_processes_take_turns_through_a_lock_file(sqlite_store):
    store = sqlite_store
    lock = store.writer._lock_path
    assert lock == f"{store.engine.url.database}-writer.lock"
    probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')")

    def other_process_sees() -> str:
        return subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True,
                              timeout=60).stdout.strip()

    release, inside = threading.Event(), threading.Event()

    def hold(s):
        s.add(_user("holder"))
        inside.set()
        release.wait(60)

    fut = store.writer.submit(hold)
    assert inside.wait(10)
    try:
        assert other_process_sees() == "held"  # mid-transaction: the other writer must wait
    finally:
        release.set()
    fut.result(10)
    assert other_process_sees() == "free"  # released with the commit

    # And a writer in this process waits for another process's turn, then writes.
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    waiting = store.writer.submit(lambda s: s.add(_user("after-turn")))
    with pytest.raises(Exception):
        waiting.result(0.5)  # still waiting for the lock
    os.close(fd)
    waiting.result(10)
