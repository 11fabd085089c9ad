// Admin views: the arena leaderboard with an interval plot, the usefulness-beside-engagement
// dashboard, and the A/B experiments. The DOM is built with textContent only (see web.py's CSP).

import { api, clearKey, getKey, setKey } from "./api.js";
import { $, guarded, h } from "./ui.js";

// The SVG namespace, taken from an <svg> the HTML parser made (no URL literal in page code).
const SVG = document.getElementById("svg-ns").namespaceURI;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v, digits = 2) {
  if (v === null || v === undefined) return "-";
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : String(v);
}

function showSignin(message) {
  $("admin").hidden = true;
  $("signin").hidden = false;
  const line = document.querySelector("[data-testid=signin-error]");
  line.textContent = message || "";
  line.hidden = !message;
}

/** One row per model: the 95% interval as a bar and the rating as a dot, on a shared axis. */
function intervalPlot(models) {
  const rowH = 22, left = 170, width = 520, top = 8;
  const lo = Math.min(...models.map((m) => m.ci_low)), hi = Math.max(...models.map((m) => m.ci_high));
  const pad = Math.max((hi - lo) * 0.08, 5);
  const x0 = lo - pad, x1 = hi + pad;
  const x = (v) => left + ((v - x0) / (x1 - x0)) * width;
  const height = top + rowH * models.length + 26;
  const plot = svg("svg", { width: left + width + 20, height, role: "img", "data-testid": "interval-svg" });
  plot.append(svg("title", {}, "Ratings with 95% intervals"));
  const step = Math.pow(10, Math.floor(Math.log10((x1 - x0) / 4)));
  for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) {
    plot.append(svg("line", { x1: x(t), y1: top, x2: x(t), y2: height - 22, stroke: "#eaeef2" }));
    plot.append(svg("text", { x: x(t), y: height - 6, "text-anchor": "middle", fill: "#59636e" }, fmt(t, 0)));
  }
  models.forEach((m, i) => {
    const y = top + i * rowH + rowH / 2;
    plot.append(svg("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, m.model));
    plot.append(svg("line", { x1: x(m.ci_low), y1: y, x2: x(m.ci_high), y2: y, stroke: "#1f6feb",
      "stroke-width": 3, "data-testid": "interval" }));
    plot.append(svg("circle", { cx: x(m.rating), cy: y, r: 4.5, fill: m.provisional ? "#8c959f" : "#1f2328" }));
  });
  return plot;
}

async function loadLeaderboard() {
  const lb = await api("GET", "/v1/admin/leaderboard");
  const rows = $("leaderboard-rows");
  rows.replaceChildren(...lb.models.map((m) => h("tr", { "data-testid": "leaderboard-row" },
    h("td", { text: String(m.rank) }), h("td", { text: m.model }), h("td", { class: "num", text: fmt(m.rating, 1) }),
    h("td", { class: "num", text: `${fmt(m.ci_low, 1)} – ${fmt(m.ci_high, 1)}` }),
    h("td", { class: "num", text: String(m.votes) }), h("td", { class: "num", text: fmt(m.share, 3) }),
    h("td", {}, m.provisional ? h("span", { class: "badge", text: "provisional" }) : ""))));
  $("interval-plot").replaceChildren(...(lb.models.length ? [intervalPlot(lb.models)] : []));
  $("leaderboard-meta").textContent = lb.models.length
    ? `${lb.votes} votes; 95% intervals by ${lb.ci.method}${lb.ci.rounds ? ` (${lb.ci.rounds} rounds)` : ""}; ` +
      "rank = 1 + the number of models whose lower bound is above this model's upper bound."
    : lb.note || "no votes yet";
  const extra = [];
  if (lb.position && lb.position.enabled) {
    extra.push(`Position bias: ${fmt(lb.position.coefficient, 1)} points for the left answer ` +
      `[${fmt(lb.position.ci_low, 1)}, ${fmt(lb.position.ci_high, 1)}].`);
  }
  if (lb.fragility && lb.fragility.votes !== null && lb.fragility.votes !== undefined) {
    extra.push(`Fragility: removing ${lb.fragility.votes} votes would give rank 1 to ${lb.fragility.challenger}.`);
  }
  if (lb.removed && lb.removed.total) extra.push(`Vote-quality rules removed ${lb.removed.total} votes.`);
  $("leaderboard-extra").textContent = extra.join(" ");
  $("record").replaceChildren(...(lb.record || []).map((r) => h("li", { "data-testid": "record-item",
    text: `${r.model} — entered ${String(r.first_seen_at || "").slice(0, 10)}, ${r.votes_now ?? "-"} votes now` })));
}

async function loadStats() {
  const st = await api("GET", "/v1/admin/stats");
  $("statement").textContent = st.statement;
  $("stats-rows").replaceChildren(...st.rows.map((r) => {
    const e = r.engagement, f = r.feedback, t = r.task_success;
    const reasons = Object.entries(f.down_reasons).map(([k, v]) => `${k} ${v}`).join(", ");
    const evals = Object.entries(t.evals).map(([s, m]) => `${s}: ${Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}`).join("; ");
    return h("tr", { "data-testid": "stats-row" },
      h("td", { text: r.week }), h("td", { text: r.model }),
      h("td", { class: "num", text: String(e.conversations) }), h("td", { class: "num", text: fmt(e.turns_per_conversation) }),
      h("td", { class: "num", text: fmt(e.minutes_per_conversation) }), h("td", { class: "num", text: String(e.regenerations) }),
      h("td", { class: "num", text: String(e.abandoned) }), h("td", { class: "num", text: String(f.thumbs_up) }),
      h("td", { class: "num", text: String(f.thumbs_down) }), h("td", { text: reasons }),
      h("td", { class: "num", text: fmt(f.pairwise_win_rate) }), h("td", { class: "num", text: fmt(t.wrong_rate) }),
      h("td", { text: evals }));
  }));
}

async function loadExperiments() {
  const list = await api("GET", "/v1/admin/experiments");
  $("experiment-list").replaceChildren(...(list.length ? list.map((st) => {
    const e = st.experiment;
    return h("div", { "data-testid": "experiment" },
      h("h3", { text: `${e.name}: ${e.status} — ${e.candidate} vs ${e.baseline} (${Math.round(e.fraction * 100)}%)` }),
      h("table", { class: "grid" }, h("tbody", {}, ...st.metrics.map((m) => h("tr", {},
        h("td", { text: m.metric }), h("td", { class: "num", text: fmt(m.baseline, 3) }),
        h("td", { class: "num", text: fmt(m.candidate, 3) }),
        h("td", { class: "num", text: m.cs ? `[${fmt(m.cs[0], 3)}, ${fmt(m.cs[1], 3)}]` : "-" }),
        h("td", { text: m.verdict + (m.harm ? " — harm beyond margin" : "") }))))));
  }) : [h("p", { class: "muted", text: "No experiments (posttrain ab start)." })]));
}

async function show() {
  $("signin").hidden = true;
  $("admin").hidden = false;
  await guarded(() => Promise.all([loadLeaderboard(), loadStats(), loadExperiments()]));
  document.body.dataset.loaded = "1";
}

async function start() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    try {
      const me = await api("GET", "/v1/me", undefined, { key });
      if (!me.is_admin) throw new Error("the admin views need an admin key");
      setKey(key, false);
      await show();
    } catch (err) {
      showSignin(err.message || String(err));
    }
  });
  $("sign-out").addEventListener("click", () => { clearKey(); showSignin(""); });
  if (!getKey()) return showSignin("");
  try {
    const me = await api("GET", "/v1/me");
    if (!me.is_admin) return showSignin("the admin views need an admin key");
    await show();
  } catch (err) {
    showSignin(err.message || String(err));
  }
}

start();
