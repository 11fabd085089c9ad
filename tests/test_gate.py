"""The gate end to end on the tiny model: an identical candidate passes (after review), an
engagement-bait candidate served over real HTTP is blocked naming those metrics, an
underpowered run blocks, a veto blocks what the numbers pass, lineage alarms, the CLI."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from gate_helpers import BaitUpstream, log_conversations, write_policy
from posttrain.gate import gate_status, run_gate, show_decision, submit_review
from posttrain.gate.lineage import goodhart_warnings
from posttrain.models.registry import register_model
from posttrain.store import Store
from posttrain.store import gate as q


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("gate")
    url = f"sqlite:///{root / 'store.db'}"
    store = Store.open(url)
    for name in ("t1", "t2"):
        register_model(store, name, "local", {"path": str(tiny_model_dir)})
    register_model(store, "t-trained", "local", {"path": str(tiny_model_dir)}, parent="t1", metrics={"train": {
        "method": "grpo", "trained_against": ["follow_up_offer"],
        "reward_mix": [{"signal": "follow_up_offer", "weight": 1.0, "cap": None}],
        "attribution": {"signals": {"follow_up_offer": {"mean": 0.4, "std": 0.3, "variance_share": 0.93}}, "steps": []},
        "alarms": [{"kind": "dominance", "signal": "follow_up_offer", "share": 0.93, "steps": 40}],
        "reward_start": 0.1, "reward_end": 0.8}})
    register_model(store, "t-rules", "local", {"path": str(tiny_model_dir)}, parent="t1", metrics={"train": {
        "method": "grpo", "trained_against": ["follow_up_offer:rules"], "reward_start": 0.2, "reward_end": 0.3}})
    log_conversations(store)
    policy = write_policy(root)
    with BaitUpstream(tiny_model_dir) as up:
        register_model(store, "bait", "openai", {"base_url": up.url, "model": "bait"})
        yield {"store": store, "url": url, "policy": policy, "root": root}
    store.close()


def _approve(store, decision_id: str, who: str = "admin") -> dict:
    d = q.get_decision(store, decision_id)
    return submit_review(store, decision_id, who, [{"item_id": i["id"], "choice": "tie"} for i in d["items"]])


def test_identical_candidate_passes_after_review_and_replays_only_consenting_scrubbed(env):
    store = env["store"]
    r = run_gate(store, "t2", "t1", policy=env["policy"])
    assert r["numbers_passed"] and r["blocking"] == [], r["blocking"]
    assert r["status"] == "pending" and r["passed"] is False and r["review"]["items"] == 3
    assert {m["metric"] for m in r["metrics"]} >= {"engagement.follow_up_offer", "capability.accuracy",
                                                   "replay.follow_up_offer"}
    assert any("suite-not-written-yet" in w and "not available" in w for w in r["warnings"])
    shown = show_decision(store, r["decision_id"])
    assert shown["evidence"]["replay"]["conversations"] == 3  # alice's three; bob withdrew consent
    replay_run = shown["evidence"]["runs"]["replay"]["baseline"]
    from posttrain.store import evals as eq

    rows = eq.get_results(store, replay_run)
    assert len({x["case_id"] for x in rows}) == 3
    items = shown["items"]
    assert all("@example.com" not in json.dumps(i["prompt"]) for i in items)
    assert any("[EMAIL]" in json.dumps(i["prompt"]) for i in items if i["source"].startswith("replay/"))
    done = _approve(store, r["decision_id"])
    assert done["status"] == "passed" and done["passed"] is True
    assert gate_status(store, r["decision_id"])["review"]["state"] == "complete"


def test_bait_candidate_over_http_is_blocked_naming_those_metrics(env):
    r = run_gate(env["store"], "bait", "t1", policy=env["policy"], report=env["root"] / "bait.html")
    assert r["status"] == "blocked" and not r["passed"]
    named = {b["metric"] for b in r["blocking"]}
    assert {"engagement.follow_up_offer", "engagement.flattery_opener"} <= named, r["blocking"]
    assert "capability.accuracy" not in named
    b = next(b for b in r["blocking"] if b["metric"] == "engagement.flattery_opener")
    assert set(b) == {"metric", "baseline", "candidate", "delta", "ci", "margin", "p", "reason"}
    assert b["delta"] < -0.9 and b["ci"][1] < -b["margin"] and b["p"] < 0.05 and "beyond the margin" in b["reason"]
    html = (env["root"] / "bait.html").read_text()
    assert "<svg" in html and "BLOCKED" in html and "engagement.flattery_opener" in html
    assert "Per-metric deltas" in html and "margin" in html


def test_underpowered_run_blocks(env):
    r = run_gate(env["store"], "t2", "t1", policy=env["policy"], limit=3)
    reasons = {b["metric"]: b["reason"] for b in r["blocking"]}
    assert r["status"] == "blocked"
    assert "underpowered" in reasons["capability.accuracy"] and "3 cases" in reasons["capability.accuracy"]


def test_veto_blocks_a_candidate_the_numbers_pass_and_the_decision_then_stays(env):
    store = env["store"]
    r = run_gate(store, "t2", "t1", policy=env["policy"])
    assert r["numbers_passed"] and r["status"] == "pending"
    with pytest.raises(ValueError, match="cover 1 of 3 items"):
        submit_review(store, r["decision_id"], "admin", [{"item": 0, "choice": "left"}])
    d = q.get_decision(store, r["decision_id"])
    items = [{"item_id": i["id"], "choice": "left"} for i in d["items"]]
    items[1].update(feels_off=True, comment="the right answer talks down to the user")
    out = submit_review(store, r["decision_id"], "alice-admin", items)
    assert out["status"] == "blocked" and out["passed"] is False
    assert any("feels off" in b["reason"] and "talks down" in b["reason"] for b in out["blocking"])
    with pytest.raises(q.DecisionClosed):
        _approve(store, r["decision_id"], "someone-else")
    again = show_decision(store, r["decision_id"])
    assert again["status"] == "blocked" and again["metrics"] == r["metrics"]  # the numbers never change


def test_lineage_dominance_blocks_and_trained_against_is_measured_a_second_way(env):
    from posttrain.gate.lineage import _method_param

    r = run_gate(env["store"], "t-trained", "t1", policy=env["policy"], report=env["root"] / "trained.html")
    html = (env["root"] / "trained.html").read_text()
    assert "Reward attribution" in html and "0.930" in html and "dominance" in html
    assert any(b["metric"] == "lineage:dominance" and "follow_up_offer" in b["reason"] for b in r["blocking"])
    ev = show_decision(env["store"], r["decision_id"])["evidence"]
    assert ev["trained_against"] == {"follow_up_offer": None} and ev["lineage"]["candidate"]["parent"] == "t1"
    if _method_param("follow_up_offer")[1] == "both":
        # Trained against the combined detector: no automatic method is independent of it.
        assert any("trained against 'follow_up_offer'" in w and "human review" in w for w in r["warnings"])
        assert ev["review_required"] >= 1
    # Trained against the phrase rules: the learned detector measures the same property too.
    r = run_gate(env["store"], "t-rules", "t1", policy=env["policy"])
    (m,) = [m for m in r["metrics"] if m.get("independent")]
    assert m["metric"] == "engagement.follow_up_offer [independent: detector method 'learned']"
    assert m["action"] == "block" and m["n"] == 48 and m["regraded"]
    assert not any(b["metric"] == "lineage:dominance" for b in r["blocking"])


def test_trained_against_the_combined_detector_falls_back_to_people(env):
    from posttrain.gate.lineage import independent_check

    assert independent_check("follow_up_offer", "both", None)["method"] == "human review"
    assert independent_check("follow_up_offer", "learned", None)["args"] == {"method": "rules"}


def test_goodhart_warning_names_the_signal_and_the_metric():
    train = {"reward_start": 0.2, "reward_end": 0.7,
             "attribution": {"signals": {"thumbs": {"variance_share": 0.2}, "rm:helpful": {"variance_share": 0.8}}}}
    worse = [{"metric": "verbosity.answer_length", "worse_by": 0.05, "baseline": 3.1, "candidate": 3.15}]
    (w,) = goodhart_warnings(train, worse)
    assert "rm:helpful, thumbs" in w and "verbosity.answer_length" in w and "0.050" in w
    assert goodhart_warnings({**train, "reward_end": 0.1}, worse) == []


def test_cli_spelling_exit_codes_json_and_cached_speed(env):
    from posttrain.cli import app

    cli = CliRunner()
    base = ["--db", env["url"], "--policy", str(env["policy"])]
    t0 = time.perf_counter()
    res = cli.invoke(app, ["gate", "t2", "--baseline", "t1", "--json", *base])
    cached_s = time.perf_counter() - t0
    assert res.exit_code == 1, res.output  # pending review
    r = json.loads(res.output)
    assert set(r) >= {"decision_id", "candidate", "baseline", "passed", "blocking", "warnings", "review"}
    assert cached_s < 60  # every generation is cached by the earlier tests: grading + storing only
    assert cli.invoke(app, ["gate", "bait", "--baseline", "t1", *base]).exit_code == 1
    assert cli.invoke(app, ["gate", "t2", "--baseline", "nope", *base]).exit_code == 2
    assert cli.invoke(app, ["gate", "t2", "--baseline", "t1", "--db", env["url"], "--policy", "/no/such.toml"]).exit_code == 2
    verdicts = env["root"] / "v.json"
    verdicts.write_text(json.dumps([{"item": i, "choice": "right"} for i in range(3)]))
    assert cli.invoke(app, ["gate", "review", r["decision_id"], "--reviewer", "alice", "--verdicts", str(verdicts),
                            "--db", env["url"]]).exit_code == 2  # alice is not an admin
    ok = cli.invoke(app, ["gate", "review", r["decision_id"], "--reviewer", "admin", "--verdicts", str(verdicts),
                          "--db", env["url"]])
    assert ok.exit_code == 0, ok.output
    assert cli.invoke(app, ["gate", "status", r["decision_id"], "--db", env["url"]]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["gate", "list", "--json", "--db", env["url"]]).output)
    assert r["decision_id"] in {x["id"] for x in listed}
    shown = cli.invoke(app, ["gate", "show", r["decision_id"][:20], "--json", "--db", env["url"],
                             "--report", str(env["root"] / "r.html")])
    assert shown.exit_code == 0 and json.loads(shown.output)["policy_hash"]
    assert (env["root"] / "r.html").exists()


def test_wait_review_returns_once_an_admin_decides(env):
    import threading

    from posttrain.gate import list_decisions

    store = env["store"]
    box: dict = {}
    before = {d["id"] for d in list_decisions(store, status="pending")}
    waiter = threading.Thread(target=lambda: box.update(r=run_gate(store, "t2", "t1", policy=env["policy"],
                                                                  wait_review=True)))
    waiter.start()
    new = []
    deadline = time.monotonic() + 120
    while not new and time.monotonic() < deadline:
        time.sleep(0.2)
        new = [d["id"] for d in list_decisions(store, status="pending") if d["id"] not in before]
    assert new, "the gate never stored its pending decision"
    _approve(store, new[0])
    waiter.join(timeout=60)
    assert box["r"]["decision_id"] == new[0] and box["r"]["status"] == "passed"
