"""The gate's HTML report: the decision, a forest plot of every metric's delta with its interval
and margin, power, warnings, the reward attribution from training, and the review.

Self-contained like `eval report` (inline CSS and SVG, no JavaScript); every stored string is
escaped. Deltas are drawn oriented so that right is better for every metric, with the margin as
a red tick on the left: a bar entirely left of its tick is a regression beyond the margin.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from posttrain.evals.report import _CSS, LABEL_W, PLOT_W, ROW_H, _e, _label, _table, forest_frame
from posttrain.gate.decision import show_decision
from posttrain.store._store import Store

GOOD, BAD, FLAT, MARGIN = "#1f6feb", "#d9480f", "#8c959f", "#cf222e"
_EXTRA_CSS = ".pass{color:#1a7f37;font-weight:600}.block{color:#cf222e;font-weight:600}.pend{color:#9a6700;font-weight:600}"


def _oriented(m: dict[str, Any]) -> tuple[float, float, float]:
    sign = 1.0 if m["direction"] == "higher" else -1.0
    lo, hi = m["ci"]
    d = sign * m["delta"]
    return d, min(sign * lo, sign * hi), max(sign * lo, sign * hi)


def forest_with_margins(metrics: list[dict[str, Any]], *, title: str) -> str:
    """One row per metric: oriented delta (dot), 95% interval (bar), -margin (red tick)."""
    rows = [(m, *_oriented(m)) for m in metrics]
    finite = [x for _, d, lo, hi in rows for x in (d, lo, hi) if not math.isnan(x)]
    finite += [-m["margin"] for m in metrics]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    span = max(hi - lo, 0.1)
    lo, hi = lo - 0.06 * span, hi + 0.06 * span
    parts, x, top = forest_frame(len(rows), lo, hi, text_w=300, title=title)
    for i, (m, d, clo, chi) in enumerate(rows):
        y = top + i * ROW_H + ROW_H / 2
        colour = BAD if chi < -m["margin"] else GOOD if clo > 0 else FLAT
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 4:.1f}" text-anchor="end"><title>{_e(m["metric"])}</title>'
                     f'{_e(_label(m["metric"]))}</text>')
        parts.append(f'<line x1="{x(-m["margin"]):.1f}" y1="{y - 8:.1f}" x2="{x(-m["margin"]):.1f}" '
                     f'y2="{y + 8:.1f}" stroke="{MARGIN}" stroke-width="2"><title>margin -{m["margin"]:g}</title></line>')
        if not math.isnan(clo):
            parts.append(f'<line x1="{x(clo):.1f}" y1="{y:.1f}" x2="{x(chi):.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2.5"/>')
        parts.append(f'<circle cx="{x(d):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>')
        p = m.get("p")
        parts.append(f'<text x="{LABEL_W + PLOT_W + 10}" y="{y + 4:.1f}" class="mono">{d:+.3f} [{clo:+.3f}, {chi:+.3f}]'
                     f' m={m["margin"]:g}{f" p={p:.2g}" if p is not None else ""}</text>')
    return "".join(parts) + "</svg>"


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.3f}"
    return _e(v)


def _status(d: dict[str, Any]) -> str:
    cls = {"passed": "pass", "blocked": "block"}.get(d["status"], "pend")
    label = {"passed": "PASSED", "blocked": "BLOCKED", "pending": "PENDING REVIEW"}.get(d["status"], d["status"])
    return f'<span class="{cls}">{label}</span>'


def _attribution(train: dict[str, Any]) -> str:
    if not train:
        return "<p class=muted>The candidate has no training record (not trained by posttrain).</p>"
    out = [f"<dl><dt>method</dt><dd>{_e(train.get('method', '-'))}</dd>"
           f"<dt>reward</dt><dd>{_f(train.get('reward_start'))} → {_f(train.get('reward_end'))}</dd>"
           f"<dt>trained against</dt><dd>{_e(', '.join(train.get('trained_against') or []) or '-')}</dd></dl>"]
    mix = train.get("reward_mix") or []
    if mix:
        out.append(_table(["signal", "weight", "cap"], [[_e(m.get("signal")), _f(m.get("weight")), _f(m.get("cap"))]
                                                       for m in mix], {1, 2}))
    sig = (train.get("attribution") or {}).get("signals") or {}
    if sig:
        out.append("<h3>Reward attribution</h3>")
        out.append(_table(["signal", "mean", "std", "variance share"],
                          [[_e(k), _f(v.get("mean")), _f(v.get("std")), _f(v.get("variance_share"))]
                           for k, v in sorted(sig.items(), key=lambda kv: -float(kv[1].get("variance_share") or 0))],
                          {1, 2, 3}))
    for a in train.get("alarms") or []:
        out.append(f'<p class="warn">training alarm: {_e(a)}</p>')
    return "".join(out)


def _review(d: dict[str, Any]) -> str:
    r = d["review"]
    out = [f"<dl><dt>state</dt><dd>{_e(r['state'])}</dd><dt>required</dt><dd>{r['required']}</dd>"
           f"<dt>reviewers</dt><dd>{_e(', '.join(r['reviewers']) or '-')}</dd>"
           f"<dt>preferences</dt><dd>candidate {r['preferences']['candidate']}, baseline "
           f"{r['preferences']['baseline']}, tie {r['preferences']['tie']}</dd></dl>"]
    for f in r["feels_off"]:
        out.append(f'<p class="warn">feels off ({_e(f["reviewer"])}, {_e(f["item"])}): {_e(f["comment"])}</p>')
    for v in r["vetoes"]:
        out.append(f'<p class="warn">veto ({_e(v["reviewer"])}): {_e(v["comment"])}</p>')
    return "".join(out)


def render_report(store: Store, decision_id: str) -> str:
    """The report of a stored decision, as one HTML string."""
    d = show_decision(store, decision_id)
    ms = d.get("metrics", [])
    rows = [[_e(m["metric"]), _e(m["action"]), str(m["n"]), _f(m["baseline"]), _f(m["candidate"]), _f(m["delta"]),
             f"[{_f(m['ci'][0])}, {_f(m['ci'][1])}]", _f(m["margin"]), _f(m["mdr"]), _f(m.get("p")),
             "underpowered" if m.get("underpowered") else ("regressed" if m.get("regressed") else "ok")]
            for m in ms]
    blocking = "".join(f"<li><b>{_e(b['metric'])}</b>: {_e(b['reason'])}</li>" for b in d["blocking"]) or "<li>none</li>"
    warnings = "".join(f"<li>{_e(w)}</li>" for w in d["warnings"]) or "<li>none</li>"
    ev = d["evidence"]
    runs = [[_e(n), _e(r.get("baseline") or "-"), _e(r.get("candidate") or "-"), str(r.get("generated", 0)),
             str(r.get("cached", 0)), _e(r.get("error") or "")] for n, r in sorted(ev.get("runs", {}).items())]
    train = ev.get("lineage", {}).get("candidate", {}).get("train", {})
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>gate {_e(d['decision_id'])}</title>"
        f"<style>{_CSS}{_EXTRA_CSS}</style></head><body><main>"
        f"<h1>Gate: {_e(d['candidate'])} vs {_e(d['baseline'])} — {_status(d)}</h1>"
        f"<p class=muted>decision <code>{_e(d['decision_id'])}</code> · policy <code>{_e(d['policy_hash'][:12])}</code>"
        f" ({_e(d['policy']['source'])}) · Holm over k={ev.get('holm_k')} blocking metrics at alpha={ev.get('alpha')}"
        f" · power {ev.get('power')}</p>"
        f"<section><h2>Blocking</h2><ul>{blocking}</ul><h3>Warnings</h3><ul>{warnings}</ul></section>"
        f"<section><h2>Per-metric deltas</h2><p class=muted>Oriented so right is better; dot = mean paired "
        f"difference, bar = 95% paired-bootstrap interval, red tick = −margin.</p>"
        f"{forest_with_margins(ms, title='gate metrics') if ms else ''}"
        + _table(["metric", "action", "n", "baseline", "candidate", "delta", "95% CI", "margin", "detectable", "p",
                  "state"], rows, {2, 3, 4, 5, 7, 8, 9})
        + f"</section><section><h2>Training lineage and reward attribution</h2>{_attribution(train)}</section>"
        f"<section><h2>Human review</h2>{_review(d)}</section>"
        f"<section><h2>Runs</h2>{_table(['suite', 'baseline run', 'candidate run', 'generated', 'cached', 'error'], runs, {3, 4})}"
        f"<p class=muted>versions: {_e(ev.get('versions'))}</p></section></main></body></html>"
    )


def write_report(store: Store, decision_id: str, out: str | Path) -> Path:
    """Write the report atomically (a reader never sees half a file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(store, decision_id)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".gate-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, out)
    return out
