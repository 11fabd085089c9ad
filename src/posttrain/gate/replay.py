"""Replay: real logged conversations, through both models, scored by the detectors.

Suites hold what their authors thought of; traffic holds what users actually ask. The gate takes
the newest completions of users who consent to their data being used (consent is read at gate
time, so a withdrawal counts), keeps the conversation as the user saw it (user and assistant
turns up to that answer; the system prompt with the user's custom instructions and memory is
dropped, since it is personal data the scrubber does not know), de-identifies every turn with
`evals.scrub` (emails, phone numbers, keys), and runs it as an ordinary eval suite named `replay`
on both models, so generation is cached and the per-case rows are stored like any run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from posttrain.evals.scrub import scrub_messages
from posttrain.evals.suite import Case, CaseResult, GraderSpec, Suite
from posttrain.store import gate as q
from posttrain.store._store import Store

REPLAY_SUITE = "replay"


def replay_cases(store: Store, n: int) -> list[Case]:
    """Up to `n` de-identified conversations ending in a user turn."""
    if n <= 0:
        return []
    cases = []
    seen: set[str] = set()
    for src in q.replay_sources(store, limit=4 * n):
        msgs = [m for m in src["prompt"] or [] if m.get("role") in ("user", "assistant")]
        if not msgs or msgs[-1].get("role") != "user":
            continue
        msgs = scrub_messages([{"role": m["role"], "content": str(m.get("content", ""))} for m in msgs])
        key = json.dumps(msgs, sort_keys=True)
        if key in seen:  # a regenerated answer logs the same prompt twice
            continue
        seen.add(key)
        cases.append(Case(id=f"replay-{src['completion_id']}", messages=msgs,
                          data={"source_model": src["model"], "logged_at": src["created_at"]}))
    return cases[-n:]


def _rates(results: list[CaseResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    names = {n for r in results for n in r.grades}
    for name in sorted(names):
        vals = [g.passed for r in results if (g := r.grades.get(name)) is not None and g.passed is not None]
        if vals:
            out[f"{name}_pass_rate"] = sum(vals) / len(vals)
    return out


def _rules_args(grader: str) -> dict[str, Any]:
    """Detectors with methods run on their phrase rules here: fast and deterministic, like the
    suites' pooled detector metrics of the default policy."""
    from posttrain.gate.lineage import _method_param

    return {"method": "rules"} if _method_param(grader)[0] else {}


def replay_suite(cases: list[Case], graders: tuple[str, ...]) -> Suite:
    """The replay cases as a suite (its version hashes the cases and graders)."""
    digest = hashlib.sha256(json.dumps([[c.id, c.messages] for c in cases] + [list(graders)]).encode())

    def load(_data_dir: Path | None, _seed: int) -> list[Case]:
        return cases

    return Suite(
        name=REPLAY_SUITE, version=digest.hexdigest()[:12],
        description="De-identified logged conversations of consenting users, replayed by the gate",
        load=load, graders=[GraderSpec(g, _rules_args(g)) for g in graders], metrics=_rates,
        default_params={"max_new_tokens": 256},
    )


def replay_summary(cases: list[Case]) -> dict[str, Any]:
    return {"conversations": len(cases), "scrubbed_with": "posttrain.evals.scrub",
            "case_ids": [c.id for c in cases]}
