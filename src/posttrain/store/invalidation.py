"""Cross-process cache invalidation: a `cache_versions` table of topic -> integer version.

A process that changes something other processes cache bumps the topic in the same transaction
as the change, so the bump is committed exactly when the change is:

    store.write(lambda s: (revoke(s), invalidation.bump(s, "users")))

A process that caches asks for the topic's version before trusting its cache, and drops the
cache when the version moved:

    watch = invalidation.watcher(store)     # one per Store, shared by every cache of it
    v = watch.version("users")
    if v != seen: cache.clear(); seen = v

How fresh and how cheap `version()` is, per database:
- SQLite: each call runs `PRAGMA data_version` on a dedicated connection (a few microseconds, no
  disk read). That number changes only when another connection committed; only then is the
  table read (one tiny SELECT). A bump committed before the call is therefore always seen.
- PostgreSQL: `bump` also sends `NOTIFY posttrain_cache_versions` in its transaction (delivered
  at commit); a listener thread on its own connection updates the versions, and `version()`
  only reads memory. A bump is seen once the notification arrives (well under a millisecond on
  one host); the listener also re-reads the table every `RESYNC_SECONDS`, which bounds the delay
  if a notification is ever lost (e.g. the listening connection dropped).
- Other databases: the table is read at most every `MAX_AGE_SECONDS`.

Topics are short strings owned by whoever caches: "users" (API keys, admin and consent flags;
serve/auth.KeyCache). A topic never bumped has version 0.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Integer, String, event, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from posttrain.store._store import Store
from posttrain.store.schema import Base

__all__ = ["CHANNEL", "CacheVersion", "Watcher", "bump", "current", "watcher"]

CHANNEL = "posttrain_cache_versions"
RESYNC_SECONDS = 1.0
MAX_AGE_SECONDS = 0.05
log = logging.getLogger("posttrain.store.invalidation")


class CacheVersion(Base):
    """One row per topic; `version` goes up by one with every bump."""

    __tablename__ = "cache_versions"
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


_TABLE = CacheVersion.__table__


def bump(session: Session, *topics: str) -> None:
    """Write function part: increment each topic's version (creating it at 1) in the caller's
    transaction. Other processes see the new version once that transaction commits."""
    dialect = session.get_bind().dialect.name
    for topic in topics:
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(_TABLE).values(topic=topic, version=1)
            session.execute(stmt.on_conflict_do_update(
                index_elements=["topic"], set_={"version": _TABLE.c.version + 1}))
        else:  # the writer thread serializes writes: update, else insert
            done = session.execute(update(_TABLE).where(_TABLE.c.topic == topic)
                                   .values(version=_TABLE.c.version + 1))
            if done.rowcount == 0:
                session.execute(_TABLE.insert().values(topic=topic, version=1))
        if dialect == "postgresql":
            session.execute(text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic})


def current(session: Session, topic: str) -> int:
    """The committed version of `topic` as this session sees it (0 if never bumped)."""
    return session.scalar(select(_TABLE.c.version).where(_TABLE.c.topic == topic)) or 0


class Watcher:
    """Knows the current version of every topic of one store; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self.dialect = store.dialect
        self._engine = store.engine
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._sqlite: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._read_at = 0.0
        self._listener: threading.Thread | None = None
        if self.dialect == "sqlite":
            path = store.engine.url.database
            if path and path != ":memory:":
                self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        # Store.close() disposes the engine: release our connection and thread with it.
        event.listen(store.engine, "engine_disposed", lambda _engine: self.close())

    # -- reading -----------------------------------------------------------------------------

    def version(self, topic: str) -> int:
        """The newest committed version of `topic` this process knows (cheap: see above)."""
        if self._closed:
            return self._versions.get(topic, 0)
        if self._sqlite is not None:
            with self._lock:
                dv = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
                if dv != self._data_version:
                    self._versions = self._read_sqlite()
                    self._data_version = dv
            return self._versions.get(topic, 0)
        if self.dialect == "postgresql":
            if self._listener is None:
                self._start_listener()
            return self._versions.get(topic, 0)
        now = time.monotonic()
        if now - self._read_at >= MAX_AGE_SECONDS:
            self._versions = self._read_engine()
            self._read_at = now
        return self._versions.get(topic, 0)

    def _read_sqlite(self) -> dict[str, int]:
        try:
            return dict(self._sqlite.execute("SELECT topic, version FROM cache_versions").fetchall())  # type: ignore[union-attr]
        except sqlite3.OperationalError:  # a store opened without migrating: nothing bumped yet
            return {}

    def _read_engine(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            return {t: v for t, v in conn.execute(select(_TABLE.c.topic, _TABLE.c.version))}

    # -- PostgreSQL listener -----------------------------------------------------------------

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            import psycopg

            url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            conn = psycopg.connect(url, autocommit=True)
            conn.execute(f"LISTEN {CHANNEL}")
            # Read after LISTEN: a bump committed in between is either in this read or notified.
            self._versions = {t: v for t, v in conn.execute("SELECT topic, version FROM cache_versions")}
            thread = threading.Thread(target=_listen, args=(weakref.ref(self), conn),
                                      name="posttrain-invalidation", daemon=True)
            self._listener = thread
            thread.start()

    def _apply(self, rows: Any) -> None:
        self._versions = {t: v for t, v in rows}

    def close(self) -> None:
        """Release the dedicated connection / stop the listener (Store.close() calls this)."""
        self._closed = True
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None


def _listen(ref: "weakref.ref[Watcher]", conn: Any) -> None:
    """Listener thread: apply notifications as they come; re-read the table every RESYNC_SECONDS.
    Holds only a weak reference, so a forgotten watcher stops its thread within a second."""
    try:
        while True:
            w = ref()
            if w is None or w._closed:
                return
            del w
            try:
                notified = any(True for _ in conn.notifies(timeout=RESYNC_SECONDS, stop_after=1))
                # Re-read the whole (tiny) table rather than trusting a payload: exact versions.
                rows = conn.execute("SELECT topic, version FROM cache_versions").fetchall()
            except Exception as exc:  # the schema went away, the server restarted...: keep going
                log.debug("cache_versions listener: %s", exc)
                if conn.closed:
                    return
                time.sleep(RESYNC_SECONDS)
                continue
            w = ref()
            if w is None:
                return
            w._apply(rows)
            del w, notified
    finally:
        conn.close()


_WATCHERS: "weakref.WeakKeyDictionary[Store, Watcher]" = weakref.WeakKeyDictionary()
_WATCHERS_LOCK = threading.Lock()


def watcher(store: Store) -> Watcher:
    """The shared Watcher of `store` (created on first use)."""
    with _WATCHERS_LOCK:
        w = _WATCHERS.get(store)
        if w is None:
            w = _WATCHERS[store] = Watcher(store)
        return w
