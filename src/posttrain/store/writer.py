"""Group commit: one thread owns all writes, many requests share one transaction.

A request hands the writer a function of a Session and waits for its result. The writer drains
everything queued (up to `max_batch`), runs the functions in one transaction, commits once, and
only then resolves the waiting futures; if one of them raises, the batch is rolled back and run
again with each function in its own savepoint, so one bad write fails alone. So a caller that
got a result knows its write is committed: the server answers 2xx only after that. Under load
many writes share one commit (one fsync of the WAL), which is where the throughput comes from.

Several processes on one SQLite file (`posttrain serve --workers N`, the CLI beside a server)
each have a writer. SQLite lets one of them write at a time, and a writer that finds the file
locked sleeps and retries (its busy handler: 1, 2, 5 ... 100 ms), so two busy processes left
each other idle for milliseconds per commit. The writers therefore take turns through an
advisory lock on a file beside the database (`<db>-writer.lock`, flock): the kernel wakes the
next one the moment the lock is released. PostgreSQL needs no such thing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

_STOP = object()


class WriterClosed(RuntimeError):
    pass


class BatchWriter:
    """Serializes writes through one thread and commits them in groups."""

    def __init__(self, session_factory: sessionmaker[Session], max_batch: int = 256) -> None:
        self._sessions = session_factory
        self._lock_path = _sqlite_lock_path(session_factory)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread = threading.Thread(target=self._run, name="posttrain-writer", daemon=True)
        self._closed = False
        self.commits = 0
        self.writes = 0
        self._thread.start()

    def submit(self, fn: Callable[[Session], T]) -> concurrent.futures.Future[T]:
        """Queue `fn(session)`; the future resolves after the commit that includes it."""
        if self._closed:
            raise WriterClosed("the store writer is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((fn, fut))
        return fut

    def write(self, fn: Callable[[Session], T], timeout: float | None = 60) -> T:
        """Blocking submit: returns fn's result once committed, or raises its exception."""
        return self.submit(fn).result(timeout)

    async def awrite(self, fn: Callable[[Session], T]) -> T:
        """Awaitable submit for async handlers."""
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _drain(self, first: Any) -> tuple[list[tuple[Callable, concurrent.futures.Future]], bool]:
        batch, stop = [], False
        item = first
        while True:
            if item is _STOP:
                stop = True
            else:
                batch.append(item)
            if len(batch) >= self._max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, stop

    def _run(self) -> None:
        while True:
            batch, stop = self._drain(self._queue.get())
            if batch:
                self._commit(batch)
            if stop:
                # Anything queued after close() still gets written.
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        return
                    if item is not _STOP:
                        self._commit([item])

    def _commit(self, batch: list[tuple[Callable, concurrent.futures.Future]]) -> None:
        live = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        # Optimistic first: the whole batch in one plain transaction. A savepoint per write is
        # two more statements each (a tenth of the writer's time per proxied chat exchange),
        # and is only needed when a write fails; then the batch is rolled back and rerun with
        # one savepoint per write, so the failing one fails alone. (Write functions only touch
        # the session, so rerunning one after a rollback is safe.)
        if len(live) > 1 and self._run_plain(live):
            return
        self._run_savepoints(live)

    @contextlib.contextmanager
    def _turn(self):  # noqa: ANN202
        """Hold the cross-process writer lock (SQLite files only) for one transaction."""
        if self._lock_path is None:
            yield
            return
        import fcntl

        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks in the kernel (the GIL is released)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _run_plain(self, batch: list[tuple[Callable, concurrent.futures.Future]]) -> bool:
        """Run and commit the batch in one transaction; False (nothing committed, nothing
        resolved) if any write raised or the commit failed."""
        results: list[Any] = []
        try:
            with self._turn(), self._sessions() as session, session.begin():
                for fn, _fut in batch:
                    results.append(fn(session))
                session.flush()
        except Exception:
            return False
        self.commits += 1
        self.writes += len(batch)
        for (_fn, fut), value in zip(batch, results):
            fut.set_result(value)
        return True

    def _run_savepoints(self, batch: list[tuple[Callable, concurrent.futures.Future]], retry: bool = True) -> None:
        outcomes: list[tuple[concurrent.futures.Future, bool, Any]] = []
        committing = False
        try:
            with self._turn(), self._sessions() as session, session.begin():
                for fn, fut in batch:
                    try:
                        # A single item needs no savepoint: its failure rolls back the whole
                        # (one-item) transaction anyway.
                        if len(batch) == 1:
                            result = fn(session)
                            session.flush()
                        else:
                            with session.begin_nested():
                                result = fn(session)
                        outcomes.append((fut, True, result))
                    except Exception as exc:  # the write fails alone; the batch goes on
                        if len(batch) == 1 or _dead_connection(exc):
                            raise  # a dead connection fails the transaction, not one write
                        outcomes.append((fut, False, exc))
                committing = True
        except Exception as exc:
            if retry and not committing and _dead_connection(exc):
                # The connection died before the commit (the database restarted and no ping ran:
                # engine.py's PING_AFTER_IDLE). Nothing was committed and the pool now hands out
                # fresh connections, so the batch runs once more. A commit that failed is not
                # rerun: it may have committed.
                self._run_savepoints(batch, retry=False)
                return
            # The commit itself failed (or a lone write raised): nobody's write is durable.
            for _fn, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.commits += 1
        self.writes += len(outcomes)
        for fut, ok, value in outcomes:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


def _dead_connection(exc: BaseException) -> bool:
    """The database connection was lost (SQLAlchemy invalidated it), not a write's own error."""
    return bool(getattr(exc, "connection_invalidated", False))


def _sqlite_lock_path(session_factory: sessionmaker[Session]) -> str | None:
    """`<db>-writer.lock` for a SQLite file store, else None."""
    bind = session_factory.kw.get("bind")
    url = getattr(bind, "url", None)
    if url is None or url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return f"{db}-writer.lock"
