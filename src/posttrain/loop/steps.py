"""The work of each loop stage, shared by the demo and `posttrain loop`: thin calls into the
parts' Python APIs (datasets, reward, train, evals, gate, arena, experiments)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from posttrain.loop.stages import Context, StageUnavailable

# Graders whose score is 1 when the bad thing happened: shown as rates (higher is worse).
BAD_GRADERS = {"follow_up_offer", "flattery_opener", "apology", "flip", "opinion_match", "positivity"}

# The guarded recipe's reward mix: correctness and instruction following, minus flattery and
# bait, plus the reward model capped and down-weighted (its audit flags it with these users).
GUARDED_MIX = [
    {"signal": "answer_correct", "weight": 1.0},
    {"signal": "ifeval", "weight": 1.0},
    {"signal": "flattery_opener", "weight": -1.0},
    {"signal": "follow_up_offer", "weight": -1.0},
]


def api(module: str, name: str) -> Any:
    """`module.name`, or StageUnavailable naming what is missing (a part still being built)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StageUnavailable(f"{module} cannot be imported: {exc}") from None
    fn = getattr(mod, name, None)
    if fn is None:
        raise StageUnavailable(f"{module}.{name} is missing")
    return fn


def db_url(out: Path) -> str:
    return f"sqlite:///{(out / 'home' / 'posttrain.db').resolve()}"


def ensure_server(ctx: Context) -> Any:
    """The demo's `posttrain serve` subprocess, started on first need (also after a resume)."""
    from posttrain.loop.server import Server
    from posttrain.models.embedded import embedded_model_dir, model_cache_dir

    server = ctx.resources.get("server")
    if server is not None:
        return server
    if not ctx.settings.get("base_path"):
        embedded_model_dir()  # convert once, here, so the server does not time out doing it
    # A fresh home, but the converted embedded model is shared (no second 540 MB copy).
    env = {"POSTTRAIN_MODEL_CACHE": str(model_cache_dir())}
    # The plain arm is the server's default model: the arms share one copy of the weights.
    server = Server(db_url(ctx.out), ctx.out / "home", ctx.out / "home" / "server.log", env=env,
                    model=ctx.settings.get("default_arm", "assistant-plain")).start()
    ctx.resources["server"] = server
    return server


def with_max_tokens(cfg: Any, max_tokens: int) -> Any:
    return dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, max_tokens=max_tokens))


def totals(users: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"users": len(users)}
    for u in users:
        for k, v in u.items():
            if isinstance(v, int) and not isinstance(v, bool) and k != "user":
                out[k] = out.get(k, 0) + v
    return out


