"""`posttrain export`: feedback in the store -> a curated dataset snapshot (datasets.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from posttrain.cli._common import db_option, emit
from posttrain.cli.users import with_store

export_app = typer.Typer(
    help="Export feedback as training data (TRL or OpenAI layouts); every export is a stored snapshot.",
    no_args_is_help=True,
)


def _human(r: dict) -> str:
    ex = r["excluded"]
    lines = [
        f"snapshot {r['snapshot']}{' (same content as an earlier export)' if r.get('existing') else ''}",
        f"  {r['kind']} ({r['format']}): {r['rows']} rows from {r['users']} users "
        f"(train {r['splits']['train']['rows']}, test {r['splits']['test']['rows']}) of {r['candidates']} candidates",
        f"  excluded: no consent {ex['no_consent']}, duplicates {ex['duplicates']}, capped {ex['capped']}, "
        f"contaminated {ex['contaminated']}" + "".join(f", rule {k} {v}" for k, v in ex["rules"].items()),
    ]
    for rule in r["rules"]:
        lines.append(f"  rule {rule['name']} ({rule['action']}): {rule['touched']} rows")
    if r.get("ratings"):
        rt = r["ratings"]
        lines.append(f"  ratings: {rt['ratings']} thumbs from {rt['users_rated']} of {rt['users_total']} users, "
                     f"share up {rt['share_up']}, top 10 % of raters gave {rt['top_10pct_raters_share']}")
    lines.append(f"  file {r.get('out') or r['path']}" + (f" (test: {r.get('test_out') or r['test_path']})" if r["test_path"] else ""))
    lines += [f"  warning: {w}" for w in r["warnings"]]
    return "\n".join(lines)


def _run(kind: str, out: Optional[Path], fmt: str, since: Optional[str], until: Optional[str], rules: Optional[Path],
         no_personalization: bool, max_user_share: float, test_fraction: float, no_near_dup: bool,
         near_dup_threshold: float, no_decontaminate: bool, eval_data_dir: list[Path], db: Optional[str],
         as_json: bool) -> None:
    from posttrain.datasets import RuleError, export

    def run(store):  # noqa: ANN001, ANN202
        return export(
            store, kind, out, fmt=fmt, since=since, until=until, rules=rules,
            personalization=not no_personalization, max_user_share=max_user_share,
            test_fraction=test_fraction, near_duplicates=not no_near_dup,
            near_dup_threshold=near_dup_threshold, decontaminate=not no_decontaminate,
            eval_data_dirs=tuple(str(d) for d in eval_data_dir),
        )

    report = with_store(db, run, (RuleError, ValueError))
    emit(report, as_json, _human(report))


def _command(kind: str, summary: str) -> None:
    @export_app.command(kind, help=summary)
    def cmd(
        out: Optional[Path] = typer.Option(None, "--out", help="Write the train JSONL here (the test split beside it, as <stem>.test.jsonl)."),
        fmt: str = typer.Option("trl", "--format", help="trl or openai."),
        since: Optional[str] = typer.Option(None, "--since", help="Only feedback at or after this date/time (ISO 8601, UTC)."),
        until: Optional[str] = typer.Option(None, "--until", help="Only feedback before this date/time."),
        rules: Optional[Path] = typer.Option(None, "--rules", help="TOML file of drop/rewrite rules."),
        no_personalization: bool = typer.Option(False, "--no-personalization", help="Leave custom instructions and memory out of the system message."),
        max_user_share: float = typer.Option(0.1, "--max-user-share", help="No user supplies more than this share of the rows."),
        test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of users whose rows form the test split."),
        no_near_dup: bool = typer.Option(False, "--no-near-dup", help="Skip the MiniLM near-duplicate pass (exact duplicates are still removed)."),
        near_dup_threshold: float = typer.Option(0.95, "--near-dup-threshold", help="Cosine at or above which rows are near-duplicates."),
        no_decontaminate: bool = typer.Option(False, "--no-decontaminate", help="Keep rows whose prompt matches an eval case."),
        eval_data_dir: list[Path] = typer.Option([], "--eval-data-dir", help="Public data folder for suites that need one (repeatable)."),
        db: Optional[str] = db_option(),
        as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
    ) -> None:
        _run(kind, out, fmt, since, until, rules, no_personalization, max_user_share, test_fraction, no_near_dup,
             near_dup_threshold, no_decontaminate, eval_data_dir, db, as_json)


_command("sft", "Thumbs-up and edited answers as multi-turn `messages`.")
_command("preferences", "Pairwise picks, thumbs-up/down pairs and edits as prompt/chosen/rejected.")
_command("kto", "Unpaired thumbs as prompt/completion/label.")
_command("prompts", "Prompts for reinforcement fine-tuning, with reference columns.")
_command("feedback", "Every raw feedback event as stored (consent and dates honoured).")


@export_app.command("list")
def list_cmd(
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List stored snapshots, newest first."""
    from posttrain.datasets import list_snapshots

    snaps = with_store(db, list_snapshots)
    lines = [f"{'SNAPSHOT':<14} {'KIND':<12} {'FORMAT':<7} {'ROWS':>7} {'TEST':>6} CREATED"]
    lines += [f"{s.hash[:12]:<14} {s.kind:<12} {s.format:<7} {s.rows:>7} {s.test_rows:>6} {s.to_dict()['created_at']}" for s in snaps]
    emit([s.to_dict() for s in snaps], as_json, "\n".join(lines))


@export_app.command("show")
def show_cmd(
    snapshot: str = typer.Argument(..., help="A snapshot hash or a unique prefix of one."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the stored export report as JSON."),
) -> None:
    """Show a stored snapshot's export report."""
    from posttrain.datasets import get_snapshot

    snap = with_store(db, lambda store: get_snapshot(store, snapshot), (KeyError,))
    emit(snap.counts, as_json, _human(snap.counts))


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
