"""Distillation with posttrain's own server as the teacher: a real `posttrain serve` app (uvicorn
in a thread) serving the tiny model, reached through the OpenAI-compatible backend; its answers
become a stored SFT snapshot and the student is trained on them and registered."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from posttrain.cli import app


@pytest.fixture
def teacher_server(sqlite_store, tiny_model_dir):
    import uvicorn

    from posttrain.serve.testing import make_env

    env = make_env(sqlite_store, tiny_model_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(env.app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the teacher server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", env.keys["alice"]
    server.should_exit = True
    thread.join(timeout=10)


def test_distill_from_posttrain_server_into_the_tiny_student(tmp_path, sqlite_store, teacher_server, monkeypatch):
    from posttrain.models.registry import get_model, register_model

    url, key = teacher_server
    monkeypatch.setenv("TEACHER_KEY", key)
    register_model(sqlite_store, "teacher", "openai", {"base_url": url, "model": "tiny", "api_key_env": "TEACHER_KEY"})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Question {i}?"}]}) + "\n"
                               for i in range(4)))
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 2\nlora_r = 4\nmax_length = 160\nsave_steps = 100\n")
    r = CliRunner().invoke(app, ["distill", "--teacher", "teacher", "--student", "tiny", "--prompts", str(prompts),
                                 "--name", "student", "--config", str(cfg), "--max-steps", "1",
                                 "--max-new-tokens", "8", "--json", "--db", f"sqlite:///{tmp_path / 'store.db'}"])  # sqlite_store's file
    assert r.exit_code == 0, r.output
    info = get_model(sqlite_store, "student")
    t = info.metrics["train"]
    assert info.parent == "tiny" and t["method"] == "sft" and t["distill"]["teacher"] == "teacher"
    assert t["distill"]["answers"] == 4
    rows = [json.loads(line) for line in open(t["distill"]["snapshot_file"])]
    assert [r["messages"][0]["content"] for r in rows] == [f"Question {i}?" for i in range(4)]
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"] for r in rows)
    if info.data_snapshot is not None:  # stored through posttrain.datasets
        from posttrain.datasets.snapshots import get_snapshot

        assert get_snapshot(sqlite_store, info.data_snapshot).kind == "sft"


def test_distill_errors_are_one_line(tmp_path, sqlite_store):
    r = CliRunner().invoke(app, ["distill", "--teacher", "nobody", "--student", "tiny", "--prompts", "p.jsonl",
                                 "--name", "s", "--db", f"sqlite:///{tmp_path / 'store.db'}"])
    assert r.exit_code == 2 and "unknown model 'nobody'" in r.output and len(r.output.strip().splitlines()) == 1
