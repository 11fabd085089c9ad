"""`run_gate`: run the policy's suites on both models, test every metric against its margin, add
the lineage alarms, prepare the blind review, store the decision, write the report.

A gate never raises on what it measures — a missing suite, an unmeasurable metric or an
underpowered one becomes a blocking entry (or a warning, as the policy says) with its reason.
It raises ValueError/KeyError only for bad input (unknown model, bad policy), before storing.
"""

from __future__ import annotations

import math
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.evals.compare import paired_bootstrap_ci
from posttrain.gate import lineage as lin
from posttrain.gate.decision import result_of, wait_for_review
from posttrain.gate.measure import SuiteRuns, paired_values, suite_graders
from posttrain.gate.policy import Metric, Policy, load_policy
from posttrain.gate.replay import REPLAY_SUITE, replay_cases, replay_suite, replay_summary
from posttrain.gate.review import prepare_items
from posttrain.gate.stats import Oriented, holm, min_detectable_regression, noninferiority_p
from posttrain.ids import new_id
from posttrain.store import gate as q
from posttrain.store._store import Store


def _versions(store: Store, models: list[str]) -> dict[str, Any]:
    from posttrain.models.registry import load_backend

    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("posttrain", "torch", "transformers", "trl", "peft", "numpy", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    backends = {}
    for m in models:
        try:
            backends[m] = load_backend(store, m).version()
        except Exception as exc:  # recorded, not fatal: the runs already hold what was generated
            backends[m] = f"unavailable: {exc}"
    out["model_versions"] = backends
    return out


def _run_suites(store: Store, policy: Policy, names: list[str], base: str, cand: str, *, limit: int | None,
                data_dir: str | None, progress: bool, batch_size: int) -> dict[str, SuiteRuns]:
    from posttrain.evals.lifecycle import resolve_suite
    from posttrain.evals.runner import load_cases, run_suite

    out: dict[str, SuiteRuns] = {}
    for name in names:
        sr = SuiteRuns(name)
        out[name] = sr
        try:
            suite = resolve_suite(store, name)
        except KeyError:
            sr.error = f"suite {name!r} is not available (not installed yet?)"
            continue
        spec = policy.suite_run(name)
        suite_dir = spec.resolve_data_dir(data_dir)
        if suite.needs_data_dir and not data_dir:
            sr.error = f"suite {name!r} needs a data dir (--data-dir or gate.data_dir; its data: {suite.data_source})"
            continue
        n = min(x for x in (spec.limit, limit) if x is not None) if (spec.limit or limit) else None
        t0 = time.perf_counter()
        try:
            cases = load_cases(suite, suite_dir, policy.seed, n)
            for model, attr in ((base, "base_run"), (cand, "cand_run")):
                s = run_suite(store, suite, model, limit=n, seed=policy.seed, data_dir=suite_dir,
                              params=spec.params, progress=progress, batch_size=batch_size)
                setattr(sr, attr, s.run_id)
                sr.generated += s.generated
                sr.cached += s.cached
        except (ValueError, FileNotFoundError) as exc:
            sr.error = f"suite {name!r} could not run: {exc}"
            continue
        sr.cases = {c.id: c for c in cases}
        sr.graders = suite_graders(suite)
        sr.seconds = time.perf_counter() - t0
    return out


def _replay(store: Store, policy: Policy, base: str, cand: str, *, progress: bool, batch_size: int,
            warnings: list[str]) -> tuple[SuiteRuns | None, dict[str, Any]]:
    from posttrain.evals.runner import run_suite

    cases = replay_cases(store, policy.replay_conversations)
    info = replay_summary(cases)
    if policy.replay_conversations and not cases:
        warnings.append("replay: no logged conversations of consenting users to replay")
    if not cases:
        return None, info
    suite = replay_suite(cases, policy.replay_graders)
    sr = SuiteRuns(REPLAY_SUITE, cases={c.id: c for c in cases}, graders=suite_graders(suite))
    t0 = time.perf_counter()
    for model, attr in ((base, "base_run"), (cand, "cand_run")):
        s = run_suite(store, suite, model, seed=policy.seed, params=policy.replay_params,
                      progress=progress, batch_size=batch_size)
        setattr(sr, attr, s.run_id)
        sr.generated += s.generated
        sr.cached += s.cached
    sr.seconds = time.perf_counter() - t0
    return sr, info


def _measure(store: Store, m: Metric, runs: dict[str, SuiteRuns], policy: Policy, grader: str | None = None,
             args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metric's paired values over its suites, or {"error": why it cannot be measured}."""
    grader = grader if grader is not None else m.grader
    args = m.args if args is None else args
    keys: list[str] = []
    base: list[float] = []
    cand: list[float] = []
    errors, regraded = [], False
    for s in m.suites:
        sr = runs.get(s)
        if sr is None or sr.error:
            errors.append(sr.error if sr else f"suite {s!r} was not run")
            continue
        g = grader or (next(iter(sr.graders)) if sr.graders else None)
        k, b, c, rg = paired_values(store, sr, grader=g, args=args, value=m.value, where=m.where)
        keys += k
        base += b
        cand += c
        regraded |= rg
    if errors and not keys:
        return {"error": "; ".join(errors)}
    if not keys:
        which = f" matching {m.where}" if m.where else ""
        return {"error": f"no case of {', '.join(m.suites)}{which} has a {m.value} value for {grader or 'its grader'}"}
    return {"keys": keys, "base": np.asarray(base), "cand": np.asarray(cand), "regraded": regraded,
            "partial": errors}


def _entry(m: Metric, meas: dict[str, Any], policy: Policy, k: int) -> dict[str, Any]:
    o = Oriented(meas["base"], meas["cand"], m.direction)
    d = o.diffs
    raw = o.cand - o.base
    lo, hi = paired_bootstrap_ci(raw, seed=policy.seed)
    binary = m.value == "passed"
    mdr = min_detectable_regression(d, o.base, binary=binary, margin=m.margin, alpha=policy.alpha, k=k,
                                    power=policy.power)
    return {
        "metric": m.name, "baseline": float(o.base.mean()), "candidate": float(o.cand.mean()),
        "delta": float(raw.mean()), "ci": [float(lo), float(hi)], "margin": m.margin, "direction": m.direction,
        "n": int(d.size), "p_raw": noninferiority_p(d, m.margin), "mdr": mdr, "worse_by": float(-d.mean()),
        "action": m.action, "suites": list(m.suites), "grader": m.grader, "value": m.value,
        "regraded": meas["regraded"], "partial": meas["partial"],
    }


def _independent_metrics(policy: Policy, trained: dict[str, str | None]) -> tuple[list[tuple[Metric, dict]], list[dict]]:
    """Second measurements for blocking metrics whose grader was a training signal."""
    extra, human = [], []
    for m in policy.metrics:
        prop = m.property or m.grader
        if m.action != "block" or prop not in trained:
            continue
        check = lin.independent_check(prop, trained[prop], policy.judge)
        if check["grader"] is None:
            human.append({"metric": m.name, "property": prop, "method": check["method"]})
            continue
        im = Metric(name=f"{m.name} [independent: {check['method']}]", suites=m.suites, grader=check["grader"],
                    args=check["args"], value=m.value, direction=m.direction, margin=m.margin, action="block",
                    missing="block", where=m.where, property=prop)
        extra.append((im, check))
    return extra, human


def run_gate(
    store: Store, candidate: str, baseline: str, *, policy: str | Path | None = None, limit: int | None = None,
    wait_review: bool = False, report: str | Path | None = None, data_dir: str | Path | None = None,
    progress: bool = False, batch_size: int = 32,
) -> dict[str, Any]:
    """Gate `candidate` against `baseline` under `policy` (a TOML path; None = the default) and
    store the decision; returns the `gate --json` shape. See docs/gate.md."""
    from posttrain.models.registry import ensure_default_models, get_model

    t0 = time.perf_counter()
    pol = load_policy(policy)
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1")
    if candidate == baseline:
        raise ValueError("the candidate and the baseline are the same model")
    ensure_default_models(store)
    cand_info, base_info = get_model(store, candidate), get_model(store, baseline)
    data_dir = str(data_dir) if data_dir else pol.data_dir
    cand_lineage = lin.lineage(cand_info)
    train = cand_lineage["train"]
    trained = lin.trained_against(train)
    warnings: list[str] = []
    blocking: list[dict[str, Any]] = []

    suite_names = sorted({s for m in pol.metrics for s in m.suites} - {REPLAY_SUITE})
    runs = _run_suites(store, pol, suite_names, baseline, candidate, limit=limit, data_dir=data_dir,
                       progress=progress, batch_size=batch_size)
    replay_runs, replay_info = _replay(store, pol, baseline, candidate, progress=progress,
                                       batch_size=batch_size, warnings=warnings)
    if replay_runs is not None:
        runs[REPLAY_SUITE] = replay_runs
    t_runs = time.perf_counter()

    extra, human_checks = _independent_metrics(pol, trained)
    metrics: list[tuple[Metric, dict[str, Any] | None]] = [(m, None) for m in pol.metrics] + extra
    if replay_runs is not None:
        for g in pol.replay_graders:
            metrics.append((Metric(name=f"replay.{g}", suites=(REPLAY_SUITE,), grader=g, args={}, value="passed",
                                   direction="higher", margin=pol.replay_margin, action=pol.replay_action,
                                   missing="warn"), None))
    measured = [(m, check, _measure(store, m, runs, pol)) for m, check in metrics]
    k = sum(1 for m, _, meas in measured if m.action == "block" and "error" not in meas)
    entries: list[dict[str, Any]] = []
    for m, check, meas in measured:
        if "error" in meas:
            msg = f"{m.name}: cannot be measured: {meas['error']}"
            if m.missing == "block" and m.action == "block":
                blocking.append({"metric": m.name, "baseline": None, "candidate": None, "delta": None, "ci": None,
                                 "margin": m.margin, "p": None, "reason": f"cannot be measured: {meas['error']}"})
            else:
                warnings.append(msg)
            continue
        e = _entry(m, meas, pol, k)
        if check:
            e["independent"] = check["method"]
        entries.append(e)

    blockers = [e for e in entries if e["action"] == "block"]
    adjusted, rejected = holm([e["p_raw"] for e in blockers], pol.alpha)
    for e, p_adj, rej in zip(blockers, adjusted, rejected):
        e["p"], e["regressed"] = p_adj, rej
        e["underpowered"] = e["mdr"] > e["margin"]
    for e in entries:
        if e["action"] == "warn":
            e["p"], e["regressed"], e["underpowered"] = e["p_raw"], e["p_raw"] <= pol.alpha, e["mdr"] > e["margin"]
    for e in entries:
        short = {x: e[x] for x in ("metric", "baseline", "candidate", "delta", "ci", "margin", "p")}
        if e["regressed"]:
            reason = (f"regression beyond the margin: {e['worse_by']:.3f} worse (margin {e['margin']:g}, "
                      f"n={e['n']}, Holm p={e['p']:.3g})" if e["action"] == "block" else
                      f"regression beyond the margin ({e['worse_by']:.3f} worse, margin {e['margin']:g}, p={e['p']:.3g})")
            if e["action"] == "block":
                blocking.append({**short, "reason": reason})
            else:
                warnings.append(f"{e['metric']}: {reason}")
        if e["underpowered"] and not e["regressed"]:
            reason = (f"underpowered: detectable regression {e['mdr']:.3f} > margin {e['margin']:g} "
                      f"with {e['n']} cases")
            if e["action"] == "block" and pol.underpowered == "block":
                blocking.append({**short, "reason": reason})
            else:
                warnings.append(f"{e['metric']}: {reason}")

    worse = [e for e in entries if e["worse_by"] > 0 and not e["metric"].startswith("replay.")]
    for w in lin.goodhart_warnings(train, worse):
        if pol.goodhart == "block":
            blocking.append({"metric": "lineage:goodhart", "baseline": None, "candidate": None, "delta": None,
                             "ci": None, "margin": None, "p": None, "reason": w})
        else:
            warnings.append(w)
    for a in lin.dominance_alarms(train):
        steps = a.get("steps")
        span = f"steps {steps[0]}-{steps[1]}" if isinstance(steps, list) and len(steps) == 2 else f"{steps} steps"
        msg = (f"dominance alarm from training: signal {a.get('signal')!r} carried {float(a.get('share') or 0):.0%} "
               f"of the reward variance over {span}")
        if pol.dominance == "block":
            blocking.append({"metric": "lineage:dominance", "baseline": None, "candidate": None, "delta": None,
                             "ci": None, "margin": None, "p": None, "reason": msg})
        else:
            warnings.append(msg)

    review_required = pol.review_required
    for h in human_checks:
        warnings.append(f"{h['metric']}: trained against {h['property']!r}; no second automatic method, "
                        f"so human review is required")
        review_required = max(review_required, 1)
    decision_id = new_id("gate-")
    numbers_pass = not blocking
    status = "pending" if numbers_pass and review_required else ("passed" if numbers_pass else "blocked")
    items = (prepare_items(store, list(runs.values()), n=max(pol.review_items, 1),
                           from_replay=pol.review_from_replay, seed=decision_id) if status == "pending" else [])
    if status == "pending" and not items:
        status = "blocked"
        blocking.append({"metric": "review", "baseline": None, "candidate": None, "delta": None, "ci": None,
                         "margin": None, "p": None, "reason": "review required but no single-turn pair to review"})

    result = {"decision_id": decision_id, "candidate": candidate, "baseline": baseline, "passed": status == "passed",
              "status": status, "numbers_passed": numbers_pass, "blocking": blocking, "warnings": warnings,
              "metrics": [_public(e) for e in entries], "policy": {"source": pol.source, "hash": pol.hash},
              "timings": {"runs_s": round(t_runs - t0, 3), "decide_s": round(time.perf_counter() - t_runs, 3)}}
    evidence = {
        "runs": {n: {"baseline": r.base_run, "candidate": r.cand_run, "error": r.error, "generated": r.generated,
                     "cached": r.cached, "seconds": round(r.seconds, 3), "limit": pol.suite_run(n).limit,
                     "params": pol.suite_run(n).params} for n, r in runs.items()},
        "lineage": {"candidate": cand_lineage, "baseline": lin.lineage(base_info)},
        "trained_against": trained, "human_checks": human_checks, "replay": replay_info,
        "review_required": review_required, "holm_k": k, "alpha": pol.alpha, "power": pol.power,
        "data_dir": data_dir, "limit": limit, "versions": _versions(store, [baseline, candidate]),
    }
    q.insert_decision(store, decision_id=decision_id, candidate=candidate, baseline=baseline, status=status,
                      passed=status == "passed", policy_hash=pol.hash, policy_text=pol.text, result=result,
                      evidence=evidence, items=items)
    out = result_of(q.get_decision(store, decision_id))
    if wait_review and status == "pending":
        out = wait_for_review(store, decision_id, timeout=pol.review_wait_seconds)
    if report:
        from posttrain.gate.report import write_report

        write_report(store, decision_id, report)
    return out


def _public(e: dict[str, Any]) -> dict[str, Any]:
    keep = ("metric", "baseline", "candidate", "delta", "ci", "margin", "direction", "n", "p", "p_raw", "mdr",
            "underpowered", "regressed", "action", "suites", "grader", "value", "regraded", "independent")
    out = {k: e[k] for k in keep if k in e}
    if math.isinf(out.get("mdr", 0.0)):
        out["mdr"] = None
    return out
