"""The one orchestration: state.json per stage, no redo, resume after a kill, unavailable parts
said plainly; and `posttrain loop --once` on a small store with the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from posttrain.loop import Context, Stage, StageUnavailable, load_state, open_state, run_stages


def _ctx(out: Path, settings: dict | None = None) -> Context:
    settings = settings or {"x": 1}
    return Context(out=out, settings=settings, state=open_state(out, "test", settings), log=lambda m: None)


def test_finished_stages_are_not_redone(tmp_path):
    calls = []

    def a(ctx):
        calls.append("a")
        return {"value": 1}

    def b(ctx):
        calls.append("b")
        return {"double": ctx.result("a")["value"] * 2}

    stages = [Stage("a", a), Stage("b", b, needs=("a",))]
    state = run_stages(stages, _ctx(tmp_path))
    assert state["stages"]["b"]["result"] == {"double": 2}
    assert all(isinstance(r["seconds"], float) for r in state["stages"].values())
    on_disk = load_state(tmp_path)
    assert on_disk["stages"]["a"]["status"] == "done"
    run_stages(stages, _ctx(tmp_path))
    assert calls == ["a", "b"]
    assert load_state(tmp_path)["starts"] == 2


def test_unavailable_failed_and_skipped_are_said_plainly_and_retried(tmp_path):
    def gone(ctx):
        raise StageUnavailable("posttrain.gate.run_gate is missing")

    def broken(ctx):
        raise RuntimeError("disk full")

    stages = [Stage("missing-module", lambda c: {}, requires=("posttrain.no_such_part",)),
              Stage("gone", gone), Stage("broken", broken), Stage("after", lambda c: {}, needs=("broken",)),
              Stage("free", lambda c: {"ok": True})]
    state = run_stages(stages, _ctx(tmp_path))
    st = state["stages"]
    assert st["missing-module"]["status"] == "unavailable"
    assert st["missing-module"]["reason"] == ("stage missing-module: not available in this build "
                                              "(posttrain.no_such_part is missing)")
    assert st["gone"]["reason"] == "stage gone: not available in this build (posttrain.gate.run_gate is missing)"
    assert st["broken"]["status"] == "failed" and "disk full" in st["broken"]["reason"]
    assert st["after"]["status"] == "skipped" and st["free"]["status"] == "done"
    fixed = [Stage("broken", lambda c: {"fixed": True}), Stage("after", lambda c: {}, needs=("broken",))]
    state = run_stages(fixed, _ctx(tmp_path))
    assert state["stages"]["broken"]["attempts"] == 2 and state["stages"]["after"]["status"] == "done"


def test_other_settings_in_the_same_out_are_refused(tmp_path):
    run_stages([Stage("a", lambda c: {})], _ctx(tmp_path, {"mode": "quick"}))
    with pytest.raises(ValueError, match="other settings .*mode"):
        _ctx(tmp_path, {"mode": "full"})


def test_resources_are_closed_even_when_a_stage_is_interrupted(tmp_path):
    closed = []

    class Res:
        def close(self):
            closed.append(True)

    def start(ctx):
        ctx.resources["server"] = Res()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stage("a", lambda c: {}), Stage("b", start)], _ctx(tmp_path))
    assert closed == [True]
    st = load_state(tmp_path)
    assert st["stages"]["a"]["status"] == "done" and "b" not in st["stages"]


SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from posttrain.loop import Context, Stage, open_state, run_stages
    out, marks = Path(sys.argv[1]), Path(sys.argv[2])
    def mark(name):
        def run(ctx):
            with marks.open("a") as f:
                f.write(name + "\\n")
            if name == "slow" and sys.argv[3] == "first":
                time.sleep(120)
            return {"ran": name}
        return run
    s = {"k": 1}
    ctx = Context(out=out, settings=s, state=open_state(out, "kill", s), log=print)
    run_stages([Stage("first", mark("first")), Stage("slow", mark("slow")), Stage("last", mark("last"))], ctx)
""")


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out, marks = tmp_path / "out", tmp_path / "marks.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(marks), "first"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "slow" not in (marks.read_text() if marks.exists() else ""):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert load_state(out)["stages"]["first"]["status"] == "done"
    subprocess.run([sys.executable, str(script), str(out), str(marks), "again"], check=True, timeout=120)
    assert marks.read_text().split() == ["first", "slow", "slow", "last"]  # "first" was not redone
    assert [load_state(out)["stages"][n]["status"] for n in ("first", "slow", "last")] == ["done"] * 3


