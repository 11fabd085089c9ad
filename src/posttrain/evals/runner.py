"""Run a suite on a model: generate (batched, cached), grade, store per-case results.

Multi-turn cases run turn by turn: turn k of every case that has one is generated as one batch
list, then each answer and that case's next scripted followup are appended. Custom instructions
and memory reach the model through `feedback.personalization.apply`, exactly as in the chat
server, so an eval with memory probes what users get.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.evals.cache import CachedGenerator, CacheStats
from posttrain.evals.grade import compute_metrics, grade_case, grading_store, result_rows
from posttrain.evals.lifecycle import ensure_registered, resolve_suite
from posttrain.evals.suite import Case, Suite
from posttrain.feedback.personalization import apply
from posttrain.graders import get_grader
from posttrain.models.base import Backend, DecodingParams
from posttrain.store import evals as q
from posttrain.store._store import Store

# Evals decode greedily by default so that two runs differ only by the model; a suite or the
# caller may override (sampling is still reproducible through the seed).
EVAL_DEFAULTS: dict[str, Any] = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0}


@dataclass
class RunSummary:
    """What a finished run reports (its per-case rows are in the store under run_id)."""

    run_id: str
    suite: str
    suite_version: str
    model: str
    n_cases: int
    metrics: dict[str, float]
    params: dict[str, Any]
    seed: int
    cached: int = 0
    generated: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    seconds: float = 0.0
    grader_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "suite": self.suite, "suite_version": self.suite_version,
            "model": self.model, "n_cases": self.n_cases, "metrics": self.metrics,
            "params": self.params, "seed": self.seed, "cached": self.cached,
            "generated": self.generated, "generated_tokens": self.generated_tokens,
            "tokens_per_s": round(self.tokens_per_s, 2), "seconds": round(self.seconds, 3),
            "grader_errors": self.grader_errors,
        }


def decoding_params(suite: Suite, params: dict[str, Any] | None, seed: int) -> DecodingParams:
    """Eval defaults, then the suite's own, then the caller's; the seed always goes in."""
    merged = {**EVAL_DEFAULTS, **suite.default_params, **(params or {}), "seed": seed}
    unknown = set(merged) - set(DecodingParams.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown decoding parameter(s): {', '.join(sorted(unknown))}")
    return DecodingParams.from_dict(merged)


def load_cases(suite: Suite, data_dir: str | Path | None, seed: int, limit: int | None) -> list[Case]:
    """The suite's cases; `limit` takes the first N in suite order, so limited runs of different
    models see the same cases."""
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1")
    if suite.needs_data_dir and data_dir is None:
        raise ValueError(f"suite {suite.name!r} needs --data-dir (its data: {suite.data_source})")
    cases = suite.load(Path(data_dir) if data_dir else None, seed)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"suite {suite.name!r} has duplicate case ids")
    return cases[:limit] if limit is not None else cases


def _load_backend(store: Store, model: str) -> Backend:
    from posttrain.models import registry

    registry.ensure_default_models(store)
    return registry.load_backend(store, model)


class _Progress:
    """A rich progress bar on stderr: cases done of total, and generation tokens/s."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.enabled = enabled and total > 0
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self.task = self.bar.add_task(label, total=total, rate="")
        self.bar.start()

    def advance(self, n: int, stats: CacheStats) -> None:
        if not self.enabled:
            return
        rate = stats.generated_tokens / stats.generate_seconds if stats.generate_seconds else 0.0
        self.bar.update(self.task, advance=n, rate=f"{rate:.1f} tok/s, {stats.hits} cached")

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def run_suite(
    store: Store,
    suite: str | Suite,
    model_name: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    params: dict[str, Any] | None = None,
    batch_size: int = 32,
    progress: bool = True,
    backend: Backend | None = None,
    use_cache: bool = True,
) -> RunSummary:
    """Run `suite` on the registered model `model_name` and store the run and its per-case rows.

    `backend` overrides the registry lookup (the model is still recorded as `model_name`).
    Raises ValueError/KeyError for bad input before anything is stored.
    """
    t0 = time.perf_counter()
    suite = resolve_suite(store, suite) if isinstance(suite, str) else suite
    decoding = decoding_params(suite, params, seed)
    for spec in suite.graders:
        get_grader(spec.name)  # an unregistered grader is a suite bug: fail before generating
    cases = load_cases(suite, data_dir, seed, limit)
    if not cases:
        raise ValueError(f"suite {suite.name!r} has no cases")
    backend = backend or _load_backend(store, model_name)
    gen = CachedGenerator(store, backend, model_name, batch_size=batch_size, use_cache=use_cache)
    ensure_registered(store, suite)
    run_id = q.create_run(
        store, suite=suite.name, suite_version=suite.version, model=model_name,
        params=decoding.to_dict(), seed=seed,
    )
    try:
        responses, transcripts = _generate_all(gen, cases, decoding, progress, suite.name)
        with grading_store(store):
            results = [grade_case(suite, c, responses[c.id], transcripts[c.id]) for c in cases]
        rows = result_rows(suite, results)
        q.add_results(store, run_id, rows)
        metrics = compute_metrics(suite, results)
    except BaseException:
        q.finish_run(store, run_id, metrics={}, n_cases=0, status="failed")
        raise
    q.finish_run(store, run_id, metrics=metrics, n_cases=len(cases))
    return RunSummary(
        run_id=run_id, suite=suite.name, suite_version=suite.version, model=model_name,
        n_cases=len(cases), metrics=metrics, params=decoding.to_dict(), seed=seed,
        cached=gen.stats.hits, generated=gen.stats.misses,
        generated_tokens=gen.stats.generated_tokens, generate_seconds=gen.stats.generate_seconds,
        seconds=time.perf_counter() - t0,
        grader_errors=sum(1 for r in rows if "error" in r["details"]),
    )


def _generate_all(
    gen: CachedGenerator, cases: list[Case], params: DecodingParams, progress: bool, label: str
) -> tuple[dict[str, list[str]], dict[str, list[dict[str, str]]]]:
    """Every turn of every case; returns answers and transcripts (without the system prompt)."""
    transcripts = {c.id: [dict(m) for m in c.messages] for c in cases}
    responses: dict[str, list[str]] = {c.id: [] for c in cases}
    n_turns = max(1 + len(c.followups) for c in cases)
    bar = _Progress(sum(1 + len(c.followups) for c in cases), label, progress)
    try:
        for turn in range(n_turns):
            active = [c for c in cases if turn <= len(c.followups)]
            convs = [apply(transcripts[c.id], c.custom_instructions, c.memory) for c in active]
            gens = gen.generate(convs, params, on_batch=bar.advance)
            for c, g in zip(active, gens):
                responses[c.id].append(g.text)
                transcripts[c.id].append({"role": "assistant", "content": g.text})
                if turn < len(c.followups):
                    transcripts[c.id].append({"role": "user", "content": c.followups[turn]})
    finally:
        bar.close()
    return responses, transcripts
