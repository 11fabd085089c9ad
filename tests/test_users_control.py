"""Users' control over their data: consent, delete, revoke-key, against a real running server.

`posttrain serve` runs as a subprocess (as tests/test_durability.py starts it), on SQLite and on
PostgreSQL; the key is warmed into the server's key cache first, then revoked or deleted by
another process (the `posttrain users` CLI, and the Python API in this test process). The very
next request must be refused: no sleep, no retry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from test_datasets_export import seed_world

from posttrain.datasets import export
from posttrain.loop.server import Server
from posttrain.store import Completion, Conversation, CustomInstructions, FeedbackEvent, Memory, Message, Store, User
from posttrain.store import invalidation
from posttrain.store import personal as personal_queries
from posttrain.store.users import USERS_TOPIC, add_user, delete_user, revoke_key


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("posttrain")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def _me(base: str, key: str) -> int:
    return httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def test_revoked_and_deleted_keys_are_refused_at_once_by_a_running_server(db_url, tmp_path):
    from posttrain.models.registry import register_model

    store = Store.open(db_url)
    try:
        register_model(store, "unused-upstream", "openai", {"base_url": "http://127.0.0.1:9/v1", "model": "x"})
        alice, alice_key = add_user(store, "alice")
        _, bob_key = add_user(store, "bob")
        _, carol_key = add_user(store, "carol")
    finally:
        store.close()
    # The served model is an OpenAI-compatible upstream that is never called: start-up loads no weights.
    server = Server(db_url, tmp_path / "home", tmp_path / "server.log", model="unused-upstream").start()
    base = server.url
    try:
        assert _me(base, alice_key) == 200 and _me(base, bob_key) == 200 and _me(base, carol_key) == 200  # cached
        revoked = _cli("users", "revoke-key", "alice", "--db", db_url)
        assert revoked.returncode == 0, revoked.stderr
        new_key = revoked.stdout.strip()
        assert _me(base, alice_key) == 401  # the very next request, from the warm cache's point of view
        assert _me(base, new_key) == 200 and _me(base, bob_key) == 200

        # The Python API from this process: no CLI start-up time to hide a slow invalidation.
        store = Store.open(db_url)
        try:
            _, newer = revoke_key(store, "bob")
            assert _me(base, bob_key) == 401
            assert _me(base, newer) == 200
            delete_user(store, "carol")
            assert _me(base, carol_key) == 401
            delete_user(store, "alice")
            assert _me(base, new_key) == 401
        finally:
            store.close()
    finally:
        server.close()


def test_delete_removes_the_users_data_and_lists_models_trained_on_it(store, tmp_path):
    from posttrain.models.registry import register_model

    users, fb = seed_world(store, n_users=2, per_user=2)
    (alice, _), (bob, _) = users
    store.write(lambda s: personal_queries.add_memory(s, alice.id, "I like rivers"))
    store.write(lambda s: personal_queries.add_instructions(s, alice.id, "Be brief."))
    snap = export(store, "sft", None, near_duplicates=False, max_user_share=1, test_fraction=0)["snapshot"]
    bob_only = export(store, "kto", None, near_duplicates=False, max_user_share=1, test_fraction=0, until="2000-01-01")
    register_model(store, "base", "openai", {"base_url": "http://127.0.0.1:1/v1", "model": "x"})
    register_model(store, "sft-1", "openai", {"base_url": "http://127.0.0.1:1/v1", "model": "x"}, parent="base",
                   data_snapshot=snap[:12])
    register_model(store, "dpo-1", "openai", {"base_url": "http://127.0.0.1:1/v1", "model": "x"}, parent="sft-1")
    register_model(store, "other", "openai", {"base_url": "http://127.0.0.1:1/v1", "model": "x"},
                   data_snapshot=bob_only["snapshot"])

    result = delete_user(store, "user00")
    assert result["snapshots"] == [snap]
    assert [(m["name"], m["via"]) for m in result["trained_models"]] == [("dpo-1", "parent sft-1"), ("sft-1", "data_snapshot")]
    assert result["deleted"]["feedback_events"] == 8 and result["deleted"]["completions"] == 4
    assert result["deleted"]["memories"] == 1 and result["deleted"]["custom_instructions"] == 1
    with store.session() as s:
        for table, column in ((FeedbackEvent, FeedbackEvent.user_id), (Completion, Completion.user_id),
                              (Conversation, Conversation.user_id), (Memory, Memory.user_id),
                              (CustomInstructions, CustomInstructions.user_id), (User, User.id)):
            assert s.scalar(select(func.count()).select_from(table).where(column == alice.id)) == 0, table
        assert s.scalar(select(func.count()).select_from(Message)) == 4  # bob's 2 conversations x 2 turns
        assert s.scalar(select(func.count()).select_from(FeedbackEvent).where(FeedbackEvent.user_id == bob.id)) == 8
    # Later exports no longer contain them; the lineage of the earlier snapshot is kept.
    again = export(store, "sft", None, near_duplicates=False, max_user_share=1, test_fraction=0)
    assert again["users"] == 1
    from posttrain.store.users import UserNotFound

    with pytest.raises(UserNotFound, match="no user named 'user00'"):
        delete_user(store, "user00")


def _run(*args: str):  # noqa: ANN202
    """The CLI in this process (typer's runner): same commands, no interpreter start-up."""
    from typer.testing import CliRunner

    from posttrain.cli import app

    return CliRunner().invoke(app, list(args))


def seeded_db(tmp_path: Path, n_users: int, per_user: int) -> str:
    """A SQLite store URL holding seed_world's users and feedback."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store.open(db)
    try:
        seed_world(store, n_users=n_users, per_user=per_user)
    finally:
        store.close()
    return db


def test_cli_consent_revoke_and_delete(tmp_path):
    db = seeded_db(tmp_path, 1, 1)
    off = _run("users", "consent", "user00", "--off", "--db", db, "--json")
    assert off.exit_code == 0 and json.loads(off.stdout)["consent"] is False
    out = tmp_path / "k.jsonl"
    exported = _run("export", "kto", "--out", str(out), "--db", db, "--json", "--max-user-share", "1")
    report = json.loads(exported.stdout)
    assert report["rows"] == 0 and report["excluded"]["no_consent"] == 2
    on = _run("users", "consent", "user00", "--on", "--db", db)
    assert on.exit_code == 0 and on.stdout.strip() == "user00: consent on"
    neither = _run("users", "consent", "user00", "--db", db)
    assert neither.exit_code == 2 and neither.stderr.strip() == "error: say --on or --off"
    missing = _run("users", "revoke-key", "nobody", "--db", db)
    assert missing.exit_code == 2 and "no user named 'nobody'" in missing.stderr
    revoked = _run("users", "revoke-key", "user00", "--db", db, "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["api_key"].startswith("pt-")
    gone = _run("users", "delete", "user00", "--db", db)
    assert gone.exit_code == 0 and "no model was trained on their data" in gone.stdout


def test_watcher_sees_a_bump_from_another_process_connection(db_url):
    a, b = Store.open(db_url), Store.open(db_url)
    try:
        w = invalidation.watcher(a)
        assert invalidation.watcher(a) is w
        before = w.version(USERS_TOPIC)
        b.write(lambda s: invalidation.bump(s, USERS_TOPIC, "other"))
        started = time.monotonic()
        while w.version(USERS_TOPIC) == before and time.monotonic() - started < 2:
            time.sleep(0.001)
        waited = time.monotonic() - started
        assert w.version(USERS_TOPIC) == before + 1 and w.version("other") >= 1 and w.version("never") == 0
        if a.dialect == "sqlite":
            assert waited < 0.001  # PRAGMA data_version: seen by the first call after the commit
        print(f"{a.dialect}: bump seen after {waited * 1000:.2f} ms")
        with b.session() as s:
            assert invalidation.current(s, USERS_TOPIC) == before + 1
    finally:
        a.close()
        b.close()
