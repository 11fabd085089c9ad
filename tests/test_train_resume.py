"""A run killed with SIGKILL resumes from its last complete checkpoint when the same command
runs again (a real subprocess and a real kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_train import _write, sft_rows


def _last_complete(run_dir: Path) -> int:
    steps = []
    for p in run_dir.glob("checkpoint-*"):
        try:
            json.loads((p / "trainer_state.json").read_text())
            steps.append(int(p.name.split("-")[1]))
        except (OSError, ValueError):
            pass
    return max(steps, default=0)


def test_sigkill_then_same_command_resumes(tmp_path, tiny_model_dir, posttrain_home):
    from posttrain.models.registry import get_model, register_model
    from posttrain.store import Store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(db)
    register_model(store, "tiny", "local", {"path": str(tiny_model_dir)})
    data = _write(tmp_path / "s.jsonl", sft_rows(8))
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 1\nsave_steps = 1\nlora_r = 4\nmax_length = 128\n")
    exe = Path(sys.executable).with_name("posttrain")
    cmd = [str(exe), "train", "sft", "--data", str(data), "--base", "tiny", "--name", "resumed", "--config", str(cfg),
           "--max-steps", "4", "--quiet", "--json", "--db", db]
    env = {**os.environ, "POSTTRAIN_HOME": str(posttrain_home)}
    run_dir = posttrain_home / "runs" / "resumed"

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while _last_complete(run_dir) < 1:
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _last_complete(run_dir)
    assert 1 <= killed_at < 4

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    t = json.loads(again.stdout)["metrics"]["train"]
    assert t["steps"] == 4
    resumed = int(t["resumed_from"].split("-")[1])
    assert resumed >= killed_at  # the newest complete checkpoint (a later one may have completed after our poll)
    assert get_model(store, "resumed").metrics["train"]["resumed_from"] == t["resumed_from"]
    assert not list(run_dir.glob("checkpoint-*"))  # cleaned up once registered
    store.close()
