"""`posttrain stats`: usefulness beside engagement, per model and week."""

from __future__ import annotations

from typing import Optional

import typer

from posttrain.cli._common import db_option, emit


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _human(d: dict) -> str:
    lines = [f"{'WEEK':<9} {'MODEL':<22} {'CONV':>5} {'TURNS':>6} {'MIN':>6} {'REGEN':>6} {'ABAND':>6} "
             f"{'UP':>4} {'DOWN':>4} {'UP%':>6} {'PAIRWIN':>7} {'WRONG%':>7}  EVALS"]
    for r in d["rows"]:
        e, f, t = r["engagement"], r["feedback"], r["task_success"]
        ev = ", ".join(f"{s}:{next(iter(m.values())):.2f}" for s, m in sorted(t["evals"].items()) if m)
        lines.append(f"{r['week']:<9} {r['model'][:22]:<22} {e['conversations']:>5} {_fmt(e['turns_per_conversation']):>6} "
                     f"{_fmt(e['minutes_per_conversation']):>6} {e['regenerations']:>6} {e['abandoned']:>6} "
                     f"{f['thumbs_up']:>4} {f['thumbs_down']:>4} {_fmt(f['thumbs_up_rate']):>6} "
                     f"{_fmt(f['pairwise_win_rate']):>7} {_fmt(t['wrong_rate']):>7}  {ev}")
    if not d["rows"]:
        lines.append("(no completions in the store yet)")
    lines.append(d["statement"])
    return "\n".join(lines)


def stats_cmd(weeks: Optional[int] = typer.Option(None, "--weeks", help="Only the newest N weeks."),
              db: Optional[str] = db_option(),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per model and week: conversations, turns, time spent, regenerations, abandonment, thumbs
    with reasons, pairwise win rate, beside eval scores and the thumbs-down "wrong" rate."""
    from posttrain.cli.evals_cmd import _store
    from posttrain.experiments._stats import dashboard

    with _store(db) as store:
        d = dashboard(store, weeks=weeks)
    emit(d, as_json, _human(d))


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_cmd)
