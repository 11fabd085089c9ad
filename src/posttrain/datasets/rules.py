"""Data-edit rules: a TOML file of `drop` and `rewrite` rules applied to every row at export.

    [[rule]]
    name = "as-an-ai"                 # unique; the report counts rows per rule name
    action = "rewrite"                # or "drop"
    pattern = "As an AI language model, "
    regex = false                     # default false: `pattern` is a literal phrase
    ignore_case = true                # default false
    replace = ""                      # rewrite only (regex rules may use \\1 groups)
    target = "answer"                 # default "answer"; also "rejected", "answers", "prompt"

    [[rule]]
    name = "offer-to-continue"
    action = "drop"
    pattern = '(?i)(let me know if|would you like me to)[^.?!]*[.?!]?\\s*$'
    regex = true

Targets: "answer" is what the row teaches the model to say (the sft answer, the chosen answer
of a preference pair, a kto completion with label true, a prompts reference); "rejected" the
other side (a pair's rejected answer, a kto completion with label false); "answers" both;
"prompt" the user turns. A drop rule drops a row when its pattern occurs in any target text; a
rewrite rule replaces every occurrence. Rules run in file order; a row dropped by one rule is
counted for that rule only.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from posttrain.datasets.sources import Example

ACTIONS = ("drop", "rewrite")
TARGETS = ("answer", "rejected", "answers", "prompt")
_KEYS = {"name", "action", "pattern", "regex", "ignore_case", "replace", "target"}


class RuleError(ValueError):
    """The rules file is wrong; str(exc) names the rule and the field."""


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    pattern: str
    regex: bool = False
    ignore_case: bool = False
    replace: str = ""
    target: str = "answer"

    def compiled(self) -> re.Pattern[str]:
        flags = re.IGNORECASE if self.ignore_case else 0
        return re.compile(self.pattern if self.regex else re.escape(self.pattern), flags)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_rules(data: dict[str, Any], where: str = "rules") -> list[Rule]:
    """Rules from a decoded TOML document (`[[rule]]` tables)."""
    unknown = [k for k in data if k != "rule"]
    if unknown:
        raise RuleError(f"{where}: unknown top-level key {unknown[0]!r}; write rules as [[rule]] tables")
    raw = data.get("rule", [])
    if not isinstance(raw, list):
        raise RuleError(f"{where}: 'rule' must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    for i, r in enumerate(raw):
        label = f"{where}: rule {i + 1}"
        if not isinstance(r, dict):
            raise RuleError(f"{label}: must be a table")
        extra = sorted(set(r) - _KEYS)
        if extra:
            raise RuleError(f"{label}: unknown field {extra[0]!r}; allowed: {', '.join(sorted(_KEYS))}")
        name = r.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RuleError(f"{label}: name: required (a non-empty string)")
        label = f"{where}: rule {name!r}"
        if any(x.name == name for x in rules):
            raise RuleError(f"{label}: name: used twice")
        if r.get("action") not in ACTIONS:
            raise RuleError(f"{label}: action: must be one of {', '.join(ACTIONS)}")
        if not isinstance(r.get("pattern"), str) or not r["pattern"]:
            raise RuleError(f"{label}: pattern: required (a non-empty string)")
        for key in ("regex", "ignore_case"):
            if key in r and not isinstance(r[key], bool):
                raise RuleError(f"{label}: {key}: must be true or false")
        if "replace" in r and (r["action"] != "rewrite" or not isinstance(r["replace"], str)):
            raise RuleError(f"{label}: replace: only for rewrite rules, a string")
        if r.get("target", "answer") not in TARGETS:
            raise RuleError(f"{label}: target: must be one of {', '.join(TARGETS)}")
        rule = Rule(name=name, action=r["action"], pattern=r["pattern"], regex=r.get("regex", False),
                    ignore_case=r.get("ignore_case", False), replace=r.get("replace", ""),
                    target=r.get("target", "answer"))
        try:
            rule.compiled()
        except re.error as exc:
            raise RuleError(f"{label}: pattern: not a valid regular expression ({exc})") from None
        rules.append(rule)
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    """Rules from a TOML file; RuleError (one line) when it is missing or wrong."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleError(f"--rules: {p} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"--rules: {p} is not valid TOML ({exc})") from None
    return parse_rules(data, where=str(p))


class RuleSet:
    """Applies rules to Examples and counts the rows each rule touched."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._compiled = [r.compiled() for r in rules]
        # A literal rule's replacement is literal too (no backslash-group expansion).
        self._repl = [r.replace if r.regex else (lambda _m, text=r.replace: text) for r in rules]
        self.touched = {r.name: 0 for r in rules}

    @staticmethod
    def _fields(ex: Example, target: str) -> list[str]:
        """The Example attributes a target names ("prompt" = its user turns)."""
        if target == "prompt":
            return ["prompt"]
        if ex.label is not None:  # kto: one completion, on the answer side when its label is true
            side = "answer" if ex.label else "rejected"
            return ["answer"] if target in (side, "answers") else []
        return {"answer": ["answer"], "rejected": ["rejected"], "answers": ["answer", "rejected"]}[target]

    @staticmethod
    def _texts(ex: Example, attr: str) -> list[str]:
        if attr == "prompt":
            return [m["content"] for m in ex.prompt if m["role"] == "user"]
        value = getattr(ex, attr)
        return [value] if isinstance(value, str) else []

    def apply(self, ex: Example) -> Example | None:
        """The example after every rule (rewritten in place), or None when a drop rule hit it."""
        for rule, pat, repl in zip(self.rules, self._compiled, self._repl):
            fields = self._fields(ex, rule.target)
            if rule.action == "drop":
                if any(pat.search(t) for f in fields for t in self._texts(ex, f)):
                    self.touched[rule.name] += 1
                    return None
                continue
            changed = False
            for f in fields:
                if f == "prompt":
                    for m in ex.prompt:
                        if m["role"] == "user":
                            new = pat.sub(repl, m["content"])
                            changed |= new != m["content"]
                            m["content"] = new
                elif isinstance(getattr(ex, f), str):
                    new = pat.sub(repl, getattr(ex, f))
                    changed |= new != getattr(ex, f)
                    setattr(ex, f, new)
            self.touched[rule.name] += changed
        return ex
