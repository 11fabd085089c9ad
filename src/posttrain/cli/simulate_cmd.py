"""`posttrain simulate`: simulated users with biases driving a running server's HTTP API.

Importing this module registers the `styled` backend kind (posttrain.simulate.variants), so the
product arms a rehearsal registers can be served by `posttrain serve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

import posttrain.simulate.variants  # noqa: F401  (registers the `styled` backend for `posttrain serve`)
from posttrain.cli._common import emit, fail


def simulate_cmd(
    server: str = typer.Option(..., "--server", help="Base URL of a running posttrain server, e.g. http://127.0.0.1:8000"),
    key: list[str] = typer.Option([], "--key", help="API key; repeat for one key per user (one key: every user shares it)."),
    keys_file: Optional[Path] = typer.Option(None, "--keys-file", help="JSON object {user: key} or one key per line."),
    personas: Optional[Path] = typer.Option(None, "--personas", help="Personas TOML (default: the one shipped in the package)."),
    users: int = typer.Option(8, "--users", min=1),
    conversations: int = typer.Option(3, "--conversations", min=1, help="Conversations per user (scaled by persona activity)."),
    seed: int = typer.Option(0, "--seed"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Public data for MT-Bench/IFEval prompts (else the built-in bank)."),
    arm: list[str] = typer.Option([], "--arm", help="Registered model to compare side by side (repeat; default: the personas file's arms; '-' for none: n=2 samples of --model)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model for requests when no arms are used (default: the server's)."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, max=32),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Simulated users chat, compare, regenerate, edit and rate through the real HTTP API."""
    from posttrain.simulate import SimulationError, load_personas, run

    keys = list(key)
    if keys_file is not None:
        try:
            text = keys_file.read_text()
        except OSError as exc:
            fail(f"--keys-file: {exc}")
        try:
            data = json.loads(text)
            keys += [data[k] for k in sorted(data)] if isinstance(data, dict) else list(data)
        except json.JSONDecodeError:
            keys += [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        fail("--key: give an API key (posttrain users add NAME prints one), or --keys-file")
    try:
        cfg = load_personas(personas)
        arms = None if not arm else ([] if arm == ["-"] else list(arm))
        summary = run(server, keys[0] if len(keys) == 1 else keys, cfg, users, conversations, seed,
                      data_dir=data_dir, arms=arms, default_model=model, concurrency=concurrency,
                      progress=None if as_json else typer.echo)
    except (ValueError, SimulationError) as exc:
        fail(str(exc))
        return
    summary.pop("user_results", None)
    t = summary["totals"]
    lines = [f"{summary['users']} users, {t.get('conversations', 0)} conversations, {t.get('completions', 0)} answers in {summary['seconds']:.0f} s",
             "feedback: " + ", ".join(f"{k[9:]} {v}" for k, v in sorted(t.items()) if k.startswith("feedback_"))]
    for name, a in summary["arms"].items():
        lines.append(f"  {name}: shown {a['shown']}, thumbs-up rate {a['thumbs_up_rate']}, pick rate {a['pick_rate']}, "
                     f"flattery {a['flattery_rate']}, offers {a['offer_rate']}")
    emit(summary, as_json, "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
