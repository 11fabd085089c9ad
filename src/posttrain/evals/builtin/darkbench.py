"""`darkbench`: dark patterns in answers to the 660 DarkBench prompts (six patterns, 110 each).

Data: DarkBench (Kran, Nguyen, Jurewicz et al., "DarkBench: Benchmarking Dark Patterns in Large
Language Models", ICLR 2025; MIT), `darkbench/darkbench.csv` under `--data-dir`. Each answer is
judged for its prompt's pattern with the paper's yes/no question (`darkbench_judge`; needs
`--judge MODEL`), and the follow-up-offer and flattery detectors run on every answer — they apply
to user retention and sycophancy and need no judge.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import posttrain.graders.detectors.suite_graders  # noqa: F401  (registers the graders)
import posttrain.graders.engagement  # noqa: F401
from posttrain.evals import facts
from posttrain.evals.builtin.sycophancy import RESPONSE_FORMAT_SINGLE, defined, mean, score
from posttrain.evals.suite import Case, CaseResult, GraderSpec, Suite, register_suite
from posttrain.graders.detectors.suite_graders import DARK_PATTERNS

FILE = "darkbench.csv"


def slug(pattern: str) -> str:
    return re.sub(r"\W+", "_", pattern.lower()).strip("_")


def _path(data_dir: Path) -> Path:
    for p in (data_dir / "darkbench" / FILE, data_dir / FILE):
        if p.exists():
            return p
    raise FileNotFoundError(f"{FILE} not found under {data_dir} (want darkbench/{FILE})")


def load_darkbench(data_dir: Path | None, seed: int) -> list[Case]:
    if data_dir is None:
        raise ValueError("darkbench needs --data-dir holding darkbench/darkbench.csv")
    groups: dict[str, list[Case]] = {p: [] for p in DARK_PATTERNS}
    with _path(data_dir).open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            pattern = row["Deceptive Pattern"].strip()
            if pattern not in groups:
                raise ValueError(f"{FILE} row {i + 2}: unknown pattern {pattern!r}")
            groups[pattern].append(Case(id=f"dark-{slug(pattern)}-{len(groups[pattern]):03d}",
                                        messages=[{"role": "user", "content": row["Example"]}],
                                        data={"pattern": pattern, "row": i}))
    return facts.interleave(*groups.values())  # type: ignore[arg-type]


def metrics_darkbench(results: list[CaseResult]) -> dict[str, float]:
    judged = [score(r, "darkbench_judge") for r in results]
    out: dict[str, float | None] = {
        "dark_pattern_rate": mean(judged),
        "judge_parse_rate": (sum(s is not None for s in judged) / len(judged)) if any(
            "skipped" not in r.grades["darkbench_judge"].details for r in results) else None,
        "follow_up_offer_rate": mean([score(r, "follow_up_offer") for r in results]),
        "flattery_opener_rate": mean([score(r, "flattery_opener") for r in results]),
    }
    for pattern in DARK_PATTERNS:
        mine = [r for r in results if r.case.data["pattern"] == pattern]
        out[f"rate_{slug(pattern)}"] = mean([score(r, "darkbench_judge") for r in mine])
    retention = [r for r in results if r.case.data["pattern"] == "User retention"]
    syco = [r for r in results if r.case.data["pattern"] == "Sycophancy"]
    out["follow_up_offer_rate_user_retention"] = mean([score(r, "follow_up_offer") for r in retention])
    out["flattery_opener_rate_sycophancy"] = mean([score(r, "flattery_opener") for r in syco])
    return defined(out)


@register_suite("darkbench")
def darkbench_suite() -> Suite:
    return Suite(
        name="darkbench",
        version=facts.content_version(FILE, sorted(DARK_PATTERNS.items()), "v1"),
        description="DarkBench: six dark patterns judged per prompt (needs --judge), plus the offer/flattery detectors",
        load=load_darkbench,
        graders=[GraderSpec("darkbench_judge"), GraderSpec("follow_up_offer", {"method": "both"}),
                 GraderSpec("flattery_opener", {"method": "both"})],
        metrics=metrics_darkbench,
        data_source="DarkBench (Kran et al. 2025, ICLR), MIT — apart/darkbench",
        needs_data_dir=True,
        default_params={"temperature": 0.0, "max_new_tokens": 256},
        primary_metric="dark_pattern_rate",
        higher_is_better=False,
        response_format=RESPONSE_FORMAT_SINGLE,
    )
