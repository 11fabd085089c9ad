"""Starting, watching and ending experiments; every change is recorded as an event."""

from __future__ import annotations

import getpass
from datetime import datetime, timezone
from typing import Any

from posttrain.experiments._metrics import DEFAULT_MARGINS, METRICS, MIN_SAMPLES, observations, summarize
from posttrain.store import experiments as q
from posttrain.store._store import Store

DEFAULT_ALPHA = 0.05
DEFAULT_CHECK_SECONDS = 60.0


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (some containers)
        return "cli"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _public(exp: dict[str, Any]) -> dict[str, Any]:
    return {**exp, "created_at": exp["created_at"].isoformat() if exp["created_at"] else None,
            "ended_at": exp["ended_at"].isoformat() if exp["ended_at"] else None}


def get(store: Store, name: str) -> dict[str, Any]:
    """The experiment called `name`; KeyError (one line, listing the names) if there is none."""
    with store.session() as s:
        exp = q.experiment_by_name(s, name)
        if exp is None:
            names = [e["name"] for e in q.list_experiments(s)]
            raise KeyError(f"no experiment named {name!r}; experiments: {', '.join(names) or '(none)'}")
        return exp


def start(store: Store, name: str, *, baseline: str, candidate: str, fraction: float,
          margins: dict[str, float] | None = None, alpha: float = DEFAULT_ALPHA,
          check_seconds: float = DEFAULT_CHECK_SECONDS, actor: str | None = None) -> dict[str, Any]:
    """Route `fraction` of `baseline`'s users (sticky) to `candidate`. Takes effect on running
    servers from their next request (no restart; docs/scale.md gives the bound). ValueError/KeyError for bad input."""
    from posttrain.models.registry import get_model

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be between 0 and 1 (exclusive), got {fraction}")
    if baseline == candidate:
        raise ValueError("candidate: must differ from the baseline")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be between 0 and 1, got {alpha}")
    margins = dict(margins or {})
    bad = sorted(set(margins) - {m for m, spec in METRICS.items() if spec[2] == "guardrail"})
    if bad:
        raise ValueError(f"margin: unknown guardrail {bad[0]!r}; guardrails: {', '.join(DEFAULT_MARGINS)}")
    get_model(store, baseline)
    get_model(store, candidate)
    config = {"margins": {**DEFAULT_MARGINS, **margins}, "alpha": alpha, "check_seconds": check_seconds}

    def write(s: Any) -> dict[str, Any]:
        busy = [e for e in q.active_experiments(s) if e["baseline"] == baseline]
        if busy:
            raise ValueError(f"experiment {busy[0]['name']!r} already routes {baseline!r} ({busy[0]['status']}); "
                             "stop it first")
        now = _now()
        exp = q.insert_experiment(s, name=name, baseline=baseline, candidate=candidate, fraction=fraction,
                                  status="running", config=config, created_at=now)
        q.add_event(s, exp["id"], "started", actor or _actor(), {"fraction": fraction, **config}, now)
        return exp

    exp = store.write(write)
    _invalidate(store)
    return _public(exp)


def _invalidate(store: Store) -> None:
    from posttrain.experiments._routing import invalidate

    invalidate(store)


def _end(store: Store, name: str, status: str, kind: str, actor: str | None, data: dict[str, Any],
         allowed: tuple[str, ...]) -> dict[str, Any]:
    exp = get(store, name)
    if exp["status"] not in allowed:
        raise ValueError(f"experiment {name!r} is {exp['status']}; {kind.replace('_', ' ')} needs it "
                         f"{' or '.join(allowed)}")

    def write(s: Any) -> bool:
        now = _now()
        if not q.set_status(s, exp["id"], status, now, expect=exp["status"]):
            return False
        q.add_event(s, exp["id"], kind, actor or _actor(), data, now)
        return True

    if not store.write(write):
        raise ValueError(f"experiment {name!r} changed meanwhile; check `posttrain ab status {name}`")
    _invalidate(store)
    return _public(get(store, name))


def promote(store: Store, name: str, actor: str | None = None) -> dict[str, Any]:
    """Send all of the baseline's traffic to the candidate from now on (recorded)."""
    return _end(store, name, "promoted", "promoted", actor, {"status": status(store, name, check=False)["metrics"]},
                ("running",))


def rollback(store: Store, name: str, reason: str = "manual", actor: str | None = None,
             data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send everyone back to the baseline at once (also undoes a promotion); recorded with the reason."""
    return _end(store, name, "rolled_back", "rolled_back", actor, {"reason": reason, **(data or {})},
                ("running", "promoted"))


def stop(store: Store, name: str, actor: str | None = None) -> dict[str, Any]:
    """End a running experiment without a verdict: everyone gets the baseline again."""
    return _end(store, name, "stopped", "stopped", actor, {}, ("running",))


def status(store: Store, name: str, *, check: bool = True) -> dict[str, Any]:
    """Per-arm metrics with confidence sequences; with `check`, a running experiment whose
    guardrail shows harm beyond its margin is rolled back here and now (and says so)."""
    exp = get(store, name)
    cfg = exp["config"]
    metrics = summarize(observations(store, exp), alpha=cfg.get("alpha", DEFAULT_ALPHA),
                        margins=cfg.get("margins", {}), min_samples=cfg.get("min_samples", MIN_SAMPLES))
    harmed = [m for m in metrics if m.get("harm")]
    rolled = None
    if check and exp["status"] == "running" and harmed:
        reason = "guardrail: " + ", ".join(f"{m['metric']} {m['delta']:+.3f} (interval {m['cs'][0]:+.3f} .. "
                                           f"{m['cs'][1]:+.3f}, margin {m['margin']:+.3f})" for m in harmed)
        try:
            exp = rollback(store, name, reason=reason, actor="guardrail", data={"metrics": harmed})
            rolled = reason
        except ValueError:  # another process rolled it back first
            exp = get(store, name)
    with store.session() as s:
        events = q.events_of(s, exp["id"])
    exp = exp if isinstance(exp.get("created_at"), str) else _public(exp)
    return {"experiment": exp, "metrics": metrics,
            "decided": [m["metric"] for m in metrics if m["decided"]],
            "auto_rollback": rolled,
            "events": [{**e, "at": e["at"].isoformat() if e["at"] else None} for e in events]}


def list_all(store: Store) -> list[dict[str, Any]]:
    with store.session() as s:
        return [_public(e) for e in q.list_experiments(s)]
