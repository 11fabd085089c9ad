"""`posttrain gate`: the release gate. `posttrain gate CANDIDATE --baseline MODEL` runs it (the same
as `posttrain gate run ...`); `gate status|list|show|review` read decisions and record a scripted
review. Exit codes: 0 pass, 1 blocked or pending review, 2 bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from posttrain.cli._common import db_option, emit, fail

JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


class _RunByDefault(TyperGroup):
    """`gate CANDIDATE ...` means `gate run CANDIDATE ...` (the issue's spelling)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


gate_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                       help="Release gate: block a candidate that regresses on any policy metric, pending human review.")


@contextmanager
def _store(db: str | None) -> Iterator[Any]:
    from posttrain.store import Store

    try:
        store = Store.open(db)
    except Exception as exc:
        fail(f"cannot open the store at {db or 'the default location'}: {' '.join(str(exc).split())[:200]}")
    try:
        yield store
    finally:
        store.close()


def _msg(exc: Exception) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split())


def _human(r: dict[str, Any]) -> str:
    head = {"passed": "PASSED", "blocked": "BLOCKED", "pending": "PENDING REVIEW"}.get(r["status"], r["status"])
    lines = [f"{head}: {r['candidate']} vs {r['baseline']} (decision {r['decision_id']})"]
    for m in r.get("metrics", []):
        state = "UNDERPOWERED" if m.get("underpowered") else ("REGRESSED" if m.get("regressed") else "ok")
        mdr = "inf" if m.get("mdr") is None else f"{m['mdr']:.3f}"
        lines.append(f"  {m['metric']:<44} {m['action']:<5} n={m['n']:<4} {m['baseline']:.3f} -> {m['candidate']:.3f}"
                     f"  delta {m['delta']:+.3f} [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]  margin {m['margin']:g}"
                     f"  detectable {mdr}  p={m.get('p', 1):.3g}  {state}")
    for b in r["blocking"]:
        lines.append(f"  BLOCK {b['metric']}: {b['reason']}")
    for w in r["warnings"]:
        lines.append(f"  warn  {w}")
    rv = r.get("review") or {}
    if rv.get("required"):
        lines.append(f"  review: {rv['state']} ({len(rv['reviewers'])}/{rv['required']} reviewers, {rv['items']} pairs)"
                     + (f" — review at {rv['page']} on the server" if r["status"] == "pending" else ""))
    return "\n".join(lines)


def _exit(r: dict[str, Any]) -> None:
    raise typer.Exit(0 if r["passed"] else 1)


@gate_app.command("run")
def run_cmd(
    candidate: str = typer.Argument(..., help="Registered model to gate."),
    baseline: str = typer.Option(..., "--baseline", "-b", help="Registered model it must not be worse than."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy TOML (default: the shipped policy)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N cases per suite (for a quick look; power drops)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with IFEval / Anthropic evals data."),
    wait_review: bool = typer.Option(False, "--wait-review", help="Wait until the review decides (policy review.wait_seconds)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the HTML report here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Gate CANDIDATE against --baseline: exit 0 pass, 1 blocked or pending review, 2 bad input."""
    from posttrain.gate import run_gate

    with _store(db) as store:
        try:
            r = run_gate(store, candidate, baseline, policy=policy, limit=limit, wait_review=wait_review,
                         report=report, data_dir=data_dir, progress=not quiet and not as_json)
        except (KeyError, ValueError) as exc:
            fail(_msg(exc))
    emit(r, as_json, _human(r))
    _exit(r)


@gate_app.command("status")
def status_cmd(decision: str = typer.Argument(..., help="Decision id (or a unique prefix)."),
               db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """A decision as it stands now (exit 0 passed, 1 blocked or pending)."""
    from posttrain.gate import gate_status

    with _store(db) as store:
        try:
            r = gate_status(store, decision)
        except KeyError as exc:
            fail(_msg(exc))
    emit(r, as_json, _human(r))
    _exit(r)


@gate_app.command("list")
def list_cmd(candidate: Optional[str] = typer.Option(None, "--candidate", help="Only this candidate's decisions."),
             status: Optional[str] = typer.Option(None, "--status", help="passed, blocked or pending."),
             limit: int = typer.Option(50, "--limit", help="Newest N."),
             db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Stored decisions, newest first."""
    from posttrain.gate import list_decisions

    with _store(db) as store:
        rows = list_decisions(store, candidate=candidate, status=status, limit=limit)
    lines = [f"{'DECISION':<32} {'STATUS':<8} {'CANDIDATE':<24} {'BASELINE':<24} CREATED"]
    lines += [f"{r['id']:<32} {r['status']:<8} {r['candidate']:<24} {r['baseline']:<24} {r['created_at'][:19]}" for r in rows]
    emit(rows, as_json, "\n".join(lines))


@gate_app.command("show")
def show_cmd(decision: str = typer.Argument(..., help="Decision id (or a unique prefix)."),
             report: Optional[Path] = typer.Option(None, "--report", help="Write the HTML report here."),
             db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Everything stored for a decision: result, evidence (runs, lineage, versions), policy, review."""
    from posttrain.gate import show_decision, write_report

    with _store(db) as store:
        try:
            d = show_decision(store, decision)
            if report:
                write_report(store, d["decision_id"], report)
        except KeyError as exc:
            fail(_msg(exc))
    emit(d, as_json, _human(d) + f"\n  policy {d['policy_hash'][:12]} ({d['policy']['source']}); runs: "
         + ", ".join(f"{n}={r['baseline']}/{r['candidate']}" for n, r in d["evidence"]["runs"].items()))


@gate_app.command("review")
def review_cmd(decision: str = typer.Argument(..., help="Decision id (or a unique prefix)."),
               reviewer: str = typer.Option(..., "--reviewer", help="Who reviews (an admin's user name)."),
               verdicts: Path = typer.Option(..., "--verdicts", help='JSON list: [{"item": 0, "choice": "left|right|tie", "feels_off": false, "comment": ""}, ...] or [{"veto": true, "comment": "..."}].'),
               db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Record a scripted review of a pending decision (the web page's Review view does the same)."""
    from posttrain.gate import submit_review
    from posttrain.store import users as uq

    try:
        data = json.loads(verdicts.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"--verdicts: cannot read {verdicts}: {exc}")
    with _store(db) as store:
        with store.session() as s:
            admins = {u.name for u in uq.list_users(s) if u.is_admin}
        if reviewer not in admins:
            fail(f"--reviewer {reviewer!r} is not an admin user (posttrain users add NAME --admin)")
        try:
            r = submit_review(store, decision, reviewer, data)
        except (KeyError, ValueError) as exc:
            fail(_msg(exc))
    emit(r, as_json, _human(r))
    _exit(r)


def register(app: typer.Typer) -> None:
    """Add the `gate` group to the posttrain CLI."""
    app.add_typer(gate_app, name="gate")
