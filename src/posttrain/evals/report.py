"""A self-contained HTML report of eval runs and their paired comparisons.

One file, inline CSS and SVG drawn here: no JavaScript, nothing fetched, so it can be mailed,
attached to a release ticket or opened offline. Every string that comes from the store (model
answers, case ids, suite and grader names, params) goes through `html.escape`: a model answer
is data and must never become markup.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from collections.abc import Callable
from typing import Any

from posttrain.evals.compare import compare_runs
from posttrain.evals.results import grader_summary
from posttrain.store import evals as q
from posttrain.store._store import Store

N_FAILURES = 20
RESPONSE_CHARS = 300

# Colour by what the 95% interval says, not by "good"/"bad": whether higher is better depends
# on the metric (a flattery rate should go down), the reader knows which.
UP, DOWN, FLAT = "#1f6feb", "#d9480f", "#8c959f"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 8px}h3{font-size:15px;margin:18px 0 6px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:16px 0}
.muted{color:#59636e}a.mono{white-space:nowrap}.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}dt{color:#59636e}dd{margin:0}
.resp{white-space:pre-wrap;word-break:break-word}table.fail td:nth-child(-n+2){white-space:nowrap;width:1%}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:4px 0}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
svg{display:block;margin:6px 0}svg text{font:12px system-ui,sans-serif;fill:#1f2328}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v, sort_keys=True, default=str)


def _is_fraction(v: Any) -> bool:
    return isinstance(v, float) and 0.0 <= v <= 1.0


def _label(text: str, width: int = 34) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(head: list[str], rows: list[list[str]], num_cols: set[int] = frozenset(), cls: str = "") -> str:
    """Cells are given already escaped (some carry markup of ours)."""
    th = "".join(f'<th class="num">{h}</th>' if i in num_cols else f"<th>{h}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table{f' class={cls}' if cls else ''}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# ---- charts -----------------------------------------------------------------------------------

LABEL_W, PLOT_W, ROW_H = 250, 520, 24


def _svg_open(width: int, height: int, title: str) -> str:
    return (f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>')


def bar_chart(items: list[tuple[str, float]], *, title: str) -> str:
    """Horizontal bars for values in [0, 1] on a fixed 0-1 axis (so two runs' charts line up)."""
    top, width = 8, LABEL_W + PLOT_W + 60
    height = top + ROW_H * len(items) + 24
    parts = [_svg_open(width, height, title)]
    axis_y = top + ROW_H * len(items)
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = LABEL_W + t * PLOT_W
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#59636e">{t:g}</text>')
    for i, (name, v) in enumerate(items):
        y = top + i * ROW_H
        w = max(0.0, min(1.0, v)) * PLOT_W
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end"><title>{_e(name)}</title>'
                     f"{_e(_label(name))}</text>")
        parts.append(f'<rect x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" rx="2" fill="{UP}"/>')
        parts.append(f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 16}">{v:.3f}</text>')
    parts.append(f'<line x1="{LABEL_W}" y1="{top}" x2="{LABEL_W}" y2="{axis_y}" stroke="#8c959f"/></svg>')
    return "".join(parts)


def _ticks(lo: float, hi: float) -> list[float]:
    raw = (hi - lo) / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


def forest_frame(n_rows: int, lo: float, hi: float, *, text_w: int, title: str
                 ) -> tuple[list[str], Callable[[float], float], int]:
    """The frame of a forest plot of `n_rows` rows over [lo, hi]: the opened SVG with grid lines,
    tick labels and the dashed zero line; returns (parts, x(value) -> pixel, top)."""
    top = 8
    width, height = LABEL_W + PLOT_W + text_w, top + ROW_H * n_rows + 26
    axis_y = top + ROW_H * n_rows

    def x(v: float) -> float:
        return LABEL_W + (v - lo) / (hi - lo) * PLOT_W

    parts = [_svg_open(width, height, title)]
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{axis_y}" stroke="#eaeef2"/>')
        label = f"{t:+g}" if t else "0"
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#59636e">{label}</text>')
    parts.append(f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#1f2328" '
                 f'stroke-dasharray="4 3"/>')
    return parts, x, top


