"""The comparison report's HTML: a table and an inline-SVG Pareto plot, no JavaScript
(the same conventions as the eval report: every string escaped, nothing fetched)."""

from __future__ import annotations

from typing import Any

from posttrain.evals.report import _CSS, _e, _svg_open, _table, _ticks

W, H, PAD = 640, 360, 56


def pareto_svg(rows: list[dict[str, Any]]) -> str:
    priced = all(r["cost_per_1k_requests"] is not None for r in rows)
    xs = [(r["cost_per_1k_requests"] if priced else r["latency_ms"]["p50"]) or 0.0 for r in rows]
    ys = [r["score"] if r["score"] is not None else 0.0 for r in rows]
    x_lo, x_hi = 0.0, max(xs) * 1.15 or 1.0
    y_lo, y_hi = max(0.0, min(ys) - 0.1), min(1.0, max(ys) + 0.1) if max(ys) < 1 else 1.05

    def px(v: float) -> float:
        return PAD + (v - x_lo) / (x_hi - x_lo) * (W - 2 * PAD)

    def py(v: float) -> float:
        return H - PAD - (v - y_lo) / ((y_hi - y_lo) or 1) * (H - 2 * PAD)

    label = "cost per 1k requests ($)" if priced else "latency p50 (ms)"
    parts = [_svg_open(W, H, f"Quality against {label}")]
    for t in _ticks(x_lo, x_hi):
        parts.append(f'<line x1="{px(t):.1f}" y1="{PAD}" x2="{px(t):.1f}" y2="{H - PAD}" stroke="#eaeef2"/>'
                     f'<text x="{px(t):.1f}" y="{H - PAD + 16}" text-anchor="middle" fill="#59636e">{t:g}</text>')
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{PAD}" y1="{py(t):.1f}" x2="{W - PAD}" y2="{py(t):.1f}" stroke="#eaeef2"/>'
                     f'<text x="{PAD - 6}" y="{py(t) + 4:.1f}" text-anchor="end" fill="#59636e">{t:g}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{_e(label)}</text>'
                 f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">quality score</text>')
    front = sorted((x, y) for x, y, r in zip(xs, ys, rows) if r.get("pareto"))
    if len(front) > 1:
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in front)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f6feb" stroke-dasharray="5 3"/>')
    for x, y, r in zip(xs, ys, rows):
        colour = "#1f6feb" if r.get("pareto") else "#8c959f"
        ring = ' stroke="#1a7f37" stroke-width="3"' if r.get("recommended") else ""
        parts.append(f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="6" fill="{colour}"{ring}>'
                     f'<title>{_e(r["model"])}</title></circle>'
                     f'<text x="{px(x) + 9:.1f}" y="{py(y) - 8:.1f}">{_e(r["model"])}</text>')
    return "".join(parts) + "</svg>"


def render(result: dict[str, Any]) -> str:
    rows = [{**r, "recommended": r["model"] == result["recommended"]} for r in result["models"]]
    suites = result["suites"]
    head = ["model", "score", *[f"{_e(s)}" for s in suites], "p50 ms", "p95 ms", "$ / 1k req", "not worse", "Pareto"]
    body = []
    for r in rows:
        q = [("-" if r["quality"][s]["value"] is None else f"{r['quality'][s]['value']:.3f}") for s in suites]
        cost = "-" if r["cost_per_1k_requests"] is None else f"{r['cost_per_1k_requests']:.4f}"
        verdict = "reference" if r["model"] == result["reference"] else ("yes" if r["noninferior"] else
                  "no: " + ", ".join(f"{f['suite']}/{f['metric']} {f['delta']:+.3f}" for f in r["failing"]))
        name = _e(r["model"]) + (" <strong>(recommended)</strong>" if r["recommended"] else "")
        body.append([name, "-" if r["score"] is None else f"{r['score']:.3f}", *q,
                     _e(r["latency_ms"]["p50"]), _e(r["latency_ms"]["p95"]), cost, _e(verdict),
                     "yes" if r.get("pareto") else ""])
    metrics = ", ".join(f"{_e(s)}: {_e(result['models'][0]['quality'][s]['metric'])}" for s in suites)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>posttrain compare</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f"<h1>Model comparison</h1><p class=muted>Reference: {_e(result['reference'])}. Quality per suite "
        f"({metrics}); the score averages them with lower-is-better rates flipped. Latency is each answer's.</p>"
        f"<section data-testid=recommendation><h2>Recommendation: {_e(result['recommended'])}</h2>"
        f"<p>{_e(result['reason'])}.</p><p class=muted>{_e(result['check'])}.</p></section>"
        f"<section><h2>Models</h2>{_table(head, body, num_cols={1, *range(2, 2 + len(suites) + 3)})}</section>"
        f"<section data-testid=pareto><h2>Pareto plot</h2>{pareto_svg(rows)}</section>"
        "</main></body></html>"
    )
