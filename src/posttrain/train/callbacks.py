"""Trainer callbacks: our progress bar (loss and reward), and the attribution's step records and
checkpoint state."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from posttrain.train.attribution import Attribution

ATTRIBUTION_FILE = "posttrain_attribution.json"


class ProgressBar(TrainerCallback):
    """A rich bar on stderr: step of max_steps, the last loss and reward (or DPO's margin)."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled = label, enabled
        self.bar: Any = None
        self.lines = False  # stderr is not a terminal: plain progress lines
        self.total, self.started = 0, 0.0
        self.fields = {"loss": "", "reward": ""}
        self.last_logs: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.enabled or not state.is_world_process_zero:
            return
        self.total, self.started = state.max_steps, time.monotonic()
        if not sys.stderr.isatty():  # a log file: a line every tenth of the run instead of a live bar
            self.lines = True
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[loss]} {task.fields[reward]}"), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task(self.label, total=state.max_steps, completed=state.global_step, **self.fields)
        self.bar.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)
        elif self.lines:
            every = max(1, self.total // 10)
            if state.global_step % every == 0 or state.global_step == self.total:
                print(f"{self.label}: step {state.global_step}/{self.total} {self.fields['loss']} {self.fields['reward']} "
                      f"({time.monotonic() - self.started:.0f} s)".rstrip(), file=sys.stderr, flush=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        logs = logs or {}
        self.last_logs.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        if self.bar is None and not self.lines:
            return
        if "loss" in logs:
            self.fields["loss"] = f"loss {logs['loss']:.4f}"
        for key, label in (("reward", "reward"), ("rewards/margins", "margin"), ("rewards/chosen", "chosen")):
            if key in logs:
                self.fields["reward"] = f"{label} {logs[key]:.3f}"
                break
        if self.bar is not None:
            self.bar.update(self.task, **self.fields)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class AttributionLogger(TrainerCallback):
    """Closes an attribution step at each log and saves the attribution beside each checkpoint,
    so a resumed run continues its record."""

    def __init__(self, attribution: Attribution) -> None:
        self.attribution = attribution

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs:  # a training log (not the end-of-train summary)
            self.attribution.close_step(state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            tmp = folder / (ATTRIBUTION_FILE + ".tmp")
            tmp.write_text(json.dumps(self.attribution.state()))
            os.replace(tmp, folder / ATTRIBUTION_FILE)


def remove_default_progress(trainer: Any) -> None:
    """Drop transformers' own printer/progress callbacks: ours is the one users see, and stdout
    stays clean for --json."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
