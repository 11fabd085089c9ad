"""`posttrain eval`: list suites, run them on a model, grade given responses, show and compare runs,
mine north-star suites from production feedback. Everything here calls posttrain.evals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from posttrain.cli._common import db_option, emit, fail

eval_app = typer.Typer(help="Evals: run suites, grade responses, compare runs, mine north-star cases.",
                       no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


@contextmanager
def _store(db: str | None) -> Iterator[Any]:
    from posttrain.store import Store

    try:
        store = Store.open(db)
    except Exception as exc:  # bad URL, unreachable server: one line, no traceback
        fail(f"cannot open the store at {db or 'the default location'}: {' '.join(str(exc).split())[:200]}")
    try:
        yield store
    finally:
        store.close()


def _user_error(exc: Exception) -> None:
    # KeyError's str() wraps the message in quotes.
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    fail(" ".join(str(msg).split()))


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


@eval_app.command("list")
def list_cmd(db: Optional[str] = db_option(), as_json: bool = JSON_OPT) -> None:
    """List built-in and mined suites with version, dates, and stale/saturated flags."""
    from posttrain.evals.lifecycle import suite_status

    with _store(db) as store:
        rows = suite_status(store)
    lines = [f"{'SUITE':<26} {'VERSION':<18} {'SOURCE':<8} {'CASES':>6} {'EXPIRES':<11} FLAGS / BEST"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<26} cannot be loaded: {r['error']}")
            continue
        flags = [f for f in ("stale", "saturated") if r[f]]
        best = f"{r['best_model']} {r['primary_metric']}={_fmt(r['best_score'])}" if r["best_model"] else ""
        lines.append(f"{r['name']:<26} {r['version'][:18]:<18} {r['source']:<8} {_fmt(r['n_cases']):>6} "
                     f"{(r['expires_at'] or '-')[:10]:<11} {' '.join(flags + [best]).strip()}")
    emit(rows, as_json, "\n".join(lines))


@eval_app.command("run")
def run_cmd(
    suite: str = typer.Argument(..., help="Suite name (see `posttrain eval list`)."),
    model: str = typer.Option(..., "--model", "-m", help="Registered model name (see `posttrain models list`)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Run only the first N cases (suite order)."),
    seed: int = typer.Option(0, "--seed", help="Decoding seed, also passed to generated suites."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the suite's public data."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Override the answer length cap."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Override the temperature (default 0: greedy)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generate call."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Generate even when a cached answer exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Registered model that judges answers (suites with judge graders)."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Run SUITE on a model; prints the run id and metrics (per-case rows go to the store)."""
    from posttrain.evals.runner import run_suite

    params: dict[str, Any] = {}
    if max_new_tokens is not None:
        params["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        params["temperature"] = temperature
    with _store(db) as store:
        try:
            if judge is not None:  # judge graders get `judge=MODEL` (stored in their grader args)
                from posttrain.evals.lifecycle import resolve_suite
                from posttrain.graders.detectors.judge import with_judge

                suite = with_judge(resolve_suite(store, suite), judge)  # type: ignore[assignment]
            summary = run_suite(store, suite, model, limit=limit, seed=seed, data_dir=data_dir, params=params,
                                batch_size=batch_size, progress=not quiet and not as_json, use_cache=not no_cache)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            _user_error(exc)
    d = summary.to_dict()
    lines = [f"run {d['run_id']}: {d['suite']} v{d['suite_version']} on {d['model']}, {d['n_cases']} cases "
             f"({d['cached']} cached, {d['generated']} generated, {d['tokens_per_s']} tok/s, {d['seconds']} s)"]
    lines += [f"  {k:<28} {_fmt(v)}" for k, v in d["metrics"].items()]
    if d["grader_errors"]:
        lines.append(f"  {d['grader_errors']} grader error(s): see `posttrain eval show {d['run_id']}`")
    emit(d, as_json, "\n".join(lines))


@eval_app.command("grade")
def grade_cmd(
    suite: str = typer.Argument(..., help="Suite name."),
    responses: Path = typer.Option(..., "--responses", help="JSONL of responses (see docs/evals/README.md)."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Cases/input file (ifeval: input_data.jsonl)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the suite's public data."),
    seed: int = typer.Option(0, "--seed", help="Seed the suite's cases were generated with."),
    save: bool = typer.Option(False, "--save", help="Store the grading as a run of model external:<file>."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Score given responses without generating."""
    from posttrain.evals.grade import grade_responses
    from posttrain.evals.lifecycle import resolve_suite

    with _store(db) as store:
        try:
            s = resolve_suite(store, suite)
            out = grade_responses(s, responses, input_file, data_dir=data_dir, seed=seed,
                                  store=store if save else None)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            _user_error(exc)
    metrics = out.get("metrics") or {k: v for k, v in out.items() if isinstance(v, float)}
    lines = [f"{suite}: graded {out.get('n_cases', '?')} responses" + (f" (run {out['run_id']})" if "run_id" in out else "")]
    lines += [f"  {k:<28} {_fmt(v)}" for k, v in metrics.items()]
    emit(out, as_json, "\n".join(lines))


@eval_app.command("show")
def show_cmd(
    run: str = typer.Argument(..., help="Run id (or a unique prefix of it)."),
    failures: int = typer.Option(5, "--failures", help="How many failing cases to show."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Show a run: metrics, per-grader pass rates, and a few failing cases."""
    from posttrain.evals.results import show_run

    with _store(db) as store:
        try:
            d = show_run(store, run, n_failures=failures)
        except KeyError as exc:
            _user_error(exc)
    lines = [f"run {d['id']}  {d['suite']} v{d['suite_version']}  model {d['model']}  {d['status']}  "
             f"{d['n_cases']} cases  seed {d['seed']}", f"  params {d['params']}", "metrics:"]
    lines += [f"  {k:<28} {_fmt(v)}" for k, v in d["metrics"].items()]
    lines.append("graders:")
    lines += [f"  {g:<28} pass {_fmt(s['pass_rate'])}  mean score {_fmt(s['mean_score'])}  n {s['n']}"
              + (f"  errors {s['errors']}" if s["errors"] else "") for g, s in d["graders"].items()]
    if d["failures"]:
        lines.append("failing cases:")
        for f in d["failures"]:
            resp = " ".join(f["response"].split())[:100]
            lines.append(f"  {f['case_id']} [{f['grader']}] {resp!r} {f['details'].get('error', '')}".rstrip())
    emit(d, as_json, "\n".join(lines))


@eval_app.command("runs")
def runs_cmd(
    suite: Optional[str] = typer.Option(None, "--suite", help="Only runs of this suite."),
    limit: int = typer.Option(20, "--limit", help="How many runs."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """List stored runs, newest first."""
    from posttrain.evals.results import list_runs

    with _store(db) as store:
        rows = list_runs(store, suite, limit)
    lines = [f"{r['id']}  {r['suite']:<20} {r['model']:<24} {r['status']:<8} {r['n_cases']:>5} cases" for r in rows]
    emit(rows, as_json, "\n".join(lines) or "no runs yet")


@eval_app.command("compare")
def compare_cmd(
    run_a: str = typer.Argument(..., help="Baseline run id."),
    run_b: str = typer.Argument(..., help="Candidate run id."),
    n_boot: int = typer.Option(10_000, "--n-boot", help="Bootstrap resamples for the 95% intervals."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Paired comparison of two runs on their shared cases: means, delta, 95% CI, p-value."""
    from posttrain.evals.compare import compare_runs

    if n_boot < 100:
        fail("--n-boot must be at least 100")
    with _store(db) as store:
        try:
            d = compare_runs(store, run_a, run_b, n_boot=n_boot)
        except KeyError as exc:
            _user_error(exc)
    lines = [f"A = {d['run_a']['model']} ({d['run_a']['id']})", f"B = {d['run_b']['model']} ({d['run_b']['id']})",
             f"{'METRIC':<26} {'N':>5} {'A':>7} {'B':>7} {'B-A':>7}  {'95% CI':<17} {'p':>7}"]
    for m in d["metrics"]:
        ci = f"[{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"
        lines.append(f"{m['metric']:<26} {m['n_pairs']:>5} {m['mean_a']:>7.3f} {m['mean_b']:>7.3f} "
                     f"{m['delta']:>+7.3f}  {ci:<17} {m['p_value']:>7.4f}")
    lines += [f"warning: {w}" for w in d["warnings"]]
    emit(d, as_json, "\n".join(lines))


@eval_app.command("report")
def report_cmd(
    runs: list[str] = typer.Argument(..., help="Run ids (or unique prefixes); the first is the baseline."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write (self-contained, no JavaScript)."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Write an HTML report: each run's metrics, graders and failing cases, and the first run compared
    with each other run (forest plot of deltas with 95% intervals)."""
    from posttrain.evals.report import resolve_run_ids, write_report

    with _store(db) as store:
        try:
            ids = resolve_run_ids(store, runs)
            path = write_report(store, ids, out)
        except (KeyError, ValueError) as exc:
            _user_error(exc)
    d = {"out": str(path), "runs": ids, "comparisons": len(ids) - 1}
    emit(d, as_json, f"wrote {path}: {len(ids)} run(s), {d['comparisons']} comparison(s)")


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since {value!r} is not a date; use YYYY-MM-DD or an ISO 8601 time")
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


@eval_app.command("mine")
def mine_cmd(
    since: Optional[str] = typer.Option(None, "--since", help="Only feedback from this date on (YYYY-MM-DD)."),
    name: str = typer.Option("northstar", "--name", help="Name of the mined suite (created or replaced)."),
    expires_days: int = typer.Option(90, "--expires-days", help="The suite expires this many days from now."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Registered model that judges answers against the reference."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Turn production feedback (thumbs down, edits, pairwise picks) into a north-star suite."""
    from posttrain.evals.mine import mine

    when = _parse_date(since)
    with _store(db) as store:
        try:
            summary = mine(store, name=name, since=when, expires_days=expires_days, judge=judge)
        except (KeyError, ValueError) as exc:
            _user_error(exc)
    d = summary.to_dict()
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(d["skipped"].items())) or "none"
    emit(d, as_json, f"suite {d['name']} v{d['version']}: {d['n_cases']} cases from {d['n_events']} feedback "
                     f"events (skipped: {skipped}); expires {d['expires_at'][:10]}")


@eval_app.command("renew")
def renew_cmd(
    suite: str = typer.Argument(..., help="Suite name."),
    expires_days: int = typer.Option(90, "--expires-days", help="New expiry: this many days from now."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Move a suite's expiry date (after reviewing that it still measures what matters)."""
    from posttrain.evals.lifecycle import set_expiry

    with _store(db) as store:
        try:
            when = set_expiry(store, suite, expires_days)
        except (KeyError, ValueError) as exc:
            _user_error(exc)
    emit({"name": suite, "expires_at": when.isoformat()}, as_json, f"{suite} now expires {when.date()}")


def register(app: typer.Typer) -> None:
    """Add the `eval` group to the posttrain CLI."""
    app.add_typer(eval_app, name="eval")
