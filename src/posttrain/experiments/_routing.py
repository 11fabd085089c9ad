"""Sticky routing for the chat endpoint, cached per process.

`route` runs on every chat request, on the event loop, so its usual path touches no database:
the active experiments are cached per store, and the cache is checked against the one-row
`experiments_version` table at most every REFRESH_S seconds (a primary-key read). A change made
anywhere (the CLI, another server) bumps that version in the same transaction, so every server
follows it within REFRESH_S; a change made in this process applies at once.

The same refresh also schedules the guardrail check of each running experiment every
`check_seconds`, in a background thread: automatic rollback needs no separate daemon.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from typing import Any

from posttrain.store._store import Store

REFRESH_S = 0.25
log = logging.getLogger("posttrain.experiments")


class _Routes:
    def __init__(self) -> None:
        self.version: int | None = None
        self.checked = float("-inf")
        self.by_baseline: dict[str, dict[str, Any]] = {}
        self.last_guard: dict[str, float] = {}
        self.guarding = threading.Lock()


_routes: weakref.WeakKeyDictionary[Store, _Routes] = weakref.WeakKeyDictionary()


def bucket(experiment_id: str, user_id: str) -> float:
    """A user's place in [0, 1) for one experiment: sticky, and independent across experiments."""
    h = hashlib.sha256(f"{experiment_id}\x00{user_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def invalidate(store: Store) -> None:
    """Reread the experiments on the next request (called after a change in this process)."""
    r = _routes.get(store)
    if r is not None:
        r.checked = float("-inf")
        r.version = None


def _refresh(store: Store, r: _Routes, now: float) -> None:
    from posttrain.store import experiments as q

    r.checked = now
    try:
        with store.session() as s:
            v = q.version(s)
            if v == r.version:
                return
            active = q.active_experiments(s)
    except Exception:  # e.g. a store not yet migrated to 0002: no experiments, never a failed chat
        log.exception("could not read the experiments; routing unchanged")
        return
    r.version = v
    r.by_baseline = {e["baseline"]: e for e in active}


def _guard(store: Store, r: _Routes, now: float) -> None:
    """Start one background guardrail check for each running experiment that is due."""
    for exp in list(r.by_baseline.values()):
        if exp["status"] != "running":
            continue
        every = float(exp["config"].get("check_seconds", 60.0))
        if now - r.last_guard.get(exp["id"], float("-inf")) < every:
            continue
        if not r.guarding.acquire(blocking=False):
            return  # a check is still running
        r.last_guard[exp["id"]] = now

        def run(name: str = exp["name"]) -> None:
            from posttrain.experiments._manage import status

            try:
                result = status(store, name, check=True)
                if result["auto_rollback"]:
                    log.warning("experiment %s rolled back: %s", name, result["auto_rollback"])
            except Exception:
                log.exception("guardrail check of experiment %s failed", name)
            finally:
                r.guarding.release()

        threading.Thread(target=run, name="posttrain-guardrail", daemon=True).start()


def route(store: Store, user_id: str, requested_model: str) -> tuple[str, dict[str, Any] | None]:
    """(model to use, assignment to log on the completion, or None when no experiment applies)."""
    r = _routes.get(store)
    if r is None:
        r = _routes.setdefault(store, _Routes())
    now = time.monotonic()
    if now - r.checked > REFRESH_S:
        _refresh(store, r, now)
        if r.by_baseline:
            _guard(store, r, now)
    exp = r.by_baseline.get(requested_model)
    if exp is None:
        return requested_model, None
    if exp["status"] == "promoted":
        return exp["candidate"], {"experiment": exp["name"], "id": exp["id"], "arm": "promoted"}
    arm = "candidate" if bucket(exp["id"], user_id) < exp["fraction"] else "baseline"
    model = exp["candidate"] if arm == "candidate" else exp["baseline"]
    return model, {"experiment": exp["name"], "id": exp["id"], "arm": arm}
