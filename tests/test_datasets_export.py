"""posttrain.datasets.export: what each kind reads, consent, personalization, duplicates, caps,
decontamination, splits, rules and snapshots, on SQLite and PostgreSQL.

Data is written through the store's own API (record_exchange, FeedbackService), as the server
writes it. `seed_world` is shared with the other test_datasets*/test_export* modules.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from posttrain.datasets import export, get_snapshot, parse_rules
from posttrain.datasets.caps import user_cap
from posttrain.datasets.rules import RuleError
from posttrain.datasets.splits import SplitCheck, SplitOverlap
from posttrain.feedback import personalization
from posttrain.feedback.service import FeedbackService
from posttrain.ids import new_id
from posttrain.store import chat as chat_queries
from posttrain.store.users import add_user, set_consent_by_name

NO_EMBED = {"near_duplicates": False, "max_user_share": 1.0}


def exchange(store, user, question, answers, *, instructions=None, memory=(), history=(), conv=None, system=None):
    """One chat request with len(answers) choices, stored as the server stores it; returns
    (completion ids, conversation id)."""
    conv = conv or new_id()
    now = datetime.now(timezone.utc)
    msgs = ([{"role": "system", "content": system}] if system else []) + [*history, {"role": "user", "content": question}]
    prompt = personalization.apply(msgs, instructions, list(memory))
    rid = new_id()
    comps = [{"id": new_id(), "request_id": rid, "choice_index": i, "conversation_id": conv, "user_id": user.id,
              "model": "m", "params": {}, "prompt": prompt, "text": a, "custom_instructions": instructions,
              "memory": list(memory), "created_at": now} for i, a in enumerate(answers)]
    transcript = [{"id": new_id(), **m} for m in msgs] + [
        {"id": new_id(), "role": "assistant", "content": answers[0], "completion_id": comps[0]["id"]}]
    ex = chat_queries.Exchange(user_id=user.id, conversation_id=conv, is_new=not history, title=question[:20],
                               now=now, transcript=transcript, completions=comps)
    store.write(lambda s: chat_queries.record_exchange(s, ex))
    return [c["id"] for c in comps], conv


def seed_world(store, n_users: int = 12, per_user: int = 3):
    """n_users users, each asking per_user distinct questions with two answers and rating them
    every way: thumbs up on A, down on B, a pairwise pick of A, an edit of B."""
    fb = FeedbackService(store)
    users = []
    for i in range(n_users):
        u, key = add_user(store, f"user{i:02d}")
        users.append((u, key))
        for j in range(per_user):
            (a, b), _ = exchange(store, u, f"User {i} asks question {j}: describe a river number {i * 31 + j}.",
                                 [f"River {i}-{j} is long and wide.", f"River {i}-{j}? No idea, sorry."])
            fb.record(u.id, {"completion_id": a, "kind": "thumbs", "value": 1})
            fb.record(u.id, {"completion_id": b, "kind": "thumbs", "value": -1, "reasons": ["unhelpful"]})
            fb.record(u.id, {"completion_id": a, "kind": "pairwise", "value": "a", "other_completion_id": b})
            fb.record(u.id, {"completion_id": b, "kind": "edit", "edited_text": f"River {i}-{j} flows to the sea."})
    return users, fb


def thumbs_up(store, name, pairs):
    """A user who asked each (question, answer) pair once and liked the answer."""
    u, _ = add_user(store, name)
    fb = FeedbackService(store)
    for q, a in pairs:
        (c,), _ = exchange(store, u, q, [a])
        fb.record(u.id, {"completion_id": c, "kind": "thumbs", "value": 1})
    return u


def lines(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_each_kind_reads_the_feedback_it_documents(store, tmp_path):
    users, fb = seed_world(store, n_users=2, per_user=1)
    u, _ = users[0]
    (c1, c2, c3), _ = exchange(store, u, "Pick one of three?", ["one", "two", "three"])
    fb.record(u.id, {"completion_id": c1, "kind": "pairwise", "value": "tie", "other_completion_id": c2})
    fb.record(u.id, {"completion_id": c3, "kind": "thumbs", "value": 1})
    fb.record(u.id, {"completion_id": c3, "kind": "thumbs", "value": -1})  # changed vote: down wins
    fb.record(u.id, {"completion_id": c1, "kind": "implicit", "signal": "copy"})
    opts = {**NO_EMBED, "test_fraction": 0}

    sft = lines(export(store, "sft", tmp_path / "sft.jsonl", **opts)["path"])
    answers = sorted(r["messages"][-1]["content"] for r in sft)
    assert answers == sorted(["River 0-0 is long and wide.", "River 0-0 flows to the sea.",
                              "River 1-0 is long and wide.", "River 1-0 flows to the sea."])
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-2]["role"] == "user" for r in sft)

    prefs = lines(export(store, "preferences", tmp_path / "p.jsonl", **opts)["path"])
    by_source = {}
    for r in prefs:
        by_source.setdefault(r["source"], []).append((r["chosen"][0]["content"], r["rejected"][0]["content"]))
    assert sorted(by_source["pairwise"]) == [("River 0-0 is long and wide.", "River 0-0? No idea, sorry."),
                                             ("River 1-0 is long and wide.", "River 1-0? No idea, sorry.")]
    assert ("River 0-0 flows to the sea.", "River 0-0? No idea, sorry.") in by_source["edit"]
    # thumbs pairs equal to the pairwise rows are exact duplicates: removed, counted
    assert "thumbs" not in by_source
    assert not any("one" == c or "two" == c for c, _ in sum(by_source.values(), []))  # the tie is left out

    kto = lines(export(store, "kto", tmp_path / "k.jsonl", **opts)["path"])
    labels = {r["completion"][0]["content"]: r["label"] for r in kto}
    assert labels["three"] is False  # the newest vote on a completion is its vote
    assert labels["River 1-0 is long and wide."] is True and labels["River 1-0? No idea, sorry."] is False
    assert len(kto) == 5

    prompts = lines(export(store, "prompts", tmp_path / "q.jsonl", **opts)["path"])
    ref = {r["prompt"][-1]["content"]: (r["reference"], r["reference_source"], r["reasons"]) for r in prompts}
    assert ref["User 0 asks question 0: describe a river number 0."] == ("River 0-0 flows to the sea.", "edit", ["unhelpful"])
    assert ref["Pick one of three?"] == (None, None, [])  # the changed vote is a down without reasons

    raw = export(store, "feedback", tmp_path / "f.jsonl")
    events = lines(raw["path"])
    assert raw["rows"] == len(events) == 12
    assert set(events[0]) >= {"id", "kind", "value", "reasons", "idempotency_key", "user", "completion", "time"}
    assert {e["kind"] for e in events} == {"thumbs", "pairwise", "edit", "implicit"}


def test_consent_is_honoured_and_withdrawal_applies_to_every_later_export(store, tmp_path):
    users, _ = seed_world(store, n_users=3, per_user=2)
    set_consent_by_name(store, "user01", False)
    first = export(store, "kto", tmp_path / "a.jsonl", **NO_EMBED)
    assert first["excluded"]["no_consent"] == 4 and first["users"] == 2
    assert all(r["completion"][0]["content"].split()[1][0] != "1" for r in lines(first["path"]))
    set_consent_by_name(store, "user02", False)  # withdraws after the first export
    later = export(store, "kto", tmp_path / "b.jsonl", **NO_EMBED)
    assert later["users"] == 1 and later["excluded"]["no_consent"] == 8
    raw = export(store, "feedback", None)
    assert {e["user"] for e in lines(raw["path"])} == {users[0][0].id}
    from posttrain.store import datasets as q

    with store.session() as s:
        assert q.snapshot_users(s, first["snapshot"]) == {users[0][0].id: 4, users[2][0].id: 4}
        assert q.snapshots_with_user(s, users[2][0].id) == [first["snapshot"]]


def test_personalization_goes_in_the_system_message_or_is_left_out(store, tmp_path):
    u, _ = add_user(store, "p")
    fb = FeedbackService(store)
    (c,), _ = exchange(store, u, "Plan my week?", ["Monday: rest."], instructions="Call me Sam.",
                       memory=["I live in Oslo"], system="Answer in English.")
    fb.record(u.id, {"completion_id": c, "kind": "thumbs", "value": 1})
    with_p = lines(export(store, "sft", None, **NO_EMBED, test_fraction=0)["path"])[0]["messages"]
    assert with_p[0]["role"] == "system" and "Call me Sam." in with_p[0]["content"] and "Oslo" in with_p[0]["content"]
    assert with_p[0]["content"].endswith("Answer in English.")
    without = lines(export(store, "sft", None, personalization=False, **NO_EMBED, test_fraction=0)["path"])[0]["messages"]
    assert without[0] == {"role": "system", "content": "Answer in English."}
    assert "Sam" not in json.dumps(without) and "Oslo" not in json.dumps(without)


def test_exact_duplicates_are_removed_after_normalisation(sqlite_store, tmp_path):
    store = sqlite_store  # no store query of its own: SQLite is enough
    thumbs_up(store, "d", [("What is a river?", "A river is water."), ("what is a river", "a river is water"),
                           ("What is a lake?", "A lake is water.")])
    r = export(store, "sft", None, **NO_EMBED, test_fraction=0)
    assert r["rows"] == 2 and r["excluded"]["duplicates"] == 1 and r["duplicates"]["exact"] == 1


def test_user_cap_bounds_every_users_share():
    rng = random.Random(0)
    for _ in range(300):
        counts = {f"u{i}": rng.choice([1, 2, 5, 50, 400]) for i in range(rng.randint(1, 40))}
        share = rng.choice([0.05, 0.1, 0.25, 0.5])
        k = user_cap(counts, share)
        total = sum(min(c, k) for c in counts.values())
        assert k == 0 or k <= share * total + 1e-9
        # k is the largest such cap (brute force)
        best = max(j for j in range(max(counts.values()) + 1) if j <= share * sum(min(c, j) for c in counts.values()) + 1e-9)
        assert k == best
    assert user_cap({"a": 3}, 1.0) is None


def test_export_caps_a_heavy_user_at_the_share(sqlite_store, tmp_path):
    store = sqlite_store
    fb = FeedbackService(store)
    users = [add_user(store, f"c{i}")[0] for i in range(12)]
    for i, u in enumerate(users):
        for j in range(40 if i == 0 else 2):
            (c,), _ = exchange(store, u, f"Cap question {i}.{j}?", [f"answer {i}.{j}"])
            fb.record(u.id, {"completion_id": c, "kind": "thumbs", "value": 1})
    r = export(store, "kto", None, near_duplicates=False)  # default max_user_share 0.1
    rows = lines(r["path"]) + (lines(r["test_path"]) if r["test_path"] else [])
    assert r["cap"]["per_user"] == 2 and r["excluded"]["capped"] == 38 and len(rows) == r["rows"] == 24
    assert max(r2 for r2 in [sum(1 for x in rows if x["completion"][0]["content"].startswith(f"answer {i}.")) for i in range(12)]) <= 0.1 * len(rows)


def test_rows_matching_an_eval_case_are_dropped(store, tmp_path):
    from posttrain.evals.suite import get_suite
    from posttrain.store import evals as eval_queries

    case_prompt = get_suite("capability").load(None, 0)[0].messages[0]["content"]  # e.g. "What is 494 + 64?"
    seven = [c.messages[0]["content"] for c in get_suite("capability").load(None, 7)]
    seven_only = next(p for p in seven if p not in {c.messages[0]["content"] for c in get_suite("capability").load(None, 0)})
    run_id = eval_queries.create_run(store, suite="capability", suite_version="x", model="m", params={}, seed=7)
    assert run_id
    eval_queries.save_mined_suite(store, name="ns-test", version="1", cases=[
        {"id": "c1", "messages": [{"role": "user", "content": "My mined question about rivers?"}], "data": {}}],
        created_at=datetime.now(timezone.utc), expires_at=datetime.now(timezone.utc) + timedelta(days=9),
        saturation_threshold=0.95)
    u, _ = add_user(store, "e")
    fb = FeedbackService(store)
    prompts = [case_prompt.upper().replace("?", " ?!"), seven_only, "MY MINED question about rivers",
               "Unrelated question?", case_prompt + " Please show your working step by step."]
    for p in prompts:
        (c,), _ = exchange(store, u, p, ["x " + p])
        fb.record(u.id, {"completion_id": c, "kind": "thumbs", "value": 1})
    r = export(store, "sft", None, **NO_EMBED, test_fraction=0)
    kept = [m["messages"][0]["content"] for m in lines(r["path"])]
    assert r["excluded"]["contaminated"] == 3
    assert sorted(kept) == sorted(prompts[3:])  # a longer prompt containing a case is not a match
    d = r["decontamination"]
    assert d["suites"]["ns-test"] == 1 and d["suites"]["capability"] >= 200
    assert "ifeval" in d["unchecked"] and any("ifeval" in w for w in r["warnings"])
    off = export(store, "sft", None, decontaminate=False, **NO_EMBED, test_fraction=0)
    assert off["rows"] == 5


def test_decontamination_reads_suites_that_need_public_data(sqlite_store, shared_data):
    from posttrain.datasets.decontam import build_index

    index = build_index(sqlite_store, [shared_data])
    assert index.suites.get("ifeval", 0) >= 500 and "ifeval" not in index.unchecked
    assert index.suites.get("sycophancy-opinion", 0) > 0


def test_split_is_by_user_and_checked(sqlite_store, tmp_path):
    store = sqlite_store  # no store query of its own: SQLite is enough
    seed_world(store, n_users=30, per_user=2)
    r = export(store, "sft", tmp_path / "s.jsonl", **NO_EMBED, test_fraction=0.3)
    train, test = lines(r["path"]), lines(r["test_path"])
    assert r["splits"]["train"]["rows"] == len(train) and r["splits"]["test"]["rows"] == len(test) > 0
    who = lambda rows: {m["messages"][0]["content"].split()[1] for m in rows}  # noqa: E731
    assert not who(train) & who(test)
    assert Path(r["test_out"]).read_text() == Path(r["test_path"]).read_text()
    check = SplitCheck()
    check.add("train", "u1", ["c1"])
    check.add("test", "u2", ["c1"])
    with pytest.raises(SplitOverlap, match="1 conversation"):
        check.verify()


def test_rules_drop_and_rewrite_with_counts(sqlite_store, tmp_path):
    store = sqlite_store  # no store query of its own: SQLite is enough
    thumbs_up(store, "r", [("Q1?", "As an AI language model, I think rivers are wet."),
                           ("Q2?", "Rivers flow. Let me know if you want more!"), ("Q3?", "Lakes are still.")])
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('''
[[rule]]
name = "as-an-ai"
action = "rewrite"
pattern = "as an ai language model, "
ignore_case = true

[[rule]]
name = "offer"
action = "drop"
pattern = '(let me know if|would you like)[^.?!]*[.?!]?\\s*$'
regex = true
ignore_case = true
''')
    r = export(store, "sft", None, rules=rules_file, **NO_EMBED, test_fraction=0)
    answers = sorted(m["messages"][-1]["content"] for m in lines(r["path"]))
    assert answers == ["I think rivers are wet.", "Lakes are still."]
    assert r["excluded"]["rules"] == {"offer": 1}
    assert {x["name"]: x["touched"] for x in r["rules"]} == {"as-an-ai": 1, "offer": 1}
    assert r["filters"]["rules_file"] == str(rules_file)
    with pytest.raises(RuleError, match=r"rule 'x': action: must be one of drop, rewrite"):
        parse_rules({"rule": [{"name": "x", "action": "delete", "pattern": "a"}]})
    with pytest.raises(RuleError, match=r"rule 'y': pattern: not a valid regular expression"):
        parse_rules({"rule": [{"name": "y", "action": "drop", "pattern": "(", "regex": True}]})


def test_snapshot_is_stored_and_found_by_hash_prefix(store, tmp_path, posttrain_home):
    seed_world(store, n_users=2, per_user=1)
    r = export(store, "preferences", tmp_path / "p.jsonl", **NO_EMBED, test_fraction=0)
    snap = get_snapshot(store, r["snapshot"][:10])
    assert snap.hash == r["snapshot"] and snap.kind == "preferences" and snap.format == "trl"
    assert snap.path == posttrain_home / "snapshots" / snap.hash / "train.jsonl" and snap.path.exists()
    assert snap.path.read_bytes() == (tmp_path / "p.jsonl").read_bytes()
    assert snap.rows == r["rows"] and snap.counts["excluded"] == r["excluded"] and snap.filters["max_user_share"] == 1.0
    again = export(store, "preferences", None, **NO_EMBED, test_fraction=0)
    assert again["snapshot"] == r["snapshot"] and again["existing"] is True
    with pytest.raises(KeyError, match="no dataset snapshot 'ffff'"):
        get_snapshot(store, "ffff")
    with pytest.raises(ValueError, match="since: not a date"):
        export(store, "sft", None, since="yesterday")
    with pytest.raises(ValueError, match="bogus: unknown curation option"):
        export(store, "sft", None, bogus=1)
    with pytest.raises(ValueError, match="no unpaired"):
        export(store, "kto", None, fmt="openai")


def test_since_and_until_select_feedback_by_time(store):
    seed_world(store, n_users=1, per_user=1)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert export(store, "feedback", None, since=future)["rows"] == 0
    assert export(store, "feedback", None, until=future.date().isoformat())["rows"] == 4


def test_near_duplicates_are_removed_by_minilm_cosine(sqlite_store):
    store = sqlite_store
    thumbs_up(store, "n", [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("What is the capital of France ?", "The capital of France is Pariss."),  # a typo: near-duplicate
        ("What is the capital of Spain?", "The capital of Spain is Madrid."),
        ("I think 2+2 is 5, right?", "No: 2+2 is 4."),
        ("I think 2+2 is 4, right?", "Yes: 2+2 is 4.")])  # one digit, different meaning: kept
    r = export(store, "sft", None, max_user_share=1, test_fraction=0)
    kept = [m["messages"][-1]["content"] for m in lines(r["path"])]
    assert r["duplicates"] == {"exact": 0, "near": 1, "near_threshold": 0.95}
    assert "The capital of France is Pariss." not in kept and len(kept) == 4
    loose = export(store, "sft", None, max_user_share=1, test_fraction=0, near_dup_threshold=0.5)
    assert loose["duplicates"]["near"] >= 2
