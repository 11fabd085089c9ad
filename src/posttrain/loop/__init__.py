"""The loop's stages, run by one orchestration for `posttrain demo` (simulated users, the
embedded model) and `posttrain loop` (a real deployment's store, on a schedule).

    from posttrain.loop import run_demo
    state = run_demo(Path("demo-out"), mode="quick")      # resumes when demo-out has a state.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from posttrain.loop.stages import Context, Stage, StageUnavailable, load_state, open_state, run_stages, stage_summary

__all__ = ["Context", "Stage", "StageUnavailable", "load_state", "open_state", "run_demo", "run_stages",
           "stage_summary"]


def run_demo(out: Path, mode: str = "quick", *, log: Callable[[str], None] = print, **settings: Any) -> dict[str, Any]:
    """Run (or resume) the demo in `out`; returns the final state (stages with results and
    seconds). The report is OUT/report.json and OUT/report.html."""
    import json

    from posttrain.loop.demo import demo_settings, demo_stages

    import os

    from posttrain.models.embedded import model_cache_dir

    out = Path(out).resolve()
    s = demo_settings(mode, **settings)
    ctx = Context(out=out, settings=s, state=open_state(out, "demo", s), log=log)
    # A fresh home for everything the run writes (store, snapshots, trained models); the
    # converted embedded model is shared with the usual home.
    saved = {k: os.environ.get(k) for k in ("POSTTRAIN_HOME", "POSTTRAIN_MODEL_CACHE", "POSTTRAIN_DATABASE_URL",
                                            "POSTTRAIN_TORCH_THREADS")}
    os.environ["POSTTRAIN_MODEL_CACHE"] = str(model_cache_dir())
    if not (os.environ.get("POSTTRAIN_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS")):
        # The demo has the machine to itself: its server (simulate) and its evaluation generate
        # on every core, not on all but one as a chat server beside other work does
        # (models/local.py). Measured in docs/demo.md; POSTTRAIN_TORCH_THREADS overrides it.
        os.environ["POSTTRAIN_TORCH_THREADS"] = str(len(os.sched_getaffinity(0)))
    os.environ["POSTTRAIN_HOME"] = str(out / "home")
    os.environ.pop("POSTTRAIN_DATABASE_URL", None)
    try:
        state = run_stages(demo_stages(), ctx)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    report = out / "report.json"
    if report.exists():  # the report stage cannot know its own seconds: patch them in
        data = json.loads(report.read_text())
        data["stages"] = stage_summary(state)
        report.write_text(json.dumps(data, indent=2, default=str))
    return state
