"""The one orchestration of the loop's stages, shared by `posttrain demo` and `posttrain loop`.

A run is a list of stages and an output folder. Each stage's result and seconds are recorded in
OUT/state.json as soon as it ends (written atomically), so:
- a finished stage is not redone when the run is started again with the same OUT;
- a killed run resumes at the first stage that did not finish;
- a stage whose API is not in this build is recorded as "unavailable" with that sentence (and is
  tried again on the next start, when the part may have landed); stages that need it are
  "skipped". Nothing is faked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["Context", "Stage", "StageUnavailable", "load_state", "run_stages", "save_state"]

STATE_FILE = "state.json"
DONE, FAILED, UNAVAILABLE, SKIPPED = "done", "failed", "unavailable", "skipped"


class StageUnavailable(RuntimeError):
    """Raised by a stage whose API is not in this build (the message says which)."""


@dataclass(frozen=True)
class Stage:
    """`run(ctx) -> dict` (JSON-ready). `needs`: stages whose results it reads; `requires`:
    modules that must be importable (the parts of posttrain it calls)."""

    name: str
    run: Callable[["Context"], dict[str, Any]]
    needs: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    title: str = ""


@dataclass
class Context:
    out: Path
    settings: dict[str, Any]
    state: dict[str, Any]
    log: Callable[[str], None] = print
    resources: dict[str, Any] = field(default_factory=dict)  # e.g. a running server, closed at the end

    def result(self, name: str) -> dict[str, Any] | None:
        """The result of stage `name` if it is done, else None."""
        rec = self.state["stages"].get(name)
        return rec["result"] if rec and rec["status"] == DONE else None

    def store(self, url: str | None) -> Any:
        """The store at `url`, opened once per run and closed with the other resources."""
        if "store" not in self.resources:
            from posttrain.store import Store

            self.resources["store"] = _Closing(Store.open(url))
        return self.resources["store"].store

    def path(self, *parts: str) -> Path:
        p = self.out.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


class _Closing:
    def __init__(self, store: Any) -> None:
        self.store = store

    def close(self) -> None:
        self.store.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_state(out: Path) -> dict[str, Any] | None:
    p = out / STATE_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc}); remove it to start over") from None


def save_state(out: Path, state: dict[str, Any]) -> None:
    """Write state.json atomically (a kill mid-write leaves the previous version)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, out / STATE_FILE)


def _missing_module(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


def open_state(out: Path, kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The state of the run in `out`: resumed when its settings match, new when there is none.
    Raises ValueError when `out` holds a run made with other settings."""
    state = load_state(out)
    if state is None:
        return {"kind": kind, "settings": settings, "created_at": _now(), "stages": {}, "order": [], "starts": 0}
    if state.get("kind") != kind or state.get("settings") != settings:
        diff = sorted(k for k in set(settings) | set(state.get("settings", {}))
                      if settings.get(k) != state.get("settings", {}).get(k))
        raise ValueError(f"{out} holds a {state.get('kind')} run with other settings ({', '.join(diff) or 'kind'}); "
                         "use another --out or remove that folder")
    return state


def _exit_on_sigterm() -> Any:
    """SIGTERM raises SystemExit, so a terminated run still stops what it started (the server)
    and leaves state.json as of its last finished stage. Returns the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def run_stages(stages: list[Stage], ctx: Context) -> dict[str, Any]:
    """Run the stages in order, recording each in state.json; returns the state. A failing
    stage is recorded with its error and the run goes on with the stages that do not need it."""
    import signal

    previous = _exit_on_sigterm()
    state = ctx.state
    state["order"] = [s.name for s in stages]
    state["starts"] = state.get("starts", 0) + 1
    save_state(ctx.out, state)
    total = len(stages)
    try:
        for i, stage in enumerate(stages, 1):
            rec = state["stages"].get(stage.name)
            label = f"[{i}/{total}] {stage.name}"
            if rec and rec["status"] == DONE:
                ctx.log(f"{label}: done earlier ({rec['seconds']:.1f} s), not redone")
                continue
            blocked = [n for n in stage.needs if ctx.result(n) is None]
            missing = _missing_module(stage.requires)
            rec = {"status": None, "result": None, "seconds": 0.0, "started_at": _now(),
                   "attempts": (rec or {}).get("attempts", 0) + 1}
            if blocked:
                rec.update(status=SKIPPED, reason=f"stage {stage.name}: skipped (needs {', '.join(blocked)})")
            elif missing:
                rec.update(status=UNAVAILABLE, reason=f"stage {stage.name}: not available in this build ({missing} is missing)")
            else:
                ctx.log(f"{label}: {stage.title or stage.name} ...")
                t0 = time.perf_counter()
                try:
                    rec.update(status=DONE, result=stage.run(ctx))
                except StageUnavailable as exc:
                    rec.update(status=UNAVAILABLE, reason=f"stage {stage.name}: not available in this build ({exc})")
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    rec.update(status=FAILED, reason=f"stage {stage.name}: failed: {type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc(limit=8))
                rec["seconds"] = round(time.perf_counter() - t0, 2)
            rec["finished_at"] = _now()
            state["stages"][stage.name] = rec
            save_state(ctx.out, state)
            if rec["status"] == DONE:
                ctx.log(f"{label}: done in {rec['seconds']:.1f} s")
            else:
                ctx.log(f"{label}: {rec['reason']}")
    finally:
        for res in reversed(list(ctx.resources.values())):
            close = getattr(res, "close", None)
            if callable(close):
                close()
        ctx.resources.clear()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return state


def stage_summary(state: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"name", "status", "seconds", "reason"?}] in run order."""
    out = []
    for name in state.get("order", []):
        rec = state["stages"].get(name, {})
        row = {"name": name, "status": rec.get("status", "pending"), "seconds": rec.get("seconds", 0.0)}
        if rec.get("reason"):
            row["reason"] = rec["reason"]
        out.append(row)
    return out
