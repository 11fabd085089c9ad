"""`export`: feedback in the store -> a curated, split, stored dataset snapshot.

Two streaming passes, so memory holds one batch of rows, a digest per kept row and the set of
users and conversations, never the events themselves:
1. stream the kind's candidate rows (datasets/sources.py) from the store; drop rows of users
   without consent, apply the data-edit rules, drop rows matching an eval case, drop exact then
   near duplicates; spool the survivors to a file and count them per user;
2. compute the per-user cap, re-read the spool, keep each user's rows up to the cap, send each
   row to train or test by its user, write the layout and hash the bytes as they are written.
The files then move to $POSTTRAIN_HOME/snapshots/<hash>/, the snapshot is stored with the users
whose rows it holds, and `out` gets a copy (`out` and `<out stem>.test<suffix>`).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from posttrain.datasets import caps, layouts, splits
from posttrain.datasets.dedup import DEFAULT_THRESHOLD, ExactDedup, NearDedup
from posttrain.datasets.rules import Rule, RuleSet, load_rules
from posttrain.datasets.snapshots import ContentHash, snapshots_dir, store_snapshot
from posttrain.datasets.sources import KINDS, Example, examples
from posttrain.ids import new_id
from posttrain.store._store import Store


@dataclass
class Curation:
    """The curation settings (keyword arguments of `export`)."""

    max_user_share: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    dedup: bool = True
    near_duplicates: bool = True
    near_dup_threshold: float = DEFAULT_THRESHOLD
    decontaminate: bool = True
    eval_data_dirs: tuple[str, ...] = ()

    @classmethod
    def of(cls, options: dict[str, Any]) -> "Curation":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown curation option; known: {', '.join(sorted(known))}")
        c = cls(**options)
        c.eval_data_dirs = tuple(str(d) for d in c.eval_data_dirs)
        caps.user_cap({}, c.max_user_share)  # validates the share
        splits.side("x", c.test_fraction)  # validates the fraction
        if not 0 < c.near_dup_threshold <= 1:
            raise ValueError("near_dup_threshold: must be in (0, 1]")
        return c


def _aware(dt: datetime | str | None, name: str) -> datetime | None:
    if dt is None:
        return None
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}: not a date (use YYYY-MM-DD or an ISO 8601 time)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _rules(rules: str | Path | list[Rule] | None) -> tuple[list[Rule], str | None]:
    if rules is None:
        return [], None
    if isinstance(rules, (str, Path)):
        return load_rules(rules), str(rules)
    return list(rules), None


def _has_user_turn(ex: Example) -> bool:
    return any(m.get("role") == "user" and m.get("content", "").strip() for m in ex.prompt)


def export(
    store: Store, kind: str, out: str | Path | None, *, fmt: str = "trl", since: datetime | str | None = None,
    until: datetime | str | None = None, rules: str | Path | list[Rule] | None = None,
    personalization: bool = True, **curation: Any,
) -> dict[str, Any]:
    """Export `kind` (sft, preferences, kto, prompts, feedback) as a stored snapshot; return
    the report {"snapshot", "rows", "excluded": {"no_consent", "duplicates", "capped",
    "contaminated", "rules": {name: rows dropped}}, "users", "splits", "path", ...}.
    Curation keywords: see `Curation`. ValueError (one line, naming the field) on bad input."""
    started = time.monotonic()
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}")
    layouts.check_format(kind, fmt)
    opts = Curation.of(curation)
    since_dt, until_dt = _aware(since, "since"), _aware(until, "until")
    rule_list, rules_file = _rules(rules)
    raw = kind == "feedback"  # every event as stored: consent and time window only
    ruleset = RuleSet([] if raw else rule_list)
    if raw and rule_list:
        raise ValueError("rules: feedback is exported as stored; rules apply to the other kinds")

    from posttrain.datasets.decontam import build_index
    from posttrain.datasets.report import rating_report

    index = build_index(store, opts.eval_data_dirs) if opts.decontaminate and not raw else None
    exact = ExactDedup() if opts.dedup and not raw else None
    near = NearDedup(opts.near_dup_threshold) if opts.dedup and opts.near_duplicates and not raw else None

    excluded = {"no_consent": 0, "duplicates": 0, "capped": 0, "contaminated": 0, "no_user_turn": 0}
    candidates = 0
    per_user: dict[str, int] = {}
    work = snapshots_dir() / f".tmp-{new_id()}"
    work.mkdir()
    try:
        spool_path = work / "spool.pickle"
        with open(spool_path, "wb") as spool:
            # pickle, not JSON: the spool is private to this export and read back once, and
            # pickle is several times faster both ways. One pickle per row (a shared Pickler's
            # memo would grow with the export).

            def keep(batch: list[Example]) -> None:
                for ex in batch:
                    per_user[ex.user_id] = per_user.get(ex.user_id, 0) + 1
                    pickle.dump(ex.to_json(), spool, protocol=pickle.HIGHEST_PROTOCOL)

            with store.session() as s:
                for ex in examples(s, kind, since=since_dt, until=until_dt, personalization=personalization):
                    candidates += 1
                    if not ex.consent:
                        excluded["no_consent"] += 1
                        continue
                    if not raw and not _has_user_turn(ex):
                        excluded["no_user_turn"] += 1
                        continue
                    if ruleset.apply(ex) is None:
                        continue
                    if index is not None and index.hit(ex):
                        excluded["contaminated"] += 1
                        continue
                    if exact is not None and exact.seen(ex):
                        excluded["duplicates"] += 1
                        continue
                    keep(near.add(ex) if near is not None else [ex])
            if near is not None:
                keep(near.flush())
                excluded["duplicates"] += near.removed
        cap = None if raw else caps.user_cap(per_user, opts.max_user_share)
        report = _write(store, kind, fmt, work, spool_path, cap, opts, raw, excluded)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    rule_rows = [{**r.to_dict(), "touched": ruleset.touched[r.name]} for r in ruleset.rules]
    warnings = []
    if cap == 0 and per_user:
        warnings.append(f"per-user cap is 0: {len(per_user)} user(s) cannot each stay under "
                        f"max_user_share={opts.max_user_share}; raise it (e.g. --max-user-share 1)")
    if index is not None and index.unchecked:
        warnings.append("decontamination skipped suites: " + ", ".join(sorted(index.unchecked)))
    report.update({
        "excluded": {**excluded, "rules": {r.name: ruleset.touched[r.name] for r in ruleset.rules if r.action == "drop"}},
        "candidates": candidates,
        "duplicates": {"exact": excluded["duplicates"] - (near.removed if near else 0),
                       "near": near.removed if near else 0, "near_threshold": opts.near_dup_threshold if near else None},
        "cap": {"max_user_share": opts.max_user_share, "per_user": cap},
        "rules": rule_rows,
        "decontamination": index.summary() if index is not None else None,
        "filters": {"since": since_dt.isoformat() if since_dt else None, "until": until_dt.isoformat() if until_dt else None,
                    "personalization": personalization, "rules_file": rules_file, **asdict(opts)},
        "ratings": rating_report(store, since_dt, until_dt) if kind != "prompts" else None,
        "warnings": warnings,
    })
    report["existing"] = not store_snapshot(store, report, report.pop("_users"))
    report["seconds"] = round(time.monotonic() - started, 3)
    if out is not None:
        _copy_out(report, Path(out))
    return report


def _write(store: Store, kind: str, fmt: str, work: Path, spool_path: Path, cap: int | None,
           opts: Curation, raw: bool, excluded: dict[str, int]) -> dict[str, Any]:
    """Pass 2: cap, split, write the layout; move the files to snapshots/<hash>/."""
    taken: dict[str, int] = {}
    check = splits.SplitCheck()
    files = {"train": open(work / "train.jsonl", "wb"), "test": open(work / "test.jsonl", "wb")}
    try:
        with open(spool_path, "rb") as spool:
            while True:
                try:
                    ex = Example.from_json(pickle.load(spool))
                except EOFError:
                    break
                if cap is not None and taken.get(ex.user_id, 0) >= cap:
                    excluded["capped"] += 1
                    continue
                taken[ex.user_id] = taken.get(ex.user_id, 0) + 1
                where = "train" if raw else splits.side(ex.user_id, opts.test_fraction, opts.split_seed)
                check.add(where, ex.user_id, ex.conversations)
                files[where].write((json.dumps(layouts.row(ex, kind, fmt), ensure_ascii=False) + "\n").encode("utf-8"))
    finally:
        for f in files.values():
            f.close()
    split_summary = check.verify()
    digest = ContentHash(kind, fmt)
    for name in ("train", "test"):
        with open(work / f"{name}.jsonl", "rb") as f:
            digest.update(f"\0{name}\0".encode())
            digest.file(f)
    snapshot = digest.hexdigest()
    os.remove(spool_path)
    if check.rows["test"] == 0:
        os.remove(work / "test.jsonl")
    final = snapshots_dir() / snapshot
    if final.exists():  # the same content was exported before: keep the first copy
        shutil.rmtree(work)
    else:
        work.rename(final)
    test_path = final / "test.jsonl" if check.rows["test"] else None
    return {
        "snapshot": snapshot, "kind": kind, "format": fmt,
        "rows": check.rows["train"] + check.rows["test"], "users": len(taken),
        "splits": split_summary, "path": str(final / "train.jsonl"),
        "test_path": str(test_path) if test_path else None, "_users": taken,
    }


def _copy_out(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report["path"], out)
    report["out"] = str(out)
    if report["test_path"]:
        test_out = out.with_name(f"{out.stem}.test{out.suffix or '.jsonl'}")
        shutil.copyfile(report["test_path"], test_out)
        report["test_out"] = str(test_out)