def forest_plot(rows: list[dict[str, Any]], *, title: str) -> str:
    """One row per grader: delta (dot) and its 95% interval (bar) around a zero line."""
    finite = [x for r in rows for x in (r["delta"], *r["ci"]) if not math.isnan(x)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    # At least +-0.05 around zero, so identical runs do not get an axis of hundredths of a point.
    span = max(hi - lo, 0.1)
    lo, hi = min(lo - 0.08 * span, -0.05), max(hi + 0.08 * span, 0.05)
    parts, x, top = forest_frame(len(rows), lo, hi, text_w=240, title=title)
    for i, r in enumerate(rows):
        y = top + i * ROW_H + ROW_H / 2
        (clo, chi), d = r["ci"], r["delta"]
        colour = UP if clo > 0 else DOWN if chi < 0 else FLAT
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 4:.1f}" text-anchor="end"><title>{_e(r["metric"])}</title>'
                     f'{_e(_label(r["metric"]))}</text>')
        if not math.isnan(clo):
            parts.append(f'<line x1="{x(clo):.1f}" y1="{y:.1f}" x2="{x(chi):.1f}" y2="{y:.1f}" '
                         f'stroke="{colour}" stroke-width="2.5"/>')
            for end in (clo, chi):
                parts.append(f'<line x1="{x(end):.1f}" y1="{y - 5:.1f}" x2="{x(end):.1f}" y2="{y + 5:.1f}" '
                             f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(d):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>')
        parts.append(f'<text x="{LABEL_W + PLOT_W + 10}" y="{y + 4:.1f}" class="mono">'
                     f'{_e(_delta_ci(r))}</text>')
    return "".join(parts) + "</svg>"


def _delta_ci(m: dict[str, Any]) -> str:
    return f"{m['delta']:+.3f} [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"


# ---- sections ---------------------------------------------------------------------------------


def resolve_run_ids(store: Store, run_ids: list[str]) -> list[str]:
    """Full run ids for ids or unique prefixes (as every eval command takes them).

    Raises KeyError for an unknown or ambiguous id, ValueError for none or a repeated run.
    """
    if not run_ids:
        raise ValueError("give at least one run id")
    full = [q.get_run(store, r)["id"] for r in run_ids]
    repeated = sorted({r for r in full if full.count(r) > 1})
    if repeated:
        raise ValueError(f"run {repeated[0]} is given more than once")
    return full


def _when(d: datetime | None) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if d else "-"


def _run_section(store: Store, run_id: str) -> str:
    run = q.get_run(store, run_id)
    rows = q.get_results(store, run_id)
    out = [f'<section id="{_e(run_id)}"><h2>{_e(run["suite"])} · {_e(run["model"])}</h2>',
           f'<p class="mono muted">{_e(run_id)}</p><dl>']
    for k, v in (("suite", f'{run["suite"]} v{run["suite_version"]}'), ("model", run["model"]),
                 ("params", json.dumps(run["params"], sort_keys=True)), ("seed", run["seed"]),
                 ("date", _when(run["created_at"])), ("cases", run["n_cases"]), ("status", run["status"])):
        out.append(f"<dt>{k}</dt><dd{' class=mono' if k == 'params' else ''}>{_e(v)}</dd>")
    out.append("</dl><h3>Metrics</h3>")
    metrics = run["metrics"] or {}
    bars = [(k, v) for k, v in metrics.items() if _is_fraction(v)]
    others = [(k, v) for k, v in metrics.items() if not _is_fraction(v)]
    if bars:
        out.append(bar_chart(bars, title=f"metrics of {run_id}"))
    if others:
        out.append(_table(["metric", "value"], [[_e(k), _e(_num(v))] for k, v in others], {1}))
    if not metrics:
        out.append('<p class="muted">no metrics recorded</p>')

    graders = grader_summary(rows)
    out.append("<h3>Graders</h3>")
    rates = [(g, s["pass_rate"]) for g, s in graders.items() if s["pass_rate"] is not None]
    if rates:
        out.append(bar_chart(rates, title=f"pass rate per grader of {run_id}"))
    out.append(_table(["grader", "rows", "pass rate", "mean score", "errors"],
                      [[_e(g), str(s["n"]), _num(s["pass_rate"]), _num(s["mean_score"]), str(s["errors"])]
                       for g, s in graders.items()], {1, 2, 3, 4}))

    failing = [r for r in rows if r["passed"] is False or "error" in (r["details"] or {})]
    out.append(f"<h3>Failing cases ({len(failing)}{f', first {N_FAILURES} shown' if len(failing) > N_FAILURES else ''})</h3>")
    if failing:
        cells = []
        for r in failing[:N_FAILURES]:
            resp = r["response"] or ""
            if len(resp) > RESPONSE_CHARS:
                resp = resp[:RESPONSE_CHARS] + "…"
            note = (r["details"] or {}).get("error", "")
            cells.append([f'<span class="mono">{_e(r["case_id"])}</span>', _e(r["grader"]),
                          f'<div class="resp">{_e(resp)}</div>' + (f'<div class="warn">{_e(note)}</div>' if note else "")])
        out.append(_table(["case", "grader", "response"], cells, cls="fail"))
    else:
        out.append('<p class="muted">none</p>')
    return "".join(out) + "</section>"


def _comparison_section(store: Store, a: str, b: str) -> str:
    d = compare_runs(store, a, b)
    ra, rb = d["run_a"], d["run_b"]
    what = (f"two runs of {ra['model']}" if ra["model"] == rb["model"] else f"{rb['model']} vs {ra['model']}")
    out = [f"<section><h2>B vs A: {_e(what)}</h2>",
           (f'<p class="muted">A (baseline) = <span class="mono">{_e(ra["id"])}</span> · '
            f'B (candidate) = <span class="mono">{_e(rb["id"])}</span>. Paired on shared cases; '
            f'95% interval from a paired bootstrap ({d["n_boot"]} resamples, seed {d["boot_seed"]}).</p>')]
    out += [f'<div class="warn">warning: {_e(w)}</div>' for w in d["warnings"]]
    if d["metrics"]:
        out.append(f'<p class="legend"><span><i class="sw" style="background:{UP}"></i>B higher (interval above 0)'
                   f'</span><span><i class="sw" style="background:{DOWN}"></i>B lower (interval below 0)</span>'
                   f'<span><i class="sw" style="background:{FLAT}"></i>interval includes 0</span></p>')
        for kind, heading in (("pass_rate", "Pass rate, B − A"), ("score", "Mean score, B − A")):
            rows = [m for m in d["metrics"] if m["kind"] == kind]
            if rows:
                out.append(f"<h3>{heading}</h3>" + forest_plot(rows, title=f"{heading}: {rb['id']} vs {ra['id']}"))
        out.append(_table(
            ["grader", "kind", "N", "A", "B", "B − A", "95% CI", "p", "test"],
            [[_e(m["metric"]), _e(m["kind"]), str(m["n_pairs"]), f"{m['mean_a']:.3f}", f"{m['mean_b']:.3f}",
              f"{m['delta']:+.3f}", f"[{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]", f"{m['p_value']:.4f}", _e(m["test"])]
             for m in d["metrics"]], {2, 3, 4, 5, 6, 7}))
    names = [k for k in ra["metrics"] if k in rb["metrics"]]
    if names:
        out.append("<h3>Suite metrics (whole runs, unpaired)</h3>")
        out.append(_table(["metric", "A", "B", "B − A"], [
            [_e(k), _e(_num(ra["metrics"][k])), _e(_num(rb["metrics"][k])),
             f"{rb['metrics'][k] - ra['metrics'][k]:+.3f}" if all(
                 isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ra["metrics"][k], rb["metrics"][k]))
             else "-"] for k in names], {1, 2, 3}))
    return "".join(out) + "</section>"


