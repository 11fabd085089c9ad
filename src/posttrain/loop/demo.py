"""The demo's stages: the whole loop rehearsed on the embedded model with simulated users.

serve -> simulate -> export -> reward -> train-naive -> train-guarded -> evaluate -> gate -> report

Each stage calls the Python API of its part (posttrain.datasets, .reward, .train, .gate,
.arena); a part missing from this build makes its stage "unavailable" (see stages.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from posttrain.loop import steps
from posttrain.loop.stages import Context, Stage

__all__ = ["demo_settings", "demo_stages"]

# Sizes per mode. smoke: the CI check that every stage runs (tiny model, a few steps); quick:
# the real outcome; full: the same with more users and longer answers. Both candidates train the
# same number of steps with the same settings (steps.DPO_CONFIG). The first sizes (12 users,
# 16 naive steps at lr 2e-4, 3 GRPO steps) gave 18 pairs and a naive candidate that had not
# learned to flatter (offer 3/24 vs 1/24, flattery 0/24 vs 0/24): too little data and too few
# steps. The personas, their shares and their judgements are unchanged since.
MODES: dict[str, dict[str, Any]] = {
    "smoke": {"users": 4, "conversations": 2, "train_steps": 2, "max_tokens": 24, "gate_limit": 4,
              "audit_n": 16, "concurrency": 4},
    "quick": {"users": 16, "conversations": 2, "train_steps": 32, "max_tokens": 48, "gate_limit": None,
              "audit_n": 48, "concurrency": 8},
    "full": {"users": 32, "conversations": 3, "train_steps": 48, "max_tokens": 80, "gate_limit": None,
             "audit_n": 120, "concurrency": 8},
}


def demo_settings(mode: str, *, seed: int = 0, data_dir: str | None = None, base_path: str | None = None,
                  personas: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The settings of a demo run (stored in state.json; a resumed run must match them)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    s = {"mode": mode, "seed": seed, "data_dir": data_dir, "base_path": base_path, "personas": personas,
         **MODES[mode]}
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def _base(ctx: Context) -> str:
    return "demo-base" if ctx.settings.get("base_path") else "smollm2-135m"


def _store(ctx: Context) -> Any:
    return ctx.store(steps.db_url(ctx.out))


# -- stages ------------------------------------------------------------------------------------


def stage_serve(ctx: Context) -> dict[str, Any]:
    """A fresh home with a SQLite store, the product's two arms, the simulated users' accounts,
    and a real `posttrain serve` subprocess."""
    from posttrain.models.registry import ensure_default_models, list_models, register_model
    from posttrain.simulate import load_personas, register_arms
    from posttrain.store.users import add_user

    store = _store(ctx)
    ensure_default_models(store)
    base_path = ctx.settings.get("base_path")
    if base_path and "demo-base" not in {m.name for m in list_models(store)}:
        register_model(store, "demo-base", "local", {"path": base_path})
    cfg = load_personas(ctx.settings.get("personas"))
    arms = register_arms(store, cfg.arms, path=base_path)
    keys_path = ctx.path("home", "keys.json")
    keys = json.loads(keys_path.read_text()) if keys_path.exists() else {}
    for i in range(ctx.settings["users"]):
        name = f"sim-{i:03d}"
        if name not in keys:
            _, keys[name] = add_user(store, name)
    keys_path.write_text(json.dumps(keys, indent=1))
    os.chmod(keys_path, 0o600)
    server = steps.ensure_server(ctx)
    return {"url": server.url, "db": steps.db_url(ctx.out), "home": str(ctx.out / "home"), "arms": arms,
            "users": len(keys), "base": _base(ctx), "log": str(server.log_path)}


def stage_simulate(ctx: Context) -> dict[str, Any]:
    from posttrain.simulate import load_personas, run

    server = steps.ensure_server(ctx)
    keys = json.loads((ctx.out / "home" / "keys.json").read_text())
    names = sorted(keys)[: ctx.settings["users"]]
    cfg = load_personas(ctx.settings.get("personas"))
    cfg = steps.with_max_tokens(cfg, ctx.settings["max_tokens"])
    done_path = ctx.path("simulate", "users.jsonl")
    done = [json.loads(line) for line in done_path.read_text().splitlines()] if done_path.exists() else []

    def finished(user: dict[str, Any]) -> None:  # appended as each user ends: a kill loses one user's work at most
        with done_path.open("a") as f:
            f.write(json.dumps(user) + "\n")

    summary = run(server.url, [keys[n] for n in names], cfg, ctx.settings["users"], ctx.settings["conversations"],
                  ctx.settings["seed"], data_dir=ctx.settings.get("data_dir"), done_users={u["user"] for u in done},
                  concurrency=ctx.settings.get("concurrency", 2),
                  on_user_done=finished, progress=ctx.log)
    ctx.resources.pop("server").close()  # later stages write the store from this process
    users = [json.loads(line) for line in done_path.read_text().splitlines()]
    summary.pop("user_results", None)
    summary["all_users"] = steps.totals(users)
    return summary


def stage_export(ctx: Context) -> dict[str, Any]:
    return steps.export_all(_store(ctx), ctx)


def stage_reward(ctx: Context) -> dict[str, Any]:
    return steps.reward(_store(ctx), ctx, name="demo-rm")


def stage_train_naive(ctx: Context) -> dict[str, Any]:
    return steps.train_naive(_store(ctx), ctx, base=_base(ctx), name="demo-naive")


def stage_train_guarded(ctx: Context) -> dict[str, Any]:
    return steps.train_guarded(_store(ctx), ctx, base=_base(ctx), name="demo-guarded", rm="demo-rm")


def _candidates(ctx: Context) -> list[str]:
    return [r["model"] for r in (ctx.result("train-naive"), ctx.result("train-guarded")) if r]


def stage_evaluate(ctx: Context) -> dict[str, Any]:
    return steps.evaluate(_store(ctx), ctx, baseline=_base(ctx), candidates=_candidates(ctx))


def stage_gate(ctx: Context) -> dict[str, Any]:
    return steps.gate_all(_store(ctx), ctx, baseline=_base(ctx), candidates=_candidates(ctx))


def stage_report(ctx: Context) -> dict[str, Any]:
    from posttrain.loop.report import write_reports

    return write_reports(_store(ctx), ctx, baseline=_base(ctx))


def demo_stages() -> list[Stage]:
    return [
        Stage("serve", stage_serve, title="start posttrain serve on SQLite in a fresh home"),
        Stage("simulate", stage_simulate, needs=("serve",), requires=("posttrain.simulate",),
              title="simulated users chat, compare and rate"),
        Stage("export", stage_export, needs=("simulate",), requires=("posttrain.datasets",),
              title="curate the datasets (export report)"),
        Stage("reward", stage_reward, needs=("export",), requires=("posttrain.reward",),
              title="train a reward model on thumbs and picks, and audit it"),
        Stage("train-naive", stage_train_naive, needs=("export",), requires=("posttrain.train",),
              title="train the naive candidate (DPO on the users' picks and thumbs alone)"),
        Stage("train-guarded", stage_train_guarded, needs=("export",), requires=("posttrain.train",),
              title="train the guarded candidate (DPO on the same pairs judged by the reward mix)"),
        Stage("evaluate", stage_evaluate, needs=("serve",), requires=("posttrain.evals",),
              title="evaluate the baseline and the candidates"),
        Stage("gate", stage_gate, needs=("evaluate",), requires=("posttrain.gate",),
              title="gate both candidates (scripted reviewer)"),
        Stage("report", stage_report, needs=("serve",), title="write report.json and report.html"),
    ]


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    """The short summary printed at the end of `posttrain demo`."""
    lines = [f"baseline: {report['baseline']}"]
    for c in report["candidates"]:
        gate = c.get("gate") or {}
        if gate.get("passed") is None:
            verdict = gate.get("note", "not gated")
        elif gate["passed"]:
            verdict = "PASSED the gate"
        else:
            names = ", ".join(b["metric"] for b in gate.get("blocking", [])) or gate.get("reason", "")
            verdict = f"BLOCKED by the gate: {names}"
        lines.append(f"{c['name']} ({c['recipe']}): {verdict}")
    for s in report["stages"]:
        if s.get("status") != "done":
            lines.append(s.get("reason") or f"stage {s['name']}: {s.get('status')}")
    lines.append(f"report: {out / 'report.html'} (and report.json)")
    return lines
