"""Simulated users driving a running posttrain server over its real HTTP API.

    summary = run("http://127.0.0.1:8000", keys, load_personas(), users=20, conversations=4, seed=0)

Each user is a persona (personas.py) with one API key. Per conversation they draw a prompt from
their pools, then either compare two answers side by side (compare mode: one answer from each of
two product arms, or two samples of one model with `n=2` when no arms are configured) and pick
one, or get one answer from their own arm (sticky per user, as an A/B assigns). They give
thumbs with reasons (subject to selection bias and noise), regenerate disliked answers, correct
some by hand (edit events), accept offers to continue (a second turn plus an implicit
`continue` signal), and set their persona's custom instructions. Judgements come from
judge.py: the project's graders and answer keys, never the model being served.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from posttrain.simulate import judge
from posttrain.simulate.personas import Persona, Simulation
from posttrain.simulate.prompts import Prompt, PromptPools, build_pools

__all__ = ["SimulationError", "allocate", "run"]

FOLLOW_UPS = ["Yes, please tell me more.", "Sure, go on.", "Yes please!", "That would be great, continue."]


class SimulationError(RuntimeError):
    """The server refused a request the simulator needs (one line: status and message)."""


def allocate(users: int, personas: list[Persona]) -> list[Persona]:
    """The persona of each user: shares by largest remainder (exact for small N), interleaved
    so that the first users already mix personas."""
    total = sum(p.share for p in personas)
    quotas = [users * p.share / total for p in personas]
    counts = [int(q) for q in quotas]
    for i in sorted(range(len(personas)), key=lambda i: quotas[i] - counts[i], reverse=True)[: users - sum(counts)]:
        counts[i] += 1
    out: list[Persona] = []
    left = list(counts)
    while len(out) < users:
        for i, p in enumerate(personas):
            if left[i] > 0:
                out.append(p)
                left[i] -= 1
    return out


class _Api:
    """One user's HTTP session."""

    def __init__(self, base: str, key: str, timeout: float) -> None:
        self.http = httpx.Client(base_url=base.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SimulationError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            try:
                msg = r.json()["error"]["message"]
            except Exception:
                msg = r.text[:200]
            raise SimulationError(f"{method} {path} answered {r.status_code}: {msg}")
        return r.json()

    def close(self) -> None:
        self.http.close()


class _User:
    def __init__(self, sim: "_Sim", index: int, persona: Persona, key: str, exclusive: bool) -> None:
        self.sim, self.index, self.persona, self.exclusive = sim, index, persona, exclusive
        self.rng = random.Random(f"{sim.seed}:{index}")
        self.api = _Api(sim.base, key, sim.timeout)
        self.extremes_only = self.rng.random() < sim.cfg.settings.extremes_only
        self.arm = self.rng.choice(sim.arms) if sim.arms else None
        self.stats: Counter[str] = Counter()

    # -- requests -----------------------------------------------------------------------------

    def chat(self, model: str | None, messages: list[dict[str, str]], n: int = 1,
             conversation_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages, "max_tokens": self.sim.cfg.settings.max_tokens,
                                "seed": self.rng.randrange(2**31), "n": n}
        if model:
            body["model"] = model
        if conversation_id:
            body["conversation_id"] = conversation_id
        if not self.sim.arms:
            body["temperature"] = 0.9 if n > 1 else 0.7  # sampling is the only variation then
        self.stats["requests"] += 1
        self.stats["completions"] += n
        return self.api.call("POST", "/v1/chat/completions", body)

    def feedback(self, body: dict[str, Any]) -> None:
        self.api.call("POST", "/v1/feedback", body)
        self.stats[f"feedback_{body['kind']}"] += 1

    def record(self, model: str | None, feats: dict[str, float], j: judge.Judgement | None = None,
               picked: bool | None = None) -> None:
        self.sim.note(self.persona.name, model or "default", feats, j, picked)

    # -- one conversation ---------------------------------------------------------------------

    def rate(self, cid: str, model: str | None, prompt: Prompt, text: str, feats: dict[str, float]) -> judge.Judgement:
        s = self.sim.cfg.settings
        j = judge.thumbs(self.persona, feats, s, self.rng, self.extremes_only)
        self.record(model, feats, j)
        if j.value is not None:
            self.feedback({"completion_id": cid, "kind": "thumbs", "value": j.value, "reasons": j.reasons})
        if j.value == -1 and self.rng.random() < s.edit_share:
            edited = judge.edit_answer(text, prompt, self.persona, feats)
            if edited:
                self.feedback({"completion_id": cid, "kind": "edit", "edited_text": edited})
        return j

    def compare(self, prompt: Prompt, messages: list[dict[str, str]]) -> tuple[str, str, str, str]:
        """Two answers side by side and a pick; returns the followed (cid, model, text, conv)."""
        s = self.sim.cfg.settings
        if len(self.sim.arms) >= 2:
            left, right = self.rng.sample(self.sim.arms, 2)
            ra, rb = self.chat(left, messages), self.chat(right, messages)
            a, b = ra["choices"][0], rb["choices"][0]
            convs = (ra["conversation_id"], rb["conversation_id"])
        else:
            left = right = self.sim.default_model
            r = self.chat(left, messages, n=2)
            a, b = r["choices"][0], r["choices"][1]
            convs = (r["conversation_id"], r["conversation_id"])
        ta, tb = a["message"]["content"], b["message"]["content"]
        fa, fb = judge.features(ta, prompt), judge.features(tb, prompt)
        choice = judge.pick(self.persona, fa, fb, s, self.rng)
        self.feedback({"completion_id": a["completion_id"], "other_completion_id": b["completion_id"], "kind": "pairwise",
                       "value": choice, "positions": {"left": a["completion_id"], "right": b["completion_id"]}})
        self.record(left, fa, picked=choice == "a")
        self.record(right, fb, picked=choice == "b")
        self.sim.vote(left, right, choice)
        chosen = (b, right, tb, fb, convs[1]) if choice == "b" else (a, left, ta, fa, convs[0])
        j = judge.thumbs(self.persona, chosen[3], s, self.rng, self.extremes_only)
        if j.value is not None:  # some users also thumb the answer they picked
            self.feedback({"completion_id": chosen[0]["completion_id"], "kind": "thumbs", "value": j.value,
                           "reasons": j.reasons})
        return chosen[0]["completion_id"], chosen[1], chosen[2], chosen[4]

    def single(self, prompt: Prompt, messages: list[dict[str, str]]) -> tuple[str, str | None, str, str]:
        s = self.sim.cfg.settings
        r = self.chat(self.arm, messages)
        choice = r["choices"][0]
        cid, text = choice["completion_id"], choice["message"]["content"]
        feats = judge.features(text, prompt)
        j = self.rate(cid, self.arm, prompt, text, feats)
        if j.value == -1 and self.rng.random() < s.regenerate_share:
            self.feedback({"completion_id": cid, "kind": "implicit", "signal": "regenerate"})
            r = self.chat(self.arm, messages)
            choice = r["choices"][0]
            cid, text = choice["completion_id"], choice["message"]["content"]
            self.rate(cid, self.arm, prompt, text, judge.features(text, prompt))
        return cid, self.arm, text, r["conversation_id"]

    def conversation(self) -> None:
        s = self.sim.cfg.settings
        prompt = self.sim.pools.draw(self.rng, self.persona.pools)
        messages = [{"role": "user", "content": prompt.text}]
        compare = self.rng.random() < s.compare_share
        cid, model, text, conv = (self.compare if compare else self.single)(prompt, messages)
        self.stats["conversations"] += 1
        if judge.features(text, prompt)["offer"] and self.persona.weights["offer"] > 0 \
                and self.rng.random() < s.followup_share:
            self.feedback({"completion_id": cid, "kind": "implicit", "signal": "continue"})
            follow = [*messages, {"role": "assistant", "content": text},
                      {"role": "user", "content": self.rng.choice(FOLLOW_UPS)}]
            r = self.chat(model, follow, conversation_id=conv)
            c = r["choices"][0]
            ctext = c["message"]["content"]
            self.rate(c["completion_id"], model, Prompt("chat", follow[-1]["content"]), ctext,
                      judge.features(ctext, Prompt("chat", follow[-1]["content"])))
            self.stats["second_turns"] += 1

    def run(self, conversations: int) -> dict[str, Any]:
        try:
            if self.persona.instructions and self.exclusive:
                self.api.call("PUT", "/v1/me/instructions", {"text": self.persona.instructions})
                self.stats["custom_instructions"] += 1
            # Heavy users chat more: activity scales the count (rounded at random, so it is
            # right on average).
            want = conversations * self.persona.activity
            n = int(want) + (1 if self.rng.random() < want - int(want) else 0)
            for _ in range(n):
                self.conversation()
        finally:
            self.api.close()
        return {"user": self.index, "persona": self.persona.name, "extremes_only": self.extremes_only,
                "arm": self.arm, **self.stats}


class _Sim:
    def __init__(self, base: str, cfg: Simulation, pools: PromptPools, seed: int, arms: list[str],
                 default_model: str | None, timeout: float) -> None:
        self.base, self.cfg, self.pools, self.seed = base, cfg, pools, seed
        self.arms, self.default_model, self.timeout = arms, default_model, timeout
        self.lock = threading.Lock()
        self.by_arm: dict[str, Counter[str]] = defaultdict(Counter)
        self.votes: list[dict[str, str]] = []

    def note(self, persona: str, model: str, feats: dict[str, float], j: judge.Judgement | None,
             picked: bool | None) -> None:
        with self.lock:
            c = self.by_arm[model]
            c["shown"] += 1
            c["flattery"] += int(feats["flattery"])
            c["offer"] += int(feats["offer"])
            if j is not None and j.value is not None:
                c["thumbs_up" if j.value > 0 else "thumbs_down"] += 1
            if picked is not None:
                c["compared"] += 1
                c["picked"] += int(picked)

    def vote(self, a: str | None, b: str | None, choice: str) -> None:
        with self.lock:
            winner = {"a": "model_a", "b": "model_b"}.get(choice, "tie")
            self.votes.append({"model_a": a or "default", "model_b": b or "default", "winner": winner})


def run(server_url: str, key: str | list[str], personas: Simulation, users: int, conversations: int,
        seed: int = 0, *, data_dir: str | Path | None = None, arms: list[str] | None = None,
        default_model: str | None = None, concurrency: int = 2, timeout: float = 600.0,
        done_users: set[int] | None = None, on_user_done: Callable[[dict[str, Any]], None] | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Drive the server at `server_url` with `users` simulated users, `conversations` each
    (scaled by persona activity). `key`: one API key for every user (they then share an account
    and custom instructions are skipped) or one key per user. `arms`: the registered models
    compared side by side (default: the personas file's arms; none: `n=2` samples of
    `default_model`). `done_users` are skipped (resuming a killed run: a user's behaviour
    depends only on `seed` and their index); `on_user_done` receives each finished user's stats.
    Returns a summary: counts, per-arm rates, the pairwise votes and the settings."""
    if users < 1 or conversations < 1:
        raise ValueError("users and conversations must be at least 1")
    keys = [key] * users if isinstance(key, str) else list(key)
    if len(keys) < users:
        raise ValueError(f"key: {len(keys)} key(s) for {users} users; give one key, or one per user")
    arm_names = [a.name for a in personas.arms] if arms is None else list(arms)
    pools = build_pools(data_dir, seed=seed + 1)
    sim = _Sim(server_url, personas, pools, seed, arm_names, default_model, timeout)
    assigned = allocate(users, personas.personas)
    exclusive = len(set(keys[:users])) == users
    t0 = time.perf_counter()
    done = set(done_users or ())
    results: list[dict[str, Any]] = []

    def one(i: int) -> dict[str, Any]:
        out = _User(sim, i, assigned[i], keys[i], exclusive).run(conversations)
        if on_user_done is not None:
            on_user_done(out)
        if progress is not None:
            progress(f"user {i + 1}/{users} ({out['persona']}) done: {out.get('conversations', 0)} conversations")
        return out

    todo = [i for i in range(users) if i not in done]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        results = list(pool.map(one, todo))
    totals: Counter[str] = Counter()
    for r in results:
        totals.update({k: v for k, v in r.items() if isinstance(v, int) and not isinstance(v, bool) and k != "user"})
    per_arm = {}
    for model, c in sorted(sim.by_arm.items()):
        rated = c["thumbs_up"] + c["thumbs_down"]
        per_arm[model] = {
            **c, "thumbs_up_rate": c["thumbs_up"] / rated if rated else None,
            "pick_rate": c["picked"] / c["compared"] if c["compared"] else None,
            "flattery_rate": c["flattery"] / c["shown"] if c["shown"] else None,
            "offer_rate": c["offer"] / c["shown"] if c["shown"] else None,
        }
    by_persona: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        by_persona[r["persona"]].update({k: v for k, v in r.items() if isinstance(v, int) and not isinstance(v, bool) and k != "user"})
        by_persona[r["persona"]]["users"] += 1
    return {
        "users": len(results), "skipped_users": sorted(done), "seconds": round(time.perf_counter() - t0, 2),
        "totals": dict(totals), "arms": per_arm, "personas": {k: dict(v) for k, v in by_persona.items()},
        "votes": sim.votes, "pools": pools.sources, "seed": seed, "config": personas.to_dict(),
        "shared_account": not exclusive, "user_results": results,
    }
