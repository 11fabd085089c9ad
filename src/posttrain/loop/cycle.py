"""`posttrain loop`: the demo's stages against a running deployment's store, one cycle at a time.

A cycle: export the window's snapshots, train the configured recipes from the production model,
evaluate (with the north-star suite the previous cycle mined), gate each candidate against
production (the human review stays with people: a passing candidate waits for it), mine a fresh
north-star suite from the window's feedback for the next cycle, start an A/B for a candidate
whose gate passed (never promote), and record the cycle. Cycles live in
STATE_DIR/cycles/<id>/ (state.json, report.json); STATE_DIR/cycles.jsonl lists finished ones.
A cycle that was killed is resumed by the next start, with the settings it began with.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from posttrain.loop import steps
from posttrain.loop.stages import DONE, Context, Stage, load_state, open_state, run_stages, stage_summary

__all__ = ["load_loop_config", "parse_every", "run_cycle", "run_forever"]

EXPORT_KINDS = ("preferences", "prompts", "sft", "kto")
METHODS = ("sft", "dpo", "kto", "grpo")


def parse_every(text: str) -> float:
    """'7d', '12h', '30m', '45s' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", text or "")
    if not m:
        raise ValueError(f"--every: use a number and a unit d, h, m or s (e.g. 7d), got {text!r}")
    return float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[m.group(2)]


