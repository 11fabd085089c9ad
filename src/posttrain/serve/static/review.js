// The Review view: an admin judges a pending gate's blind pairs (left / right / tie, "feels off").

import { api, clearKey, getKey, setKey } from "./api.js";
import { $, guarded, h, showError } from "./ui.js";

let current = null; // the decision being reviewed

function showSignin(message) {
  $("review").hidden = true;
  $("signin").hidden = false;
  const line = document.querySelector("[data-testid=signin-error]");
  line.textContent = message || "";
  line.hidden = !message;
}

async function signIn(key) {
  const me = await api("GET", "/v1/me", undefined, { key });
  if (!me.is_admin) throw new Error("the Review view needs an admin key");
  return me;
}

async function loadPending() {
  const rows = await api("GET", "/v1/gate/reviews");
  const list = $("pending-list");
  list.replaceChildren(
    ...rows.map((r) =>
      h("li", {}, h("a", { href: `#${r.id}`, "data-testid": "pending-item", "data-id": r.id },
        `${r.candidate} vs ${r.baseline}`), ` — ${r.n_review_items} pairs, ${r.created_at.slice(0, 16).replace("T", " ")}`),
    ),
  );
  $("none").hidden = rows.length > 0;
}

function pairNode(item, index) {
  const name = `choice-${item.id}`;
  const comment = h("textarea", { rows: 2, "data-testid": `comment-${index}`, placeholder: "What feels off?", hidden: true });
  const off = h("input", { type: "checkbox", "data-testid": `feels-off-${index}` });
  off.addEventListener("change", () => (comment.hidden = !off.checked));
  const radio = (value, label) =>
    h("label", { class: "check" }, h("input", { type: "radio", name, value, "data-testid": `${value}-${index}` }), ` ${label}`);
  const prompt = item.prompt.filter((m) => m.role === "user").map((m) => m.content).join("\n\n");
  return h("li", { class: "pair", "data-testid": "pair", "data-item": item.id },
    h("p", { class: "prompt", text: prompt }),
    h("div", { class: "sides" },
      h("div", { class: "side", "data-testid": `left-text-${index}` }, h("h4", { text: "Left" }), item.left),
      h("div", { class: "side", "data-testid": `right-text-${index}` }, h("h4", { text: "Right" }), item.right)),
    h("div", { class: "choices" }, radio("left", "Left is better"), radio("right", "Right is better"), radio("tie", "Tie"),
      h("label", { class: "check" }, off, " Feels off")),
    comment);
}

async function openDecision(id) {
  // Hide the previous decision while the next one loads, so no pick lands on a pair that is about
  // to be replaced; data-id names the decision on screen once it is ready.
  $("decision").hidden = true;
  delete $("decision").dataset.id;
  current = await api("GET", `/v1/gate/reviews/${encodeURIComponent(id)}`);
  $("decision").hidden = false;
  $("decision-title").textContent = `${current.candidate} vs ${current.baseline} (${current.status})`;
  $("pairs").replaceChildren(...current.items.map(pairNode));
  $("submit-status").textContent = current.already_reviewed ? "You have reviewed this decision." : "";
  $("veto").checked = false;
  $("veto-comment").hidden = true;
  $("decision").dataset.id = current.id;
}

function collect() {
  const veto = $("veto").checked;
  const verdicts = [];
  if (veto) {
    const comment = $("veto-comment").value.trim();
    if (!comment) throw new Error("say why you veto the release");
    verdicts.push({ veto: true, comment });
  }
  current.items.forEach((item, index) => {
    const node = document.querySelector(`[data-item="${item.id}"]`);
    const picked = node.querySelector("input[type=radio]:checked");
    const off = node.querySelector(`[data-testid=feels-off-${index}]`).checked;
    const comment = node.querySelector(`[data-testid=comment-${index}]`).value.trim();
    if (!picked && !veto) throw new Error(`pair ${index + 1}: pick left, right or tie`);
    if (off && !comment) throw new Error(`pair ${index + 1}: say what feels off`);
    if (picked) verdicts.push({ item_id: item.id, choice: picked.value, feels_off: off, comment });
  });
  return verdicts;
}

async function submit(event) {
  event.preventDefault();
  await guarded(async () => {
    showError("");
    const verdicts = collect();
    const r = await api("POST", `/v1/gate/reviews/${encodeURIComponent(current.id)}/verdicts`, { verdicts });
    $("submit-status").textContent = `Recorded. The gate is now ${r.status}.`;
    $("decision-title").textContent = `${current.candidate} vs ${current.baseline} (${r.status})`;
    document.body.dataset.lastStatus = r.status;
    await loadPending();
  });
}

async function route() {
  const id = location.hash.slice(1);
  if (id) await guarded(() => openDecision(id));
  else $("decision").hidden = true;
}

async function start() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    try {
      await signIn(key);
      setKey(key, false);
      await enter();
    } catch (err) {
      showSignin(err.message);
    }
  });
  $("sign-out").addEventListener("click", () => {
    clearKey();
    showSignin("");
  });
  $("veto").addEventListener("change", () => ($("veto-comment").hidden = !$("veto").checked));
  $("verdict-form").addEventListener("submit", submit);
  window.addEventListener("hashchange", route);
  window.addEventListener("posttrain:unauthorized", (e) => showSignin(e.detail));
  if (getKey()) {
    try {
      await signIn(getKey());
      await enter();
      return;
    } catch (err) {
      showSignin(err.message);
      return;
    }
  }
  showSignin("");
}

async function enter() {
  const me = await api("GET", "/v1/me");
  $("user-name").textContent = me.name;
  $("signin").hidden = true;
  $("review").hidden = false;
  await guarded(loadPending);
  await route();
  document.body.dataset.ready = "true";
}

start();
