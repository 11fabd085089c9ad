"""`posttrain compare MODEL...`: quality, latency and cost side by side, with a recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from posttrain.cli._common import db_option, emit, fail


def compare_cmd(
    models: list[str] = typer.Argument(..., help="Models to compare; the first is the reference."),
    suites: Optional[str] = typer.Option(None, "--suites", help="Comma-separated suites (default: capability,engagement)."),
    price: list[str] = typer.Option([], "--price", help="MODEL=IN/OUT dollars per 1M input/output tokens (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N cases of each suite."),
    margin: float = typer.Option(0.05, "--margin", help="Non-inferiority margin against the first model."),
    cached: bool = typer.Option(False, "--cached", help="Reuse cached generations (latency is then not measured)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the HTML report here."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run suites on several models; report quality, latency p50/p95 and cost with a Pareto plot,
    and recommend the cheapest model that is not worse than the first."""
    from posttrain.cli.evals_cmd import _store, _user_error
    from posttrain.experiments._compare import compare, parse_price, write_report

    try:
        prices = {m: (a, b) for m, a, b in (parse_price(p) for p in price)}
    except ValueError as exc:
        fail(str(exc))
    with _store(db) as store:
        try:
            result = compare(store, models, suites=[s.strip() for s in suites.split(",") if s.strip()] if suites else None,
                             prices=prices, limit=limit, margin=margin, progress=not as_json, use_cache=cached)
        except (ValueError, KeyError) as exc:
            _user_error(exc)
    if out is not None:
        result["report"] = str(write_report(result, out))
    lines = [f"{'MODEL':<24} {'SCORE':>6} {'P50 MS':>8} {'P95 MS':>8} {'$/1K REQ':>9}  NOT WORSE"]
    for r in result["models"]:
        cost = "-" if r["cost_per_1k_requests"] is None else f"{r['cost_per_1k_requests']:.4f}"
        lines.append(f"{r['model'][:24]:<24} {r['score'] if r['score'] is not None else '-':>6} "
                     f"{r['latency_ms']['p50'] or '-':>8} {r['latency_ms']['p95'] or '-':>8} {cost:>9}  "
                     f"{'reference' if r['model'] == result['reference'] else 'yes' if r['noninferior'] else 'no'}")
    lines.append(f"recommended: {result['recommended']} — {result['reason']}")
    if out is not None:
        lines.append(f"report: {result['report']}")
    emit(result, as_json, "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
