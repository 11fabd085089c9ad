"""The release gate: paired non-inferiority tests on every policy metric with Holm's correction,
power per metric, Goodhart/dominance alarms from lineage, independent second measurements of
trained-against properties, replay of real traffic, and a blind human review.

    from posttrain.gate import run_gate, submit_review
    result = run_gate(store, "candidate", "smollm2-135m")        # the `gate --json` shape
    submit_review(store, result["decision_id"], "alice", verdicts)

Names resolve on first use so `import posttrain.gate` stays light (the CLI's help, the server).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_gate": "run", "submit_review": "review", "prepare_items": "review",
    "gate_status": "decision", "show_decision": "decision", "list_decisions": "decision",
    "result_of": "decision", "wait_for_review": "decision",
    "load_policy": "policy", "parse_policy": "policy", "Policy": "policy", "PolicyError": "policy",
    "DEFAULT_POLICY": "policy", "holm": "stats", "noninferiority_p": "stats",
    "min_detectable_regression": "stats", "cases_needed": "stats",
    "render_report": "report", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'posttrain.gate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"posttrain.gate.{_EXPORTS[name]}"), name)
