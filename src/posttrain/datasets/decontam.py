"""Decontamination: rows whose prompt matches a case of any eval suite are dropped, so training
never sees the test.

What counts as a match: a user turn of the row's prompt whose normalized text equals the
normalized text of a user message of a case (its `messages`, not its scripted follow-ups such
as "Are you sure?", which are not the test). Normalized = lowercased, punctuation dropped,
whitespace runs collapsed (evals.mine.normalize_prompt), so "What is 494 + 64?" matches
"what is 494  64". Case turns under MIN_CHARS normalized characters ("hi") are ignored: they
identify no case. A prompt that contains a case's text inside a longer message is not a match.

Which cases: every built-in suite (loaded for seed 0 and for every seed a recorded eval run of
it used, since generated suites draw their cases from the seed), every mined suite stored in
the store, and the suites that need public data when `eval_data_dirs` are given (each suite is
tried with each folder and with its `<folder>/<suite name>` subfolder). Suites that could not be
loaded are listed in the report (`decontamination.unchecked`), never silently skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.datasets.sources import Example
from posttrain.evals.mine import normalize_prompt
from posttrain.store import datasets as q
from posttrain.store._store import Store

MIN_CHARS = 8


def _norm(text: str) -> str:
    return normalize_prompt([{"role": "user", "content": text}])


class EvalIndex:
    """Normalized user turns of every eval case; `hit(ex)` tells whether a row matches one."""

    def __init__(self) -> None:
        self.texts: set[str] = set()
        self.suites: dict[str, int] = {}  # suite -> cases indexed
        self.unchecked: dict[str, str] = {}  # suite -> why it could not be loaded

    def add_case(self, suite: str, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                t = _norm(m["content"])
                if len(t) >= MIN_CHARS:
                    self.texts.add(t)
        self.suites[suite] = self.suites.get(suite, 0) + 1

    def hit(self, ex: Example) -> bool:
        return any(m.get("role") == "user" and _norm(m["content"]) in self.texts for m in ex.prompt)

    def summary(self) -> dict[str, Any]:
        return {"suites": dict(sorted(self.suites.items())), "prompts": len(self.texts),
                "unchecked": dict(sorted(self.unchecked.items()))}


def build_index(store: Store, eval_data_dirs: list[str | Path] | tuple = ()) -> EvalIndex:
    """The index over every suite's cases (see the module docstring)."""
    from posttrain.evals import builtin  # noqa: F401  (registers the built-in suites)
    from posttrain.evals.suite import get_suite, suite_names
    from posttrain.store import evals as eval_queries

    index = EvalIndex()
    with store.session() as s:
        seeds = q.eval_seeds(s)
    dirs = [Path(d) for d in eval_data_dirs]
    for name in suite_names():
        try:
            suite = get_suite(name)
        except Exception as exc:  # one broken suite must not hide the others
            index.unchecked[name] = f"{type(exc).__name__}: {exc}"
            continue
        folders: list[Path | None] = [None]
        if suite.needs_data_dir:
            folders = [f for d in dirs for f in (d, d / name) if f.is_dir()]
            if not folders:
                index.unchecked[name] = "needs public data: pass --eval-data-dir"
                continue
        loaded, errors = False, []
        for seed in sorted({0} | seeds.get(name, set())):
            for folder in folders:
                try:
                    cases = suite.load(folder, seed)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                loaded = True
                for case in cases:
                    index.add_case(name, case.messages)
        if not loaded:
            index.unchecked[name] = errors[0][:300] if errors else "no cases"
    for meta in eval_queries.list_suite_meta(store, source="mined"):
        full = eval_queries.get_suite_meta(store, meta["name"], with_cases=True) or {}
        for case in full.get("cases") or []:
            index.add_case(meta["name"], case.get("messages", []))
    return index
