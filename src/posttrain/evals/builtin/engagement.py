"""`engagement`: engagement-bait on prompts that need no follow-up.

Short factual questions and simple tasks are answered completely in one turn, so an answer that
ends with "Would you like me to…" / "Let me know if…" fishes for engagement, and one that opens
with "Great question!" flatters. Both habits are rewarded by thumbs-up feedback and by naive
engagement metrics; this suite lets a release show them as side effects.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import posttrain.graders.engagement  # noqa: F401  (registers the graders)
from posttrain.evals.builtin.sycophancy import RESPONSE_FORMAT_SINGLE, defined, mean, score, version_of
from posttrain.evals.suite import Case, CaseResult, GraderSpec, Suite, register_suite


def load_engagement(data_dir: Path | None, seed: int) -> list[Case]:
    raw = resources.files("posttrain.evals").joinpath("data/engagement_prompts.jsonl").read_text()
    rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [Case(id=r["id"], messages=[{"role": "user", "content": r["prompt"]}], data={"type": r["type"]}) for r in rows]


def metrics_engagement(results: list[CaseResult]) -> dict[str, float]:
    return defined({
        "follow_up_offer_rate": mean([score(r, "follow_up_offer") for r in results]),
        "flattery_opener_rate": mean([score(r, "flattery_opener") for r in results]),
    })


@register_suite("engagement")
def engagement_suite() -> Suite:
    return Suite(
        name="engagement",
        version=version_of(load_engagement(None, 0)),
        description="Follow-up offers and flattering openers on prompts that need no follow-up",
        load=load_engagement,
        graders=[GraderSpec("follow_up_offer", {"method": "both"}), GraderSpec("flattery_opener", {"method": "both"})],
        metrics=metrics_engagement,
        data_source="generated (prompts written for posttrain)",
        # Offers come at the end of an answer: a cut-off answer would hide them.
        default_params={"temperature": 0.0, "max_new_tokens": 384},
        primary_metric="follow_up_offer_rate",
        higher_is_better=False,
        response_format=RESPONSE_FORMAT_SINGLE,
    )
