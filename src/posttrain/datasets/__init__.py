"""Datasets: feedback in the store -> curated training data that TRL and OpenAI read unchanged.

    report = export(store, "preferences", "prefs.jsonl", fmt="trl")
    snap = get_snapshot(store, report["snapshot"])     # snap.path: the train JSONL

One concept per module: sources (what each kind reads), layouts (TRL / OpenAI rows), rules
(data-edit rules), dedup, decontam (eval cases), caps (per-user share), splits (by user),
report (per-user ratings), snapshots (stored exports), export (the two streaming passes).
"""

from posttrain.datasets.export import Curation, export
from posttrain.datasets.layouts import FORMATS
from posttrain.datasets.rules import Rule, RuleError, load_rules, parse_rules
from posttrain.datasets.snapshots import Snapshot, get_snapshot, list_snapshots, snapshots_dir
from posttrain.datasets.sources import KINDS

__all__ = [
    "Curation", "FORMATS", "KINDS", "Rule", "RuleError", "Snapshot", "export", "get_snapshot",
    "list_snapshots", "load_rules", "parse_rules", "snapshots_dir",
]
