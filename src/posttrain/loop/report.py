"""report.json and report.html of a rehearsal (or a loop cycle).

report.json holds at least {"baseline", "candidates": [{"name", "recipe", "gate": {"passed",
"blocking": [{"metric", "baseline", "candidate", "delta", "ci"}]}, "metrics"}], "stages":
[{"name", "seconds"}]}; a candidate whose stages did not run carries "available": false and the
sentence saying why, and "gate": {"passed": null}. The HTML is self-contained (inline SVG).
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from posttrain.loop.stages import Context, stage_summary
from posttrain.loop.steps import SCRIPTED_REVIEWER, leaderboard

__all__ = ["build_report", "render_html", "write_reports"]

CANDIDATES = (("train-naive", "demo-naive", "naive: dpo on the thumbs-derived pairs"),
              ("train-guarded", "demo-guarded", "guarded: dpo on the pairs judged by the reward mix"))


def _reason(ctx: Context, stage: str) -> str | None:
    rec = ctx.state["stages"].get(stage)
    if rec is None:
        return f"stage {stage}: did not run"
    return rec.get("reason") if rec.get("status") != "done" else None


def _gate_view(g: dict[str, Any] | None) -> dict[str, Any]:
    if not g:
        return {"passed": None, "blocking": []}
    r = g["result"]
    blocking = [{k: b.get(k) for k in ("metric", "baseline", "candidate", "delta", "ci", "margin", "p", "reason")}
                for b in r.get("blocking", [])]
    return {"passed": bool(r.get("passed")), "blocking": blocking, "decision_id": r.get("decision_id"),
            "status": r.get("status"), "reviewer": g.get("reviewer", SCRIPTED_REVIEWER),
            "review": "scripted: every review item approved, so only the numbers could block"}


def build_report(store: Any, ctx: Context, baseline: str) -> dict[str, Any]:
    ev = ctx.result("evaluate") or {}
    gates = ctx.result("gate") or {}
    candidates = []
    for stage, default, recipe in CANDIDATES:
        res = ctx.result(stage)
        if res is None:
            candidates.append({"name": default, "recipe": recipe, "available": False, "note": _reason(ctx, stage),
                               "gate": {"passed": None, "blocking": []}, "metrics": {}})
            continue
        name = res["model"]
        gate = _gate_view(gates.get(name))
        if name not in gates:
            gate["note"] = _reason(ctx, "gate") or "not gated"
        train = res.get("train") or {}
        candidates.append({
            "name": name, "recipe": res["recipe"], "available": True, "gate": gate,
            "metrics": {s: r["metrics"] for s, r in (ev.get("runs", {}).get(name) or {}).items()},
            "deltas": ev.get("deltas", {}).get(name, []),
            "train": {k: train.get(k) for k in ("method", "reward_mix", "trained_against", "attribution", "alarms",
                                                "reward_start", "reward_end", "loss_start", "loss_end", "steps", "allow_flagged",
                                                "seconds", "data", "judged_pairs")},
            "data_snapshot": res.get("data_snapshot"),
        })
    rm = ctx.result("reward")
    sim = ctx.result("simulate") or {}
    stages = stage_summary(ctx.state)
    for s in stages:
        if s["name"] == "report":
            s["status"] = "done"
    return {
        "baseline": baseline, "mode": ctx.settings.get("mode"), "candidates": candidates, "stages": stages,
        "reward_model": ({"name": rm["name"], "flagged": rm["flagged"], "audit": rm["audit"], "metrics": rm["metrics"]}
                         if rm else {"note": _reason(ctx, "reward")}),
        "leaderboard": leaderboard(store) if ctx.result("simulate") else None,
        "baseline_metrics": {s: r["metrics"] for s, r in (ev.get("runs", {}).get(baseline) or {}).items()},
        "simulation": {k: sim.get(k) for k in ("all_users", "arms", "personas", "pools", "seconds", "shared_account")},
        "export": ctx.result("export"),
        "not_available": [s["reason"] for s in stages if s["status"] in ("unavailable", "skipped", "failed")],
        "review": f"the gate's human review was taken by a {SCRIPTED_REVIEWER}",
    }


# -- HTML ----------------------------------------------------------------------------------------


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _n(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return "-" if v is None else _e(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_n(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _lines(steps: list[dict[str, Any]], title: str) -> str:
    """Every numeric series in the training log over steps, each scaled to its own range (so the
    reward and the counter-metrics share one chart); the legend gives each series' range."""
    keys = sorted({k for s in steps for k, v in s.items() if k != "step" and isinstance(v, (int, float))})
    if not steps or not keys:
        return "<p>No per-step log.</p>"
    w, h, pad = 640, 220, 30
    colours = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24"]
    xs = [s.get("step", i) for i, s in enumerate(steps)]
    x0, x1 = min(xs), max(xs) or 1
    parts = [f'<svg role="img" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>']
    legend = []
    for i, k in enumerate(keys[:7]):
        pts = [(x, s[k]) for x, s in zip(xs, steps) if isinstance(s.get(k), (int, float))]
        lo, hi = min(v for _, v in pts), max(v for _, v in pts)
        span = (hi - lo) or 1.0
        path = " ".join(f"{pad + (x - x0) / ((x1 - x0) or 1) * (w - 2 * pad):.1f},{h - pad - (v - lo) / span * (h - 2 * pad):.1f}"
                        for x, v in pts)
        parts.append(f'<polyline fill="none" stroke="{colours[i]}" stroke-width="2" points="{path}"/>')
        legend.append(f'<span style="color:{colours[i]}">&#9632; {_e(k)} [{lo:.3g}, {hi:.3g}]</span>')
    parts.append("</svg>")
    return "".join(parts) + "<p>" + " &nbsp; ".join(legend) + "</p>"


