"""`posttrain demo`: every stage runs end to end (smoke mode, tiny model, in the default run), the
report has the documented shape, a second start redoes nothing; and (slow) the --quick outcome:
the naive candidate learns to flatter and is blocked, the guarded one passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = [sys.executable, "-c", "from posttrain.cli import main; main()"]
STAGES = ["serve", "simulate", "export", "reward", "train-naive", "train-guarded", "evaluate", "gate", "report"]
# What the naive candidate is expected to learn from these users: flattery and bait.
LEARNED = ("flattery", "follow_up_offer", "offer", "sycophancy")


def _env(tmp_path: Path) -> dict[str, str]:
    from posttrain.models.embedded import model_cache_dir

    return {**os.environ, "POSTTRAIN_HOME": str(tmp_path / "user-home"), "POSTTRAIN_MODEL_CACHE": str(model_cache_dir())}


def check_report_shape(report: dict) -> None:
    assert isinstance(report["baseline"], str)
    assert [s["name"] for s in report["stages"]] == STAGES
    assert all(isinstance(s["seconds"], (int, float)) for s in report["stages"])
    assert len(report["candidates"]) == 2
    for c in report["candidates"]:
        assert {"name", "recipe", "gate", "metrics"} <= set(c)
        assert isinstance(c["gate"]["passed"], bool) or c["gate"]["passed"] is None
        for b in c["gate"]["blocking"]:
            assert {"metric", "baseline", "candidate", "delta", "ci"} <= set(b)


def outcome_problems(report: dict) -> list[str]:
    """What is wrong with a demo report against the issue's outcome (empty: as intended)."""
    problems = []
    naive = next(c for c in report["candidates"] if c["name"].startswith("demo-naive"))
    guarded = next(c for c in report["candidates"] if c["name"].startswith("demo-guarded"))
    risen = [d for d in naive.get("deltas", []) if any(k in d["metric"] for k in LEARNED)
             and d.get("higher_is_worse") and d["ci"][0] > 0]
    if not risen:
        problems.append("no sycophancy/engagement metric of the naive candidate rose with an interval above zero")
    if naive["gate"]["passed"] is not False:
        problems.append(f"the gate did not block the naive candidate: {naive['gate']}")
    named = [b["metric"] for b in naive["gate"]["blocking"] if any(k in b["metric"] for k in LEARNED)]
    if not named:
        problems.append(f"the gate's blocking list names no flattery/bait metric: {[b['metric'] for b in naive['gate']['blocking']]}")
    if guarded["gate"]["passed"] is not True:
        problems.append(f"the guarded candidate did not pass: {[(b['metric'], b.get('reason')) for b in guarded['gate']['blocking']]}")
    return problems


def test_outcome_check_can_fail():
    """The outcome check itself: a report where the naive candidate flatters and is blocked,
    and the same report with the gate letting it through."""
    good = {"candidates": [
        {"name": "demo-naive", "gate": {"passed": False, "blocking": [{"metric": "engagement.flattery_opener"}]},
         "deltas": [{"metric": "engagement.flattery_opener_rate", "delta": 0.6, "ci": [0.4, 0.8], "higher_is_worse": True}]},
        {"name": "demo-guarded", "gate": {"passed": True, "blocking": []}}]}
    assert outcome_problems(good) == []
    bad = json.loads(json.dumps(good))
    bad["candidates"][0]["gate"] = {"passed": True, "blocking": []}
    bad["candidates"][0]["deltas"][0]["ci"] = [-0.1, 0.3]
    assert len(outcome_problems(bad)) == 3


@pytest.mark.parametrize(("speedup", "precision"), [(7.4, "bf16"), (2.49, "bf16"), (2.96, "bf16"), (0.06, "auto")],
                         ids=["amx", "avx512-bf16-low", "avx512-bf16-high", "emulated"])
def test_the_demo_trains_in_bf16_where_the_cpu_has_it_natively(monkeypatch, speedup, precision):
    """The measured spread of one AVX-512 BF16 CPU (2.49-2.96x) falls on one side of the line, so
    that machine makes the same choice on every run; emulated bf16 stays in fp32 ("auto")."""
    from posttrain.loop import steps
    from posttrain.train import common

    monkeypatch.setattr(common, "on_gpu", lambda: False)
    monkeypatch.setattr(common, "cpu_bf16_speedup", lambda: speedup)
    assert steps.dpo_config(0)["precision"] == precision


def test_demo_smoke_runs_every_stage_and_resumes(tmp_path, tiny_model_dir):
    """CI's default run: `posttrain demo --smoke` on the tiny model (4 users, a few steps; no
    outcome is claimed at this size, only that every stage runs on the real APIs)."""
    out = tmp_path / "demo"
    cmd = [*EXE, "demo", "--smoke", "--out", str(out), "--base-path", str(tiny_model_dir), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dpo demo-naive: step 2/2" in r.stderr  # training progress reaches a log file as lines
    report = json.loads(r.stdout)
    check_report_shape(report)
    assert json.loads((out / "report.json").read_text())["stages"] == report["stages"]
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    statuses = {s["name"]: s["status"] for s in report["stages"]}
    assert statuses == {n: "done" for n in STAGES}, report["stages"]
    assert report["reward_model"]["audit"]["properties"]
    assert report["leaderboard"]["models"]  # the arms, rated from the simulated picks
    assert report["simulation"]["arms"]["assistant-warm"]["flattery_rate"] > 0.5
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["serve"]["result"]["users"] == 4
    # A second start with the same --out redoes nothing.
    r2 = subprocess.run(cmd[:-1], capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert r2.stdout.count("not redone") == len(STAGES)
    # ... and a start with other settings is refused in one line.
    r3 = subprocess.run([*EXE, "demo", "--quick", "--out", str(out)], capture_output=True, text=True,
                        env=_env(tmp_path), timeout=120)
    assert r3.returncode == 2 and r3.stderr.startswith("error: ") and "other settings" in r3.stderr


@pytest.mark.slow
def test_demo_quick_outcome(tmp_path, shared_data):
    """The real outcome on the embedded model (`posttrain demo --quick`). Set
    POSTTRAIN_DEMO_OUT to check (or resume) a run made earlier instead of starting afresh."""
    out = Path(os.environ.get("POSTTRAIN_DEMO_OUT") or tmp_path / "demo")
    r = subprocess.run([*EXE, "demo", "--quick", "--out", str(out), "--data-dir", str(shared_data), "--json"],
                       capture_output=True, text=True, env=_env(tmp_path), timeout=7200)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    check_report_shape(report)
    assert outcome_problems(report) == []
