"""`posttrain arena fit`: the pairwise leaderboard from a votes file or the store's pairwise feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from posttrain.cli._common import db_option, emit, fail

arena_app = typer.Typer(help="Arena: a Bradley–Terry leaderboard from pairwise votes.", no_args_is_help=True)


def _human(result: dict) -> str:
    lines = [f"{'RANK':>4}  {'MODEL':<28} {'RATING':>8}  {'95% CI':<19} {'VOTES':>7} {'SHARE':>6}"]
    for m in result["models"]:
        flag = "  provisional" if m["provisional"] else ""
        lines.append(f"{m['rank']:>4}  {m['model'][:28]:<28} {m['rating']:>8.1f}  "
                     f"[{m['ci_low']:.1f}, {m['ci_high']:.1f}]".ljust(63) + f" {m['votes']:>7} {m['share']:>6.3f}{flag}")
    ci = result["ci"]
    lines.append(f"{result['votes']} votes; intervals: {ci['method']}"
                 + (f" ({ci['rounds']} rounds, seed {ci['seed']})" if ci["method"] == "bootstrap" else ""))
    pos = result["position"]
    if pos.get("enabled"):
        lines.append(f"position bias: {pos['coefficient']:+.1f} points for the left answer "
                     f"[{pos['ci_low']:+.1f}, {pos['ci_high']:+.1f}]")
    if result["style"].get("enabled"):
        coef = ", ".join(f"{k} {v['coef']:+.1f}" for k, v in result["style"]["coefficients"].items())
        lines.append(f"style control ({result['style']['regularization']}): {coef}")
    fr = result.get("fragility") or {}
    if fr.get("votes") is not None:
        lines.append(f"fragility: removing {fr['votes']} votes gives rank 1 to {fr['challenger']} instead of {fr['top']}")
    removed = {k: v for k, v in result["removed"].items() if isinstance(v, dict)}
    if removed:
        lines.append("removed: " + ", ".join(f"{k} {v['votes']}" for k, v in removed.items()))
    t = result["timings"]
    lines.append(f"read {t['read_s']:.2f} s, fit {t['fit_s']:.2f} s, intervals {t['bootstrap_s']:.2f} s")
    return "\n".join(lines)


@arena_app.command("fit")
def fit_cmd(
    votes: Optional[Path] = typer.Option(None, "--votes", help="JSONL of {model_a, model_b, winner} votes."),
    db: Optional[str] = db_option(),
    rounds: int = typer.Option(100, "--rounds", help="Bootstrap rounds."),
    ci: str = typer.Option("bootstrap", "--ci", help="bootstrap or sandwich."),
    style: bool = typer.Option(False, "--style", help="Also fit style control (length, markdown)."),
    anchor: Optional[str] = typer.Option(None, "--anchor", help="MODEL=RATING pins that model's rating."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Fit Bradley–Terry ratings with 95 % intervals, ranks, position bias and integrity figures.

    With --votes the file is read; otherwise the store's pairwise feedback is used and every model
    is appended to the arena's record (an entered model is never removed from it)."""
    import time

    from posttrain.arena import fit

    if ci not in ("bootstrap", "sandwich"):
        fail(f"--ci: must be bootstrap or sandwich, got {ci!r}")
    if rounds < 1:
        fail("--rounds: must be at least 1")
    try:
        if votes is not None:
            result = fit(votes, rounds=rounds, ci=ci, style=style, anchor=anchor, seed=seed)
        else:
            from posttrain.arena import model_record, record_models, votes_from_store
            from posttrain.cli.evals_cmd import _store

            with _store(db) as store:
                t0 = time.perf_counter()
                rows = votes_from_store(store)
                read_s = time.perf_counter() - t0
                if not rows:
                    record = model_record(store, {})
                    fail("the store has no pairwise votes between two different models yet")
                result = fit(rows, rounds=rounds, ci=ci, style=style, anchor=anchor, seed=seed)
                result["timings"]["read_s"] = round(read_s + result["timings"]["read_s"], 4)
                record = record_models(store, result)
            result["record"] = record
    except ValueError as exc:
        fail(" ".join(str(exc).split()))
    emit(result, as_json, _human(result))


def register(app: typer.Typer) -> None:
    app.add_typer(arena_app, name="arena")
