"""`posttrain export` as a user runs it: the --json report shape, one-line errors, list/show."""

from __future__ import annotations

import json

from test_users_control import _run, seeded_db


def test_export_cli_report_errors_list_and_show(tmp_path):
    db = seeded_db(tmp_path, 12, 2)
    out = tmp_path / "prefs.jsonl"
    r = _run("export", "preferences", "--out", str(out), "--format", "openai", "--no-near-dup", "--db", db, "--json",
             "--test-fraction", "0.2")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert {"snapshot", "rows", "excluded", "users", "splits", "path"} <= set(report)
    assert set(report["excluded"]) >= {"no_consent", "duplicates", "capped", "contaminated", "rules"}
    assert report["users"] == 12 and report["ratings"]["users_rated"] == 12
    assert json.loads(out.read_text().splitlines()[0])["preferred_output"][0]["role"] == "assistant"
    human = _run("export", "kto", "--no-near-dup", "--db", db)
    assert human.exit_code == 0 and human.stdout.startswith("snapshot ") and "excluded: no consent 0" in human.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\naction = "drop"\n')
    err = _run("export", "sft", "--rules", str(bad), "--db", db)
    assert err.exit_code == 2 and err.stderr.strip() == f"error: {bad}: rule 'x': pattern: required (a non-empty string)"
    err = _run("export", "kto", "--format", "openai", "--db", db)
    assert err.exit_code == 2 and "no unpaired (KTO) layout" in err.stderr
    err = _run("export", "sft", "--since", "last week", "--db", db)
    assert err.exit_code == 2 and err.stderr.strip() == "error: since: not a date (use YYYY-MM-DD or an ISO 8601 time)"

    listed = json.loads(_run("export", "list", "--db", db, "--json").stdout)
    assert [s["kind"] for s in listed] == ["kto", "preferences"]
    shown = json.loads(_run("export", "show", report["snapshot"][:8], "--db", db, "--json").stdout)
    assert shown["snapshot"] == report["snapshot"] and shown["excluded"] == report["excluded"]
    missing = _run("export", "show", "abcdef12", "--db", db)
    assert missing.exit_code == 2 and "no dataset snapshot 'abcdef12'" in missing.stderr
