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

    out = Path(out).resolve()
    s = demo_settings(mode, **settings)
    ctx = Context(out=out, settings=s, state=open_state(out, "demo", s), log=log)
    state = run_stages(demo_stages(), ctx)
    report = out / "report.json"
    if report.exists():  # the report stage cannot know its own seconds: patch them in
        data = json.loads(report.read_text())
        data["stages"] = stage_summary(state)
        report.write_text(json.dumps(data, indent=2, default=str))
    return state
