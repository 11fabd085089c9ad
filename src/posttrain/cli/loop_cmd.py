"""`posttrain loop --config loop.toml [--once | --every 7d]`: the loop's stages on a deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from posttrain.cli._common import emit, fail


def loop_cmd(
    config: Path = typer.Option(..., "--config", help="loop.toml: store, production model, recipes, gate policy (docs/loop.md)."),
    once: bool = typer.Option(False, "--once", help="Run one cycle (or finish the one a kill interrupted) and exit."),
    every: Optional[str] = typer.Option(None, "--every", help="Run a cycle every period, e.g. 7d, 12h."),
    as_json: bool = typer.Option(False, "--json", help="Print the cycle's record (with --once)."),
) -> None:
    """Mine a north-star suite, export, train the recipes, gate against production, start an A/B for a passing candidate."""
    from posttrain.loop.cycle import load_loop_config, parse_every, run_cycle, run_forever

    if once == bool(every):
        fail("give exactly one of --once or --every PERIOD")
    try:
        cfg = load_loop_config(config)
        log = (lambda m: typer.echo(m, err=True)) if as_json else typer.echo
        if every:
            run_forever(cfg, parse_every(every), log=log)
            return
        import contextlib
        import sys

        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            state = run_cycle(cfg, log=log)
    except ValueError as exc:
        fail(str(exc))
        return
    rec = state["stages"].get("record", {})
    report = json.loads(Path(rec["result"]["report"]).read_text()) if rec.get("status") == "done" else state
    lines = [f"cycle {state['settings']['cycle']}:"]
    for s in state["order"]:
        r = state["stages"].get(s, {})
        lines.append(f"  {s}: {r.get('status')} ({r.get('seconds', 0):.1f} s){' - ' + r['reason'] if r.get('reason') else ''}")
    emit(report, as_json, "\n".join(lines))
    raise typer.Exit(1 if any(r.get("status") == "failed" for r in state["stages"].values()) else 0)


def register(app: typer.Typer) -> None:
    app.command("loop")(loop_cmd)