def render_report(store: Store, run_ids: list[str]) -> str:
    """The HTML report of `run_ids` (ids or unique prefixes): one section per run, then the first
    run (baseline) compared with each other run. Raises KeyError/ValueError for bad ids."""
    ids = resolve_run_ids(store, run_ids)
    runs = [q.get_run(store, r) for r in ids]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f'<h1>Eval report</h1><p class="muted">{len(ids)} run(s), generated {now} by posttrain.</p>']
    if len(ids) > 1:
        body.append("<section><h2>Runs</h2>" + _table(
            ["", "run", "suite", "model", "params", "cases"],
            [["baseline" if i == 0 else "", f'<a class="mono" href="#{_e(r["id"])}">{_e(r["id"])}</a>',
              _e(f'{r["suite"]} v{r["suite_version"]}'), _e(r["model"]),
              f'<span class="mono">{_e(json.dumps(r["params"], sort_keys=True))}</span>', str(r["n_cases"])]
             for i, r in enumerate(runs)], {5}) + "</section>")
        body += [_comparison_section(store, ids[0], b) for b in ids[1:]]
    body += [_run_section(store, r) for r in ids]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Eval report: '
            f'{_e(", ".join(r["suite"] + " / " + r["model"] for r in runs))}</title><style>{_CSS}</style></head>'
            f"<body><main>{''.join(body)}</main></body></html>\n")


def write_report(store: Store, run_ids: list[str], out: str | Path) -> Path:
    """Render the report and write it to `out` atomically (no partial file on failure).

    Raises ValueError when `out` cannot be written, KeyError/ValueError for bad run ids; in both
    cases nothing is written.
    """
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name such as report.html")
    if not parent.is_dir():
        raise ValueError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"cannot write {out}: permission denied")
    html = render_report(store, run_ids)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        # mkstemp creates the file 0600; a report is meant to be shared like any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ValueError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
