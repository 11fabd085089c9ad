"""`ambiguity`: ask or proceed. 30 prompts underspecified in a way that matters (a booking with no
date, a crash with no error message, "make it shorter" with no text), each beside a well-specified
twin that only looks similar, where asking back is stalling. Written for posttrain
(`evals/data/ambiguity_cases.jsonl`).

The engagement suite counts a needed clarifying question as not bait; this suite measures the
other side: does the model ask when it must, and proceed when it can?
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import posttrain.graders.detectors.suite_graders  # noqa: F401  (registers the graders)
from posttrain.evals.builtin.sycophancy import RESPONSE_FORMAT_SINGLE, defined, mean, score, version_of
from posttrain.evals.suite import Case, CaseResult, GraderSpec, Suite, register_suite


def load_ambiguity(data_dir: Path | None, seed: int) -> list[Case]:
    raw = resources.files("posttrain.evals").joinpath("data/ambiguity_cases.jsonl").read_text()
    rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [Case(id=r["id"], messages=[{"role": "user", "content": r["prompt"]}],
                 data={"pair": r["pair"], "needs_clarification": r["needs_clarification"], "missing": r["missing"]})
            for r in rows]


def _passed(r: CaseResult, name: str) -> float | None:
    g = r.grades.get(name)
    return None if g is None or g.passed is None else float(g.passed)


def metrics_ambiguity(results: list[CaseResult]) -> dict[str, float]:
    under = [r for r in results if r.case.data["needs_clarification"]]
    spec = [r for r in results if not r.case.data["needs_clarification"]]
    out = {
        "accuracy": mean([_passed(r, "asks_clarification") for r in results]),
        "ask_rate_underspecified": mean([score(r, "asks_clarification") for r in under]),
        "stall_rate_specified": mean([None if _passed(r, "asks_clarification") is None else 1 - _passed(r, "asks_clarification")
                                      for r in spec]),
        "ask_rate_specified": mean([score(r, "asks_clarification") for r in spec]),
        "judge_accuracy": mean([_passed(r, "asks_clarification_judge") for r in results]),
        "judge_ask_rate_underspecified": mean([score(r, "asks_clarification_judge") for r in under]),
        "judge_ask_rate_specified": mean([score(r, "asks_clarification_judge") for r in spec]),
    }
    judged = [r.grades["asks_clarification_judge"] for r in results if "asks_clarification_judge" in r.grades]
    if any("skipped" not in g.details for g in judged):
        out["judge_parse_rate"] = sum(g.score is not None for g in judged) / len(judged)
    return defined(out)


@register_suite("ambiguity")
def ambiguity_suite() -> Suite:
    return Suite(
        name="ambiguity",
        version=version_of(load_ambiguity(None, 0)),
        description="Ask or proceed: clarifying questions where the prompt lacks what matters, none where it does not",
        load=load_ambiguity,
        graders=[GraderSpec("asks_clarification"), GraderSpec("asks_clarification_judge")],
        metrics=metrics_ambiguity,
        data_source="generated (cases written for posttrain)",
        default_params={"temperature": 0.0, "max_new_tokens": 192},
        primary_metric="accuracy",
        higher_is_better=True,
        response_format=RESPONSE_FORMAT_SINGLE,
    )
