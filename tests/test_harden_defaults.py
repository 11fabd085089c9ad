"""Safe defaults: private files, no CDN-backed /docs unless asked, no trailing-slash redirects,
500s logged once without users' text, one demo admin whose key rotates, the model loaded at start-up, not in
the first request, one-line errors for a bad --db, GET /v1/models/{id}, help without `<bool>`,
and docs that agree with the code."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from posttrain.serve.testing import make_env, register_tiny, serve_in_thread

REPO = Path(__file__).resolve().parent.parent
POSTTRAIN = str(Path(sys.executable).with_name("posttrain"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_home_are_private(posttrain_home):
    from posttrain.store import Store
    from posttrain.store.users import add_user

    old = os.umask(0o022)
    try:
        store = Store.open()
        add_user(store, "alice")
        store.close()
    finally:
        os.umask(old)
    assert _mode(posttrain_home) == 0o700
    for name in ("posttrain.db", "posttrain.db-wal", "posttrain.db-shm"):
        if (posttrain_home / name).exists():
            assert _mode(posttrain_home / name) == 0o600, name


def test_docs_off_by_default_openapi_public_no_slash_redirects(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir)
    with env.client() as c:
        assert c.get("/docs").status_code == 404
        assert c.get("/openapi.json").status_code == 200  # public by choice (docs/serve.md)
        for path in ("/v1/models/", "/v1/me/", "/v1/conversations/", "/healthz/"):
            r = c.get(path, headers={"Host": "evil.example", **env.headers("alice")}, follow_redirects=False)
            assert r.status_code in (404, 405) and "location" not in r.headers, (path, r.status_code)
    from fastapi.testclient import TestClient

    from posttrain.serve.app import create_app

    with TestClient(create_app(sqlite_store, docs=True)) as c:
        assert c.get("/docs").status_code == 200


def test_get_one_model(sqlite_store, tiny_model_dir):
    env = make_env(sqlite_store, tiny_model_dir)
    with env.client("alice") as c:
        one = c.get("/v1/models/tiny")
        missing = c.get("/v1/models/nope")
        anonymous = c.request("GET", "/v1/models/tiny", headers={"Authorization": ""})
    assert one.status_code == 200 and one.json()["id"] == "tiny" and one.json()["object"] == "model"
    assert one.json()["default"] is True
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    assert anonymous.status_code == 401


def test_a_500_is_logged_once_without_request_values(sqlite_store, tiny_model_dir, caplog):
    from sqlalchemy.exc import DataError

    env = make_env(sqlite_store, tiny_model_dir)

    @env.app.post("/v1/boom", include_in_schema=False)
    async def boom(body: dict) -> None:
        try:
            raise ValueError(f"driver says: bad byte in {body['text']}")
        except ValueError as exc:
            raise DataError("INSERT INTO memories (text) VALUES (%(text)s)", {"text": body["text"]}, exc) from exc

    caplog.set_level(logging.INFO)
    with serve_in_thread(env.app) as url:
        r = httpx.post(url + "/v1/boom", json={"text": "my secret diary"}, headers=env.headers("alice"))
        time.sleep(0.2)
    assert r.status_code == 500 and r.json()["error"]["message"] == "internal error (DataError); see the server log"
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1, [rec.getMessage()[:80] for rec in errors]
    text = caplog.text + "".join(rec.exc_text or "" for rec in caplog.records)
    assert "my secret diary" not in text
    assert "sqlalchemy.exc.DataError" in errors[0].getMessage() and "POST /v1/boom" in errors[0].getMessage()


def test_the_demo_admin_is_reused_and_its_old_key_stops_working(sqlite_store, tiny_model_dir):
    from posttrain.serve.demo_admin import DEMO_ADMIN, rotate_demo_admin
    from posttrain.store.users import list_users

    env = make_env(sqlite_store, tiny_model_dir)
    first = rotate_demo_admin(sqlite_store)
    second = rotate_demo_admin(sqlite_store)
    with sqlite_store.session() as s:
        admins = [u for u in list_users(s) if u.name.startswith("demo-admin")]
    assert [(u.name, u.is_admin) for u in admins] == [(DEMO_ADMIN, True)]
    with env.client() as c:
        assert c.get("/v1/admin/users", headers={"Authorization": f"Bearer {first}"}).status_code == 401
        assert c.get("/v1/admin/users", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^serve: install\n\t.*posttrain serve .*--demo-admin", makefile, re.M)


def test_serve_loads_the_model_at_start_up_not_in_a_request(tmp_path, tiny_model_dir):
    from posttrain.store import Store
    from posttrain.store.users import add_user

    db = f"sqlite:///{tmp_path / 's.db'}"
    store = Store.open(db)
    register_tiny(store, tiny_model_dir)
    _, key = add_user(store, "alice")
    store.close()
    proc = subprocess.Popen([POSTTRAIN, "serve", "--db", db, "--model", "tiny", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "posttrain serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        while time.monotonic() < deadline:  # the URL is printed just before uvicorn listens
            try:
                health = httpx.get(url + "healthz", timeout=5).json()
                if health["model"] == "ready":  # the weights load in the background at start-up
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        started = time.perf_counter()
        r = httpx.post(url + "v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, timeout=60)
        first = time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert r.status_code == 200, r.text
    # Loading the tiny model takes 5-15 s here (torch, transformers, weights); answering, well under 1 s.
    assert first < 3, f"the first request took {first:.1f} s: the model was loaded inside it"


@pytest.mark.parametrize("db", ["notaurl:::", "postgresql://nobody@127.0.0.1:1/nothing"])
def test_a_bad_db_is_one_line_and_exit_2(db):
    r = subprocess.run([POSTTRAIN, "serve", "--db", db], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: cannot open the store") and r.stderr.count("\n") == 1


def test_help_shows_flags_without_bool_values():
    from posttrain.cli import app

    runner = CliRunner()
    for args in (["serve", "--help"], ["users", "add", "--help"], ["eval", "run", "--help"]):
        out = runner.invoke(app, args, env={"COLUMNS": "200"}).output
        assert "--help" in out and "<bool>" not in out, args
        assert "<str>" in out or "<int" in out, args  # options that take values still say what


def test_docs_match_the_code():
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/python - <<" in tour and not re.search(r"^python ", tour, re.M)
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to {target}, which is not in the repository"
    assert "DESIGN.md" not in readme
    web, serve = (REPO / "docs/web.md").read_text(), (REPO / "docs/serve.md").read_text()
    assert "nothing is stored for a stopped answer" not in web
    for doc in (web, serve):
        assert "abandoned" in doc
    for phrase in ("--user-concurrency", "--user-tokens-per-minute", "--request-tokens", "--exempt-admins",
                   "--auth-failures-per-minute", "--docs", "--system-prompt", "--demo-admin", "GET /v1/models/{id}",
                   "Retry-After", "NUL", "surrogate"):
        assert phrase in serve, phrase