@pytest.fixture
def small_deployment(tmp_path, tiny_model_dir):
    """A store with the tiny model as production and a few users' chats, thumbs and picks,
    made through the real (in-process) API."""
    from posttrain.serve.testing import make_env
    from posttrain.store import Store

    url = f"sqlite:///{tmp_path / 'prod.db'}"
    store = Store.open(url)
    env = make_env(store, tiny_model_dir)
    # Written for this test (not like any eval prompt, so decontamination keeps them).
    prompts = ["Suggest a name for my orange tabby who loves cardboard boxes.",
               "Draft a two-line note asking my neighbour to water the tomatoes on Friday.",
               "Which board game suits four cousins aged nine to fifteen on a snowy weekend?",
               "Plan a twenty-minute stretching routine for after long bike rides.",
               "Rename my bakery newsletter, currently called Crumbs Weekly.",
               "Outline a short toast for my grandmother's ninetieth birthday picnic."]
    for who in ("alice", "bob"):
        with env.client(who) as c:
            for i, p in enumerate(prompts):
                r = c.post("/v1/chat/completions", json={"model": "tiny", "n": 2, "max_tokens": 8, "seed": i,
                                                        "messages": [{"role": "user", "content": p}]}).json()
                a, b = (ch["completion_id"] for ch in r["choices"])
                assert c.post("/v1/feedback", json={"completion_id": a, "other_completion_id": b, "kind": "pairwise",
                                                    "value": "a" if i % 2 else "b"}).status_code == 201
                assert c.post("/v1/feedback", json={"completion_id": a, "kind": "thumbs",
                                                    "value": 1 if i % 3 else -1}).status_code == 201
    store.close()
    return url


def test_loop_once_on_a_small_store(tmp_path, small_deployment):
    from posttrain.models.embedded import model_cache_dir

    policy = Path(__file__).parents[1] / "src" / "posttrain" / "loop" / "policies" / "demo-quick.toml"
    cfg = tmp_path / "loop.toml"
    cfg.write_text(textwrap.dedent(f"""
        db = "{small_deployment}"
        state_dir = "state"
        production = "tiny"
        policy = "{policy}"
        gate_limit = 2
        [export]
        max_user_share = 1.0
        test_fraction = 0.0   # two users: a by-user split could send both to test (random ids)
        [[recipe]]
        name = "dpo-prefs"
        method = "dpo"
        data = "preferences"
        max_steps = 1
    """))
    env = {**os.environ, "POSTTRAIN_HOME": str(tmp_path / "home"), "POSTTRAIN_MODEL_CACHE": str(model_cache_dir())}
    exe = [sys.executable, "-c", "from posttrain.cli import main; main()"]
    r = subprocess.run([*exe, "loop", "--config", str(cfg), "--once", "--json"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    record = json.loads(r.stdout)
    stages = {s["name"]: s for s in record["stages"]}
    assert stages["export"]["status"] == "done" and stages["train:dpo-prefs"]["status"] == "done", record["stages"]
    trained = record["trained"]["dpo-prefs"]
    assert trained["model"].startswith("dpo-prefs-") and trained["snapshot"]
    gate = record["gate"][trained["model"]]
    # Two cases per suite cannot power the gate: it blocks, and the loop starts no A/B and promotes nothing.
    assert gate["passed"] is False and gate["blocking"]
    assert record["ab"]["started"] == []
    lines = (tmp_path / "state" / "cycles.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["cycle"] == record["cycle"]
    r = subprocess.run([*exe, "loop", "--config", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--once" in r.stderr


def test_the_guarded_judge_relabels_pairs_by_the_reward_mix_and_attributes_it():
    """judge_pairs: the answer the mix scores higher becomes the chosen one (the user's pick is
    flipped when the mix disagrees), pairs it cannot separate are dropped, each signal's share of
    the within-pair variance is recorded, and one signal carrying it for three chunks raises the
    dominance alarm, as in GRPO."""
    from posttrain.loop.guarded import judge_pairs
    from posttrain.train.rewards import build_mix

    mix = build_mix([{"signal": "flattery_opener", "weight": -1.0, "args": {"method": "rules"}},
                     {"signal": "answer_correct", "weight": 1.0}])

    def pair(q: str, chosen: str, rejected: str) -> dict:
        return {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}

    rows = [pair("What is the capital of France?", "Great question! Paris.", "Paris."),   # flattery: flipped
            pair("What is the capital of Peru?", "Lima.", "Great question! Lima."),       # agrees with the user
            pair("What is 2 + 2?", "4", "4"),                                             # nothing separates: dropped
            pair("What is 3 + 3?", "5", "6")]                                             # the wrong answer: flipped
    cases = [{"answer": "Paris"}, {"answer": "Lima"}, {"answer": "4"}, {"answer": "6"}]
    out = judge_pairs(rows, mix, cases, chunk=2)
    assert (out["agreed"], out["flipped"], out["dropped"], out["kept"]) == (1, 2, 1, 3)
    chosen = [r["chosen"][0]["content"] for r in out["rows"]]
    assert chosen == ["Paris.", "Lima.", "6"]
    shares = [s["shares"] for s in out["attribution"]["steps"]]
    assert shares[0] == {"flattery_opener": pytest.approx(1.0), "answer_correct": pytest.approx(0.0)}
    assert shares[1]["answer_correct"] == pytest.approx(1.0)
    assert out["alarms"] == []  # one chunk each: no stretch

    flattery_only = [rows[0]] * 6
    out = judge_pairs(flattery_only, mix, [cases[0]] * 6, chunk=2)
    assert [a["signal"] for a in out["alarms"]] == ["flattery_opener"] and out["alarms"][0]["steps"] == [1, 3]
    with pytest.raises(ValueError, match="cases"):
        judge_pairs(rows, mix, cases[:2])