def load_loop_config(path: str | Path) -> dict[str, Any]:
    """Read and validate loop.toml (docs/loop.md); errors name the field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"loop config not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    known = {"db", "state_dir", "production", "window_days", "policy", "gate_limit", "north_star", "data_dir",
             "ab", "recipe", "export"}
    extra = sorted(set(raw) - known)
    if extra:
        raise ValueError(f"{extra[0]}: unknown key (known: {', '.join(sorted(known))})")
    base = path.resolve().parent
    cfg: dict[str, Any] = {
        "db": raw.get("db") or None,
        "state_dir": str((base / raw.get("state_dir", "loop-state")).resolve()),
        "production": raw.get("production", "smollm2-135m"),
        "window_days": raw.get("window_days", 7),
        "policy": str((base / raw["policy"]).resolve()) if raw.get("policy") else None,
        "gate_limit": raw.get("gate_limit") or None,
        "north_star": raw.get("north_star", "north-star"),
        "data_dir": str((base / raw["data_dir"]).resolve()) if raw.get("data_dir") else None,
        "ab": {"start": True, "share": 0.1, **(raw.get("ab") or {})},
        "export": dict(raw.get("export") or {}),  # curation options of posttrain.datasets.export
        "recipes": [],
    }
    if not isinstance(cfg["window_days"], (int, float)) or cfg["window_days"] <= 0:
        raise ValueError("window_days: must be a positive number")
    for i, r in enumerate(raw.get("recipe") or []):
        where = f"recipe[{i}]"
        if not isinstance(r.get("name"), str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", r.get("name", "")):
            raise ValueError(f"{where}.name: required, lowercase letters, digits and '-'")
        if r.get("method") not in METHODS:
            raise ValueError(f"{where}.method: must be one of {', '.join(METHODS)}")
        if r.get("data", "preferences") not in EXPORT_KINDS:
            raise ValueError(f"{where}.data: must be one of {', '.join(EXPORT_KINDS)}")
        extra = sorted(set(r) - {"name", "method", "data", "max_steps", "config", "allow_flagged"})
        if extra:
            raise ValueError(f"{where}.{extra[0]}: unknown key")
        cfg["recipes"].append({"name": r["name"], "method": r["method"], "data": r.get("data", "preferences"),
                               "max_steps": r.get("max_steps"), "config": dict(r.get("config") or {}),
                               "allow_flagged": bool(r.get("allow_flagged", False))})
    if not cfg["recipes"]:
        raise ValueError("recipe: at least one [[recipe]] is required")
    if len({r["name"] for r in cfg["recipes"]}) != len(cfg["recipes"]):
        raise ValueError("recipe.name: names must be unique")
    return cfg


# -- stages --------------------------------------------------------------------------------------


def _store(ctx: Context) -> Any:
    return ctx.store(ctx.settings["config"]["db"])


def _since(ctx: Context) -> datetime:
    return datetime.fromisoformat(ctx.settings["since"])


def stage_mine(ctx: Context) -> dict[str, Any]:
    from dataclasses import asdict

    from posttrain.evals.mine import mine

    try:
        summary = mine(_store(ctx), name=ctx.settings["config"]["north_star"], since=_since(ctx))
    except ValueError as exc:  # nothing to mine in the window is an outcome, not a failure
        if "no feedback" not in str(exc):
            raise
        return {"n_cases": 0, "note": str(exc)}
    return asdict(summary)


def stage_export(ctx: Context) -> dict[str, Any]:
    export = steps.api("posttrain.datasets", "export")
    store = _store(ctx)
    out = {}
    for kind in sorted({r["data"] for r in ctx.settings["config"]["recipes"]}):
        out[kind] = export(store, kind, str(ctx.path("data", f"{kind}.jsonl")), since=_since(ctx),
                           **ctx.settings["config"]["export"])
    return out


def _train_stage(recipe: dict[str, Any]) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        train_run = steps.api("posttrain.train", "run")
        store = _store(ctx)
        report = ctx.result("export")[recipe["data"]]
        if not report.get("rows"):
            raise ValueError(f"the {recipe['data']} export of this window has no rows: nothing to train on")
        train_rows = ((report.get("splits") or {}).get("train") or {}).get("rows", report["rows"])
        if not train_rows:  # every user of the window hashed to the test side
            raise ValueError(f"the {recipe['data']} export of this window has no train rows (all {report['rows']} "
                             "are test users'): nothing to train on; lower export.test_fraction or wait for more users")
        name = steps.unique_name(store, f"{recipe['name']}-{ctx.settings['cycle']}")
        info = train_run(recipe["method"], store=store, base=ctx.settings["config"]["production"], name=name,
                         snapshot=report["snapshot"], config=recipe["config"] or None, max_steps=recipe["max_steps"],
                         progress=True, allow_flagged=recipe["allow_flagged"])
        return {"model": info.name, "recipe": f"{recipe['name']}: {recipe['method']} on {recipe['data']}",
                "data_snapshot": info.data_snapshot, "train": (info.metrics or {}).get("train", {})}

    return run


def _candidates(ctx: Context) -> list[str]:
    return [r["model"] for r in (ctx.result(f"train:{x['name']}") for x in ctx.settings["config"]["recipes"]) if r]


def stage_evaluate(ctx: Context) -> dict[str, Any]:
    from posttrain.evals.mine import load_mined_suite

    name = ctx.settings["config"]["north_star"]
    extra = (name,) if load_mined_suite(_store(ctx), name) is not None else ()  # mined by the last cycle
    return steps.evaluate(_store(ctx), ctx, baseline=ctx.settings["config"]["production"], candidates=_candidates(ctx),
                          extra=extra)


def stage_gate(ctx: Context) -> dict[str, Any]:
    return steps.gate_all(_store(ctx), ctx, baseline=ctx.settings["config"]["production"],
                          candidates=_candidates(ctx), scripted_review=False)


def stage_ab(ctx: Context) -> dict[str, Any]:
    """Start an A/B for each candidate whose gate passed (numbers and human review). Never
    promotes: promotion is `posttrain ab promote`, by a person, after the A/B."""
    cfg = ctx.settings["config"]
    gates = ctx.result("gate") or {}
    passing = [c for c, g in gates.items() if g["result"].get("passed")]
    waiting = {c: g["result"].get("status") for c, g in gates.items() if not g["result"].get("passed")}
    if not passing or not cfg["ab"].get("start", True):
        return {"started": [], "waiting": waiting,
                "note": "no candidate passed the gate and its human review yet" if not passing else "ab.start is false"}
    start = steps.api("posttrain.experiments", "start")
    started = []
    for cand in passing:
        started.append(start(_store(ctx), f"loop-{ctx.settings['cycle']}-{cand}"[:100], baseline=cfg["production"],
                             candidate=cand, fraction=cfg["ab"]["share"], actor="posttrain loop"))
    return {"started": started, "waiting": waiting}


def stage_record(ctx: Context) -> dict[str, Any]:
    """What this cycle trained on, what the gate decided and why."""
    gates = ctx.result("gate") or {}
    trained = {}
    for r in ctx.settings["config"]["recipes"]:
        res = ctx.result(f"train:{r['name']}")
        trained[r["name"]] = {"model": res["model"], "snapshot": res["data_snapshot"]} if res else None
    record = {
        "cycle": ctx.settings["cycle"], "since": ctx.settings["since"], "production": ctx.settings["config"]["production"],
        "north_star": ctx.result("mine"), "trained": trained,
        "gate": {c: {"passed": g["result"].get("passed"), "status": g["result"].get("status"),
                     "decision_id": g["result"].get("decision_id"),
                     "blocking": [{"metric": b.get("metric"), "reason": b.get("reason")} for b in g["result"].get("blocking", [])]}
                 for c, g in gates.items()},
        "ab": ctx.result("ab"), "stages": stage_summary(ctx.state),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    ctx.path("report.json").write_text(json.dumps(record, indent=2, default=str))
    with (ctx.out.parent.parent / "cycles.jsonl").open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    return {"report": str(ctx.out / "report.json")}


def cycle_stages(cfg: dict[str, Any]) -> list[Stage]:
    trains = [Stage(f"train:{r['name']}", _train_stage(r), needs=("export",), requires=("posttrain.train",),
                    title=f"train {r['name']} ({r['method']} on {r['data']})") for r in cfg["recipes"]]
    # Order matters: mining turns every picked or corrected prompt of the window into a case, and
    # export drops prompts that match a mined case (decontamination). So the snapshot is taken
    # first, the candidates are gated on the north-star suite mined by the previous cycle (which
    # this export excluded), and the fresh suite mined here gates the next cycle.
    return [
        Stage("export", stage_export, requires=("posttrain.datasets",), title="export this window's snapshots"),
        *trains,
        Stage("evaluate", stage_evaluate, requires=("posttrain.evals",),
              title="evaluate production and the candidates (with the last north-star suite)"),
        Stage("gate", stage_gate, needs=("evaluate",), requires=("posttrain.gate",),
              title="gate each candidate against production"),
        Stage("mine", stage_mine, requires=("posttrain.evals",), title="mine a fresh north-star suite for the next cycle"),
        Stage("ab", stage_ab, needs=("gate",), title="start an A/B for a candidate that passed"),
        Stage("record", stage_record, title="record the cycle"),
    ]


def _latest_unfinished(state_dir: Path) -> Path | None:
    cycles = sorted((state_dir / "cycles").glob("*/state.json")) if (state_dir / "cycles").exists() else []
    for p in reversed(cycles):
        st = load_state(p.parent)
        return None if st and st.get("finished") else p.parent
    return None


def run_cycle(cfg: dict[str, Any], *, log: Callable[[str], None] = print, now: datetime | None = None) -> dict[str, Any]:
    """Run one cycle, or resume the last one if it did not finish; returns its state."""
    state_dir = Path(cfg["state_dir"])
    out = _latest_unfinished(state_dir)
    if out is not None:
        settings = load_state(out)["settings"]
        log(f"resuming cycle {settings['cycle']}")
    else:
        now = now or datetime.now(timezone.utc)
        cycle = now.strftime("%Y%m%dt%H%M%S")
        settings = {"cycle": cycle, "since": (now - timedelta(days=cfg["window_days"])).isoformat(), "config": cfg,
                    "gate_limit": cfg["gate_limit"], "policy": cfg["policy"], "data_dir": cfg["data_dir"],
                    "seed": 0, "mode": None}
        out = state_dir / "cycles" / cycle
        log(f"cycle {cycle}: feedback since {settings['since']}")
    ctx = Context(out=out, settings=settings, state=open_state(out, "loop-cycle", settings), log=log)
    state = run_stages(cycle_stages(settings["config"]), ctx)
    if state["stages"].get("record", {}).get("status") == DONE:
        state["finished"] = True
        from posttrain.loop.stages import save_state

        save_state(out, state)
    return state


def run_forever(cfg: dict[str, Any], every: float, *, log: Callable[[str], None] = print,
                cycles: int | None = None) -> None:
    """A cycle every `every` seconds (counted from each cycle's start); `cycles` bounds the count."""
    n = 0
    while cycles is None or n < cycles:
        t0 = time.monotonic()
        run_cycle(cfg, log=log)
        n += 1
        if cycles is not None and n >= cycles:
            return
        wait = max(0.0, every - (time.monotonic() - t0))
        log(f"next cycle in {wait / 3600:.1f} h")
        time.sleep(wait)
