"""Connecting to the store: SQLite (WAL) by default, PostgreSQL or any SQLAlchemy URL otherwise.

SQLite runs in WAL mode with synchronous=NORMAL: a committed transaction survives the process
being killed (the WAL is in the OS page cache and replayed on open); only a power loss can drop
the last commits. A background thread checkpoints the WAL so readers never stall on it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

from posttrain import config

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling starts no transaction before a SAVEPOINT, so each
    # savepoint release would commit on its own and a writer batch would not be one transaction.
    # Turn it off and let SQLAlchemy emit BEGIN itself (_sqlite_begin): SQLAlchemy's documented
    # recipe for correct savepoints and transactional DDL on SQLite.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    # Checkpointing is done by a background thread (Checkpointer), not by the committing writer;
    # the automatic checkpoint stays as a safety net at 16 MB for processes without one.
    cur.execute("PRAGMA wal_autocheckpoint=4000")
    cur.close()


def _sqlite_begin(conn) -> None:
    # The writer takes the write lock up front (IMMEDIATE): a deferred transaction that reads and
    # then writes can fail with SQLITE_BUSY without waiting when another process wrote meanwhile.
    immediate = conn.get_execution_options().get("posttrain_writer", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (see config.database_url), with SQLite tuned for a durable WAL."""
    url = config.database_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # A new store file is readable by its owner only (0600); SQLite gives its -wal and
            # -shm files the database file's permissions.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


# A pooled connection is tested with a round trip (SELECT 1) before use only when it has sat
# unused for this long. SQLAlchemy's pool_pre_ping tests it on every checkout: one more round
# trip per transaction, and the group-commit writer checks out a connection per commit. One
# writer transaction after another on the local PostgreSQL, alternated with the code before:
# 0.66-0.86 ms -> 0.54-0.66 ms each (BENCHMARKS.md, "PostgreSQL"). A connection that died while in
# steady use (the database restarted) fails its statement instead; the pool then drops every
# older connection, and the writer runs the transaction once more on a fresh one (store/writer.py).
PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's documented pessimistic disconnect check, done only after PING_AFTER_IDLE s."""

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn, record) -> None:  # noqa: ANN001
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, proxy) -> None:  # noqa: ANN001
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # new, or just used
        try:
            cur = dbapi_conn.cursor()
            cur.execute("SELECT 1")
            cur.close()
        except Exception as err:
            # The pool discards this connection and checks out (or opens) another.
            raise exc.DisconnectionError(f"stale pooled connection: {err}") from err


def _alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration of every branch (idempotent, and safe when several
    processes open a new store at once: they take turns, the later ones find nothing to do).

    Each stage of the loop adds its tables in its own migration off 0001 (`0002_<stage>.py`), so
    the history has several independent heads and "heads" upgrades them all."""
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if path and path != ":memory:":
            import fcntl

            with open(f"{path}.migrate-lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with engine.begin() as conn:
                    command.upgrade(_alembic_config(conn), "heads")
            return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Transaction-scoped advisory lock: released at commit, serializes concurrent upgrades.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411020001)")
        command.upgrade(_alembic_config(conn), "heads")


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` every `interval` seconds on SQLite; no-op elsewhere."""

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Checkpointer":
        if self.engine.dialect.name == "sqlite":
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        if self.engine.dialect.name != "sqlite":
            return
        # A raw connection (autocommit): a checkpoint must not run inside a transaction.
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            raw.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None
        self.checkpoint()


def ping(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("select 1")).scalar() == 1