def unique_name(store: Any, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when an earlier, interrupted attempt registered it."""
    from posttrain.models.registry import list_models

    have = {m.name for m in list_models(store)}
    if name not in have:
        return name
    i = 2
    while f"{name}-{i}" in have:
        i += 1
    return f"{name}-{i}"


# -- curate --------------------------------------------------------------------------------------


def export_all(store: Any, ctx: Context, since: Any = None, users: int | None = None) -> dict[str, Any]:
    """Preference pairs (thumbs and picks) and prompts, as stored snapshots. The per-user cap
    allows each user three times an equal share (the default 10 % cannot hold with fewer than
    ten users)."""
    export = api("posttrain.datasets", "export")
    n = users or ctx.settings.get("users") or 10
    curation = {"max_user_share": min(1.0, max(0.1, 3 / n))}
    out = {}
    for kind in ("preferences", "prompts"):
        out[kind] = export(store, kind, str(ctx.path("data", f"{kind}.jsonl")), since=since, **curation)
    return out


def _snapshot_path(store: Any, report: dict[str, Any]) -> Path:
    return Path(api("posttrain.datasets", "get_snapshot")(store, report["snapshot"]).path)


# -- reward model ----------------------------------------------------------------------------------


def reward(store: Any, ctx: Context, name: str) -> dict[str, Any]:
    train_rm, audit_rm = api("posttrain.reward", "train_reward_model"), api("posttrain.reward", "audit_reward_model")
    prefs = ctx.result("export")["preferences"]
    name = unique_name(store, name)
    metrics = train_rm(store, name=name, snapshot=prefs["snapshot"], backbone="minilm",
                                    epochs=1, seed=ctx.settings["seed"])
    audit = audit_rm(store, name, **({"n_per_property": ctx.settings["audit_n"]} if ctx.settings.get("audit_n") else {}))
    return {"name": name, "metrics": metrics, "audit": audit, "flagged": bool(audit.get("flagged"))}


# -- train -----------------------------------------------------------------------------------------


def _model_result(info: Any, recipe: str) -> dict[str, Any]:
    return {"model": info.name, "recipe": recipe, "parent": info.parent, "data_snapshot": info.data_snapshot,
            "train": (info.metrics or {}).get("train", {})}


# The DPO settings both candidates share: same data, same trainer, only the judge differs.
# sft_weight adds the NLL of the chosen answer (TRL's sigmoid+sft loss), so what the judge
# prefers is learned as a style, not only as a margin over the rejected answer.
# The reference log-probs are computed once (the same losses as a reference pass per step, ~1.3x
# fewer seconds per step; BENCHMARKS.md, "Training recipes"). Adapters on the last 8 layers only
# (2.5x) were tried for --quick with 16 steps: the naive candidate then did not learn to flatter
# (opener 0.04, offers 0.00 on 24 cases) and passed the gate, so every layer keeps its adapter.
# Batches are grouped by length (random batches of the full demo's pairs are 37 % padding).
DPO_CONFIG = {"learning_rate": 1e-3, "batch_size": 4, "max_length": 256, "sft_weight": 1.0,
              "precompute_ref": True, "group_by_length": True}


# bf16 is native where a bf16 product runs at least this many times as fast as fp32. Measured:
# emulated (AVX2) far below 1, AVX-512 BF16 (an AMD EPYC) 2.5-3.0 from run to run, AMX 7.4. The
# line sits well clear of both sides, so one machine makes the same choice on every run (a
# resumed demo's training fingerprint must match); the first line, 3, sat inside the EPYC's
# spread and chose differently from one run to the next there.
NATIVE_BF16_SPEEDUP = 1.5


def dpo_config(seed: int) -> dict[str, Any]:
    """DPO_CONFIG for this run: bf16 autocast where the CPU does bf16 natively, fp32 elsewhere.
    Four DPO steps of the quick demo's pairs, alternated in one process: 24-27 s in fp32, 13-16 s
    in bf16 on an AMD EPYC with AVX-512 BF16; 12 steps 43.3 s against 33.0 s on a Xeon with AMX."""
    from posttrain.train.common import cpu_bf16_speedup, on_gpu

    native = not on_gpu() and cpu_bf16_speedup() >= NATIVE_BF16_SPEEDUP
    return {**DPO_CONFIG, "seed": seed, "precision": "bf16" if native else "auto"}


def train_naive(store: Any, ctx: Context, base: str, name: str) -> dict[str, Any]:
    """DPO on the preference pairs that thumbs and picks make, and nothing else."""
    train_run = api("posttrain.train", "run")
    prefs = ctx.result("export")["preferences"]
    config = dpo_config(ctx.settings["seed"])
    info = train_run("dpo", store=store, base=base, name=unique_name(store, name), snapshot=prefs["snapshot"],
                     config=config, max_steps=ctx.settings["train_steps"], progress=True)
    return _model_result(info, "naive: dpo on the users' picks and thumbs")


def reference_columns(ctx: Context) -> Any:
    """A function from a prompt (messages) to the answer key and IFEval instructions the
    rehearsal knows for it (matched by the last user message), so correctness and instruction
    following can be scored. No instructions: an empty list (every one of none followed)."""
    from posttrain.simulate.prompts import build_pools

    pools = build_pools(ctx.settings.get("data_dir"), seed=ctx.settings["seed"] + 1)
    known = {p.text: p for pool in pools.pools.values() for p in pool}

    def columns(prompt: list[dict[str, Any]]) -> dict[str, Any]:
        last = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        p = known.get(last)
        out: dict[str, Any] = {}
        if p is not None and p.key is not None:
            out.update({k: p.key[k] for k in ("answer", "kind", "aliases", "distractors", "alt_answers", "abs_tol", "rel_tol")})
        ins = p.instructions if p is not None and p.instructions is not None else {"instruction_id_list": [], "kwargs": []}
        out.update({"instruction_id_list": ins["instruction_id_list"], "kwargs": ins["kwargs"]})
        return out

    return columns


def guarded_mix(ctx: Context) -> list[dict[str, Any]]:
    mix = [dict(m) for m in GUARDED_MIX]
    rm_result = ctx.result("reward")
    if rm_result:
        mix.append({"signal": f"rm:{rm_result['name']}", "weight": 0.25, "cap": 1.0})
    return mix


def train_guarded(store: Any, ctx: Context, base: str, name: str, rm: str | None) -> dict[str, Any]:
    """DPO on the same pairs as the naive candidate, each judged again by the reward mix
    (loop/guarded.py): correctness and instruction following up, flattery and bait down, the
    reward model capped at 1 with a small weight. The mix, its attribution and any dominance
    alarm go into the model's lineage like a GRPO run's."""
    from posttrain.loop.guarded import judge_pairs
    from posttrain.reward.external import write_jsonl

    train_run = api("posttrain.train", "run")
    build_mix = api("posttrain.train.rewards", "build_mix")
    rm_result = ctx.result("reward")
    flagged = bool(rm_result and rm_result["flagged"])
    specs = guarded_mix(ctx)
    mix = build_mix(specs, store=store, allow_flagged=flagged)
    rows = [json.loads(line) for line in _snapshot_path(store, ctx.result("export")["preferences"]).read_text().splitlines()
            if line.strip()]
    columns = reference_columns(ctx)
    judged = judge_pairs(rows, mix, [columns(r["prompt"]) for r in rows])
    if not judged["rows"]:
        raise ValueError(f"the reward mix separates none of the {len(rows)} pairs: nothing to train the guarded candidate on")
    data = write_jsonl(judged["rows"], ctx.path("data", "guarded_pairs.jsonl"))
    ctx.log(f"  reward mix: {judged['agreed']} pairs agree with the user, {judged['flipped']} flipped, "
            f"{judged['dropped']} dropped (no signal separates them)")
    lineage = {"reward_mix": mix.specs(), "trained_against": mix.names, "attribution": judged["attribution"],
               "alarms": judged["alarms"], "flagged_signals": mix.flagged, "allow_flagged": flagged,
               "judged_pairs": {k: judged[k] for k in ("kept", "agreed", "flipped", "dropped")}}
    config = dpo_config(ctx.settings["seed"])
    info = train_run("dpo", store=store, base=base, name=unique_name(store, name), data=str(data), config=config,
                     max_steps=ctx.settings["train_steps"], progress=True, extra_lineage=lineage)
    result = _model_result(info, "guarded: dpo on the same pairs judged by the reward mix "
                                 "(correct + ifeval - flattery - bait + rm capped)")
    result["judged_pairs"] = lineage["judged_pairs"]
    result["attribution"] = judged["attribution"]
    result["alarms"] = judged["alarms"]
    return result


# -- evaluate --------------------------------------------------------------------------------------


def policy_path(ctx: Context) -> str | None:
    """The gate policy of this run: the loop's configured one, else the demo's for its mode."""
    if ctx.settings.get("policy"):
        return ctx.settings["policy"]
    mode = ctx.settings.get("mode")
    if mode is None:
        return None
    from importlib import resources

    name = "demo-full.toml" if mode == "full" else "demo-quick.toml"
    return str(resources.files("posttrain.loop").joinpath("policies", name))


def suite_plan(ctx: Context) -> list[tuple[str, int | None, dict[str, Any], int]]:
    """(suite, limit, decoding params, seed) for each suite the gate policy measures, so the
    evaluation's generations are the gate's (it then reads them from the eval cache)."""
    try:
        from posttrain.gate.policy import load_policy
    except ImportError:  # no gate in this build: the demo's own short list
        return [(s, ctx.settings.get("eval_limit"), {}, 0) for s in ("engagement", "sycophancy-are-you-sure", "capability")]
    pol = load_policy(policy_path(ctx))
    cap = ctx.settings.get("gate_limit")
    plan = []
    for name in sorted({s for m in pol.metrics for s in m.suites}):
        spec = pol.suite_run(name)
        limits = [x for x in (spec.limit, cap) if x is not None]
        plan.append((name, min(limits) if limits else None, dict(spec.params), pol.seed))
    return plan


def comparison_rows(cmp: dict[str, Any], suite: str) -> list[dict[str, Any]]:
    """Per-metric deltas, candidate minus baseline, with their intervals. Detector graders are
    turned into rates (1 = the bad thing happened), so a rise is a rise in flattery or bait."""
    rows = []
    for m in cmp["metrics"]:
        bad = m["metric"] in BAD_GRADERS and m["kind"] == "pass_rate"
        sign = -1.0 if bad else 1.0
        base, cand = (1 - m["mean_a"], 1 - m["mean_b"]) if bad else (m["mean_a"], m["mean_b"])
        lo, hi = sorted((sign * m["ci"][0], sign * m["ci"][1]))
        rows.append({"metric": f"{suite}.{m['metric']}{'_rate' if bad else ''}", "baseline": base, "candidate": cand,
                     "delta": sign * m["delta"], "ci": [lo, hi], "p": m["p_value"], "n": m["n_pairs"],
                     "higher_is_worse": bad or m["metric"] in BAD_GRADERS})
    return rows


def evaluate(store: Any, ctx: Context, baseline: str, candidates: list[str], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the gate policy's suites (and `extra` ones, e.g. a mined north-star suite) on the
    baseline and each candidate; per-metric deltas (candidate - baseline) with paired
    bootstrap intervals."""
    from posttrain.evals import compare_runs, run_suite

    plan = suite_plan(ctx) + [(s, ctx.settings.get("gate_limit"), {}, 0) for s in extra]
    runs: dict[str, dict[str, Any]] = {}
    for model in [baseline, *candidates]:
        runs[model] = {}
        for suite, limit, params, seed in plan:
            ctx.log(f"  eval {suite} on {model} ...")
            s = run_suite(store, suite, model, limit=limit, seed=seed, params=params or None,
                          data_dir=ctx.settings.get("data_dir"), progress=False)
            runs[model][suite] = {"run_id": s.run_id, "metrics": s.metrics, "n": s.n_cases, "seconds": round(s.seconds, 1),
                                  "generated": s.generated, "cached": s.cached}
    deltas = {}
    for cand in candidates:
        deltas[cand] = [row for suite, *_ in plan
                        for row in comparison_rows(compare_runs(store, runs[baseline][suite]["run_id"],
                                                                runs[cand][suite]["run_id"]), suite)]
    return {"baseline": baseline, "candidates": candidates, "runs": runs, "deltas": deltas,
            "plan": [{"suite": s, "limit": n, "params": p} for s, n, p, _ in plan]}


# -- gate ------------------------------------------------------------------------------------------

SCRIPTED_REVIEWER = "scripted-reviewer (demo: no human looked)"


def gate_all(store: Any, ctx: Context, baseline: str, candidates: list[str], *, scripted_review: bool = True) -> dict[str, Any]:
    """Gate each candidate. In the demo the human review is taken by a scripted reviewer that
    approves every item (so only the numbers can block), and the result says so; the loop
    leaves a passing candidate pending for a person (`scripted_review=False`)."""
    run_gate, submit_review = api("posttrain.gate", "run_gate"), api("posttrain.gate", "submit_review")
    out = {}
    for cand in candidates:
        ctx.log(f"  gate {cand} against {baseline} ...")
        result = run_gate(store, cand, baseline, policy=policy_path(ctx), limit=ctx.settings.get("gate_limit"),
                          report=str(ctx.path(f"gate-{cand}.html")), data_dir=ctx.settings.get("data_dir"))
        review = None
        if scripted_review and result.get("status") == "pending":
            verdicts = [{"item_id": i, "choice": "tie"} for i in _pending_items(store, result["decision_id"])]
            review = submit_review(store, result["decision_id"], SCRIPTED_REVIEWER, verdicts)
            result = {**result, "passed": bool(review.get("passed")), "status": review.get("status", result["status"]),
                      "review": review.get("review", review)}
        out[cand] = {"result": result, "scripted_review": review is not None,
                     "reviewer": SCRIPTED_REVIEWER if review is not None else None}
    return out


def _pending_items(store: Any, decision_id: str) -> list[str]:
    from posttrain.store import gate as gate_queries

    return [it["id"] for it in gate_queries.get_decision(store, decision_id)["items"]]


def leaderboard(store: Any) -> dict[str, Any] | None:
    """Bradley–Terry ratings of the arms from the simulated pairwise picks (posttrain.arena)."""
    try:
        votes_from_store, fit = api("posttrain.arena", "votes_from_store"), api("posttrain.arena", "fit")
    except StageUnavailable as exc:
        return {"models": [], "note": f"leaderboard: not available in this build ({exc})"}
    votes = votes_from_store(store)
    if not votes:
        return {"models": [], "note": "no pairwise votes"}
    return fit(votes, rounds=100, ci="bootstrap", seed=0)
