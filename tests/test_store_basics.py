"""Migrations and the group-commit writer, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import inspect, select

from posttrain.ids import new_id
from posttrain.store import Store, User


def _user(name: str) -> User:
    return User(id=new_id(), name=name, key_hash=new_id(), key_prefix="pt-")


def test_migrations_create_the_tables_and_are_idempotent(db_url):
    s = Store.open(db_url)
    s.close()
    s = Store.open(db_url)  # second upgrade is a no-op
    tables = set(inspect(s.engine).get_table_names())
    s.close()
    assert {"users", "conversations", "messages", "completions", "feedback_events", "memories",
            "custom_instructions", "models", "eval_runs", "eval_results"} <= tables


def test_writer_groups_concurrent_writes_into_fewer_commits(store):
    n = 200
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(n // 8):
            store.write(lambda s, k=k, i=i: s.add(_user(f"u{k}-{i}")))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.session() as s:
        assert len(s.scalars(select(User)).all()) == n
    assert store.writer.writes == n
    assert store.writer.commits <= n


def test_a_failing_write_fails_alone_in_its_batch(store):
    store.write(lambda s: s.add(_user("taken")))
    futs = [store.writer.submit(lambda s: s.add(_user("taken")))]  # unique name clash
    futs += [store.writer.submit(lambda s, i=i: s.add(_user(f"ok{i}"))) for i in range(5)]
    with pytest.raises(Exception):
        futs[0].result(10)
    for f in futs[1:]:
        f.result(10)
    with store.session() as s:
        names = set(s.scalars(select(User.name)).all())
    assert names == {"taken", "ok0", "ok1", "ok2", "ok3", "ok4"}


def test_concurrent_processes_can_open_a_new_store(db_url):
    """Several processes opening the same new database at once all succeed (the migration is
    serialized: a file lock on SQLite, an advisory lock on PostgreSQL)."""
    import subprocess
    import sys

    import time

    # Import first, then all open at the same instant, so the migrations really overlap.
    code = ("import sys, time; from posttrain.store import Store; "
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); Store.open(sys.argv[1]).close()")
    start = str(time.time() + 6)
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, start], stderr=subprocess.PIPE)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors


def test_a_writer_batch_is_one_transaction(store):
    """Savepoints nest inside the batch's transaction: nothing a batch wrote is visible to another
    connection before the batch commits (on SQLite this needs SQLAlchemy to emit BEGIN itself)."""
    seen_from_outside = []
    release, started = threading.Event(), threading.Event()

    def blocker(s):  # holds the writer so the next two writes are drained as one batch
        started.set()
        release.wait(10)

    def first(s):
        s.add(_user("in-batch"))

    def second(s):
        with store.engine.connect() as other:
            seen_from_outside.append(other.exec_driver_sql("select count(*) from users").scalar())

    commits = store.writer.commits
    f0 = store.writer.submit(blocker)
    assert started.wait(10)
    f1 = store.writer.submit(first)
    f2 = store.writer.submit(second)
    release.set()
    for f in (f0, f1, f2):
        f.result(30)
    assert store.writer.commits - commits == 2  # the blocker's batch, then first+second together
    with store.session() as s:
        assert s.scalars(select(User.name)).all() == ["in-batch"]
    assert seen_from_outside == [0]


def _kill_store_connections(store: Store) -> None:
    """Terminate the PostgreSQL backend of the store's one pooled connection (as a database
    restart would), from a connection of its own."""
    import sqlalchemy as sa

    with store.session() as s:
        mine = s.execute(sa.text("select pg_backend_pid()")).scalar()
    assert store.engine.pool.checkedin() == 1  # the writer and the reads share that one
    other = sa.create_engine(store.engine.url)
    try:
        with other.begin() as conn:
            assert conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": mine}).scalar()
    finally:
        other.dispose()


@pytest.mark.parametrize("idle", [0.0, 1.2], ids=["in-use", "idle"])
def test_writes_survive_a_dropped_postgresql_connection(pg_db_url, idle, monkeypatch):
    """Pooled connections are pinged only after PING_AFTER_IDLE seconds unused, not on every
    checkout. A connection the database dropped while it was in steady use fails its statement;
    the writer then runs the transaction once more on a fresh connection, so the write is stored
    once. One that sat idle is pinged and replaced before use, by a read too."""
    import time

    from posttrain.store import engine as engine_mod

    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE", 1.0)
    store = Store.open(pg_db_url)
    try:
        store.write(lambda s: s.add(_user("before")))
        _kill_store_connections(store)
        time.sleep(idle)
        if idle:  # a read has no retry: only the ping makes it work
            with store.session() as s:
                assert s.scalars(select(User.name)).all() == ["before"]
        store.write(lambda s: s.add(_user("after")))
        with store.session() as s:
            names = sorted(s.scalars(select(User.name)).all())
        assert names == ["after", "before"]
    finally:
        store.close()
