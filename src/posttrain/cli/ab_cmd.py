"""`posttrain ab start|status|promote|rollback|stop`: online A/B experiments on the live server."""

from __future__ import annotations

from typing import Any, Optional

import typer

from posttrain.cli._common import db_option, emit, fail

ab_app = typer.Typer(help="Online A/B experiments: sticky routing, confidence sequences, guardrails.",
                     no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


def _run(db: str | None, fn: Any) -> Any:
    from posttrain.cli.evals_cmd import _store, _user_error

    with _store(db) as store:
        try:
            return fn(store)
        except (ValueError, KeyError) as exc:
            _user_error(exc)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _status_text(st: dict) -> str:
    e = st["experiment"]
    lines = [f"{e['name']}: {e['status']} — {e['candidate']} vs {e['baseline']} on {e['fraction']:.0%} of users"]
    lines.append(f"{'METRIC':<22} {'BASELINE':>9} {'CANDIDATE':>9} {'DELTA':>8}  {'ALWAYS-VALID 95% CS':<21} VERDICT")
    for m in st["metrics"]:
        cs = f"[{m['cs'][0]:+.3f}, {m['cs'][1]:+.3f}]" if m.get("cs") else "-"
        extra = " HARM beyond margin" if m.get("harm") else ""
        lines.append(f"{m['metric']:<22} {_fmt(m.get('baseline')):>9} {_fmt(m.get('candidate')):>9} "
                     f"{_fmt(m.get('delta')):>8}  {cs:<21} {m['verdict']}{extra}")
    if st["auto_rollback"]:
        lines.append(f"rolled back automatically: {st['auto_rollback']}")
    lines.append("decided: " + (", ".join(st["decided"]) or "nothing yet (looking again later is allowed)"))
    return "\n".join(lines)


@ab_app.command("start")
def start_cmd(
    name: str = typer.Argument(..., help="A name for the experiment."),
    baseline: str = typer.Option(..., "--baseline", help="The model users get today."),
    candidate: str = typer.Option(..., "--candidate", help="The model to try."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of users routed to the candidate (sticky)."),
    margin: list[str] = typer.Option([], "--margin", help="GUARDRAIL=X harm margin (repeatable), e.g. flattery_rate=0.05."),
    alpha: float = typer.Option(0.05, "--alpha", help="Error rate of the confidence sequences."),
    check_seconds: float = typer.Option(60.0, "--check-seconds", help="How often a server checks the guardrails."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Route a fraction of the baseline's users to the candidate on every running server (no restart)."""
    from posttrain.experiments import start

    margins = {}
    for item in margin:
        key, sep, value = item.partition("=")
        try:
            margins[key] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            fail(f"--margin: expected GUARDRAIL=NUMBER, got {item!r}")
    exp = _run(db, lambda s: start(s, name, baseline=baseline, candidate=candidate, fraction=fraction,
                                   margins=margins, alpha=alpha, check_seconds=check_seconds))
    emit(exp, as_json, f"started {name}: {fraction:.0%} of {baseline}'s users get {candidate}")


@ab_app.command("status")
def status_cmd(name: Optional[str] = typer.Argument(None, help="Experiment (all experiments when omitted)."),
               db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Per-arm metrics and guardrails with always-valid intervals; rolls back on guardrail harm."""
    from posttrain.experiments import list_all, status

    if name is None:
        rows = _run(db, list_all)
        text = "\n".join(f"{e['name']:<24} {e['status']:<12} {e['candidate']} vs {e['baseline']} ({e['fraction']:.0%})"
                         for e in rows) or "no experiments (posttrain ab start NAME --baseline M --candidate M)"
        emit(rows, as_json, text)
        return
    st = _run(db, lambda s: status(s, name))
    emit(st, as_json, _status_text(st))


@ab_app.command("promote")
def promote_cmd(name: str = typer.Argument(...), db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Give every user of the baseline the candidate, at once (recorded)."""
    from posttrain.experiments import promote

    exp = _run(db, lambda s: promote(s, name))
    emit(exp, as_json, f"promoted {exp['candidate']}: all of {exp['baseline']}'s traffic goes to it now")


@ab_app.command("rollback")
def rollback_cmd(name: str = typer.Argument(...), reason: str = typer.Option("manual", "--reason"),
                 db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """Send everyone back to the baseline at once (also undoes a promotion); recorded."""
    from posttrain.experiments import rollback

    exp = _run(db, lambda s: rollback(s, name, reason=reason))
    emit(exp, as_json, f"rolled back {name}: everyone gets {exp['baseline']}")


@ab_app.command("stop")
def stop_cmd(name: str = typer.Argument(...), db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """End a running experiment without a verdict (everyone gets the baseline)."""
    from posttrain.experiments import stop

    exp = _run(db, lambda s: stop(s, name))
    emit(exp, as_json, f"stopped {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(ab_app, name="ab")
