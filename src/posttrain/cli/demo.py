"""`posttrain demo [--out DIR] [--quick]`: the whole loop rehearsed on the embedded model.

Simulated users chat with a real `posttrain serve` and give feedback; the feedback is curated,
a reward model is trained and audited, a naive and a guarded candidate are trained, evaluated
and gated, and report.json / report.html are written. Started again with the same --out, the
finished stages are not redone (a killed run resumes). `make serve` serves alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from posttrain.cli._common import fail


def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the store, datasets, models' lineage and the report."),
    quick: bool = typer.Option(False, "--quick", help="Fewer users and steps (<= 8 min on 2 cores) instead of the full run (<= 30 min)."),
    smoke: bool = typer.Option(False, "--smoke", help="The CI check: every stage runs, tiny sizes (no outcome claimed)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Public data (MT-Bench, IFEval), e.g. ../shared/data; without it the built-in question bank is used."),
    personas: Optional[Path] = typer.Option(None, "--personas", help="Personas TOML (default: the one shipped in posttrain/simulate)."),
    base_path: Optional[Path] = typer.Option(None, "--base-path", help="Train and serve this HF folder instead of the embedded model (tests use a tiny model)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print report.json instead of the summary."),
) -> None:
    """Rehearse the launch: simulated users, export, reward model + audit, naive and guarded candidates, gate, report."""
    from posttrain.loop import run_demo
    from posttrain.loop.demo import summary_lines

    import contextlib
    import sys

    mode = "smoke" if smoke else "quick" if quick else "full"
    # With --json, stdout carries only the report: progress (ours and the trainers') goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet:
            state = run_demo(out, mode, seed=seed, data_dir=str(data_dir.resolve()) if data_dir else None,
                             base_path=str(base_path.resolve()) if base_path else None,
                             personas=str(personas.resolve()) if personas else None,
                             log=lambda m: typer.echo(m, err=as_json))
    except ValueError as exc:
        fail(str(exc))
        return
    report_path = out / "report.json"
    if not report_path.exists():
        fail(f"no report was written; see {out / 'state.json'}")
    report = json.loads(report_path.read_text())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo("")
        for line in summary_lines(report, out.resolve()):
            typer.echo(line)
        guarded = next((c for c in report["candidates"] if c["name"].startswith("demo-guarded") and c.get("available")), None)
        db = f"sqlite:///{(out / 'home' / 'posttrain.db').resolve()}"
        if guarded:
            typer.echo(f"\nChat with the guarded model in the browser: `make serve` serves your usual store; this "
                       f"demo's store (with {guarded['name']}) is served by\n"
                       f"  .venv/bin/posttrain serve --db {db} --model {guarded['name']} --demo-admin\n"
                       f"then open the printed URL and sign in with the printed key.")
    failed = [s for s in state["stages"].values() if s["status"] == "failed"]
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
