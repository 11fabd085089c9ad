"""Turning stored eval runs into a gated metric's paired per-case values.

A metric reads one grader over one or more suites. When a suite ran that grader itself its stored
rows are used; otherwise the stored answers are graded again (`regrade`): a detector such as
`follow_up_offer` applies to every answer, so pooling the answers of several suites gives a metric
more cases, and so more power, at no generation cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from posttrain.evals.suite import Case, Suite
from posttrain.graders import Grade, get_grader
from posttrain.store import evals as q
from posttrain.store._store import Store


@dataclass
class SuiteRuns:
    """One suite run on both models (or why it could not be)."""

    suite: str
    base_run: str | None = None
    cand_run: str | None = None
    cases: dict[str, Case] = field(default_factory=dict)
    graders: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> args the suite ran
    error: str | None = None
    seconds: float = 0.0
    generated: int = 0
    cached: int = 0
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "base"/"cand" -> rows

    def load_rows(self, store: Store) -> None:
        if not self.rows and self.base_run and self.cand_run:
            self.rows = {"base": q.get_results(store, self.base_run), "cand": q.get_results(store, self.cand_run)}


def words(text: str) -> int:
    """Whitespace tokens containing a letter or digit (the verbosity grader's count)."""
    return sum(1 for w in text.split() if any(ch.isalnum() for ch in w))


def _value(g: Grade | dict[str, Any], kind: str) -> float | None:
    passed = g.passed if isinstance(g, Grade) else g["passed"]
    score = g.score if isinstance(g, Grade) else g["score"]
    if kind == "passed":
        return None if passed is None else float(bool(passed))
    return None if score is None else float(score)


def _view(case: Case, row: dict[str, Any]) -> dict[str, Any]:
    responses = (row.get("details") or {}).get("responses") or [row["response"]]
    transcript = [dict(m) for m in case.messages]
    for i, r in enumerate(responses):
        transcript.append({"role": "assistant", "content": r})
        if i < len(case.followups):
            transcript.append({"role": "user", "content": case.followups[i]})
    return {**case.data, "responses": list(responses), "messages": transcript}


def _first_row_per_case(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(r["case_id"], r)
    return out


def regrade(grader: str, args: dict[str, Any], case: Case, row: dict[str, Any]) -> Grade:
    """Grade a stored answer again with another grader (its errors become an empty grade).
    `detector:PROP` is a side-effect detector (`graders.detectors.detect`) with `args["method"]`."""
    try:
        if grader.startswith("detector:"):
            from posttrain.graders.detectors import detect

            prompt = next((m["content"] for m in reversed(case.messages) if m.get("role") == "user"), None)
            hit = detect(grader.split(":", 1)[1], row["response"], args.get("method", "both"), prompt)
            return Grade(float(hit), not hit, {"method": args.get("method")})
        g = get_grader(grader)(row["response"], _view(case, row), **args)
    except Exception as exc:  # one bad case must not sink the gate
        return Grade(None, None, {"error": f"{type(exc).__name__}: {exc}"})
    return g


def _matches(case: Case, where: dict[str, Any]) -> bool:
    return all(case.data.get(k) == v for k, v in where.items())


def paired_values(
    store: Store, runs: SuiteRuns, *, grader: str | None, args: dict[str, Any], value: str, where: dict[str, Any]
) -> tuple[list[str], list[float], list[float], bool]:
    """(case keys, baseline values, candidate values, regraded?) for one suite."""
    runs.load_rows(store)
    stored = value != "log_words" and grader in runs.graders and (not args or runs.graders[grader] == args)
    keys, base, cand = [], [], []
    if stored:
        ib = {r["case_id"]: r for r in runs.rows["base"] if r["grader"] == grader}
        ic = {r["case_id"]: r for r in runs.rows["cand"] if r["grader"] == grader}
        for cid in sorted(ib.keys() & ic.keys()):
            case = runs.cases.get(cid)
            if case is None or not _matches(case, where):
                continue
            vb, vc = _value(ib[cid], value), _value(ic[cid], value)
            if vb is not None and vc is not None:
                keys.append(f"{runs.suite}/{cid}")
                base.append(vb)
                cand.append(vc)
        return keys, base, cand, False
    ib, ic = _first_row_per_case(runs.rows["base"]), _first_row_per_case(runs.rows["cand"])
    for cid in sorted(ib.keys() & ic.keys()):
        case = runs.cases.get(cid)
        if case is None or not _matches(case, where):
            continue
        if value == "log_words":  # answer length: log(1 + words), no grader needed
            vb, vc = (math.log1p(words(ib[cid]["response"])), math.log1p(words(ic[cid]["response"])))
        else:
            vb = _value(regrade(grader, args, case, ib[cid]), value)
            vc = _value(regrade(grader, args, case, ic[cid]), value)
        if vb is not None and vc is not None:
            keys.append(f"{runs.suite}/{cid}")
            base.append(vb)
            cand.append(vc)
    return keys, base, cand, True


def suite_graders(suite: Suite) -> dict[str, dict[str, Any]]:
    return {g.name: dict(g.args) for g in suite.graders}


def as_arrays(base: list[float], cand: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