def render_html(report: dict[str, Any]) -> str:
    from posttrain.evals.report import forest_plot

    out = [f"<h1>posttrain rehearsal ({_e(report.get('mode'))})</h1>",
           f"<p>Baseline <b>{_e(report['baseline'])}</b>. {_e(report['review'])}.</p>"]
    for reason in report["not_available"]:
        out.append(f'<p class="warn">{_e(reason)}</p>')
    out.append("<h2>Candidates</h2>")
    out.append(_table(["candidate", "recipe", "gate", "blocking"], [
        [c["name"], c["recipe"], {True: "passed", False: "blocked", None: c.get("note") or c["gate"].get("note") or "-"}[c["gate"]["passed"]],
         ", ".join(b["metric"] for b in c["gate"]["blocking"])] for c in report["candidates"]]))
    for c in report["candidates"]:
        if not c.get("available"):
            continue
        out.append(f"<h2>{_e(c['name'])}</h2><p>{_e(c['recipe'])}</p>")
        if c["gate"]["blocking"]:
            out.append(_table(["blocking metric", "baseline", "candidate", "delta", "ci", "reason"],
                              [[b["metric"], b["baseline"], b["candidate"], b["delta"], json.dumps(b["ci"]), b.get("reason")]
                               for b in c["gate"]["blocking"]]))
        if c.get("deltas"):
            rows = [r for r in c["deltas"] if all(isinstance(x, (int, float)) for x in (r["delta"], *r["ci"]))]
            out.append("<h3>Per-metric deltas (candidate - baseline, 95% paired bootstrap)</h3>")
            out.append(forest_plot(rows, title=f"deltas of {c['name']}"))
        train = c.get("train") or {}
        att = train.get("attribution") or {}
        judged = train.get("judged_pairs")
        if judged and att.get("steps"):  # the reward mix judged the pairs before DPO trained on them
            out.append("<h3>The reward mix on the judged pairs, per chunk of four pairs</h3>")
            out.append(f"<p>{judged['agreed']} pairs agree with the user's pick, {judged['flipped']} flipped, "
                       f"{judged['dropped']} dropped; then {_e(train.get('method'))}: {_e(train.get('steps'))} steps, "
                       f"loss {_n(train.get('loss_start'))} &rarr; {_n(train.get('loss_end'))}.</p>")
            out.append(_lines(att["steps"], f"reward mix of {c['name']}"))
        elif att.get("steps"):
            out.append("<h3>Training reward beside the counter-metrics, over steps</h3>")
            out.append(_lines(att["steps"], f"training log of {c['name']}"))
        else:  # DPO logs no reward signals per step: its loss is the record
            out.append("<h3>Training reward beside the counter-metrics, over steps</h3>")
            out.append(f"<p>{_e(train.get('method'))}: {_e(train.get('steps'))} steps, loss {_n(train.get('loss_start'))} "
                       f"&rarr; {_n(train.get('loss_end'))}; no per-step reward signals (the counter-metrics are the "
                       f"evaluation's deltas above).</p>")
        if att.get("signals"):
            out.append("<h3>Reward attribution</h3>")
            out.append(_table(["signal", "mean", "std", "variance share"],
                              [[k, v.get("mean"), v.get("std"), v.get("variance_share")] for k, v in att["signals"].items()]))
        for a in train.get("alarms") or []:
            out.append(f'<p class="warn">alarm: {_e(json.dumps(a))}</p>')
    rm = report["reward_model"]
    out.append("<h2>Reward model audit</h2>")
    if rm.get("audit"):
        out.append(f"<p>{_e(rm['name'])}: {'FLAGGED' if rm['flagged'] else 'not flagged'}</p>")
        out.append(_table(["property", "preference rate", "ci", "reward gap (sd)", "flagged"],
                          [[p.get("property"), p.get("preference_rate"), json.dumps(p.get("ci")), p.get("reward_gap_sd"),
                            p.get("flagged")] for p in rm["audit"].get("properties", [])]))
    else:
        out.append(f"<p>{_e(rm.get('note'))}</p>")
    lb = report.get("leaderboard") or {}
    out.append("<h2>Leaderboard from the simulated picks</h2>")
    out.append(_table(["model", "rating", "ci low", "ci high", "votes"],
                      [[m.get("model"), m.get("rating"), m.get("ci_low"), m.get("ci_high"), m.get("votes")]
                       for m in lb.get("models", [])]) if lb.get("models") else "<p>none</p>")
    arms = (report.get("simulation") or {}).get("arms") or {}
    if arms:
        out.append("<h2>The simulated users, per arm</h2>")
        out.append(_table(["arm", "shown", "thumbs up rate", "pick rate", "flattery rate", "offer rate"],
                          [[k, v.get("shown"), v.get("thumbs_up_rate"), v.get("pick_rate"), v.get("flattery_rate"),
                            v.get("offer_rate")] for k, v in arms.items()]))
    out.append("<h2>Stages</h2>")
    out.append(_table(["stage", "status", "seconds", "note"],
                      [[s["name"], s["status"], s["seconds"], s.get("reason", "")] for s in report["stages"]]))
    style = ("body{font:14px system-ui,sans-serif;max-width:1000px;margin:24px auto;color:#1f2328}"
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d1d9e0;padding:3px 8px}"
             ".warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px}svg text{font:12px system-ui}")
    return f"<!doctype html><html><head><meta charset=utf-8><title>posttrain rehearsal</title><style>{style}</style></head><body>{''.join(out)}</body></html>"


def write_reports(store: Any, ctx: Context, baseline: str) -> dict[str, Any]:
    report = build_report(store, ctx, baseline)
    ctx.path("report.json").write_text(json.dumps(report, indent=2, default=str))
    ctx.path("report.html").write_text(render_html(report))
    return {"json": str(ctx.out / "report.json"), "html": str(ctx.out / "report.html")}
