"""`posttrain train sft|dpo|kto|grpo` and `posttrain distill`: thin calls into posttrain.train."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from posttrain.cli._common import db_option, emit, fail

train_app = typer.Typer(help="Fine-tune a local model (SFT, DPO, KTO, GRPO over TRL + peft) and register it with its lineage.",
                        no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print JSON (the registered model with metrics.train).")


def _open_store(db: str | None) -> Any:
    from posttrain.store import Store

    try:
        return Store.open(db)
    except Exception as exc:  # bad URL, unreachable server: one line, no traceback
        fail(f"cannot open the store at {db or 'the default location'}: {' '.join(str(exc).split())[:200]}")


def _main_process() -> bool:
    # Under `accelerate launch` every process runs this command; only the first one reports.
    return os.environ.get("RANK", "0") == "0"


def _report(info: Any, as_json: bool) -> None:
    if not _main_process():
        return
    d = info.to_dict()
    t = d["metrics"].get("train", {})
    lines = [f"registered {d['name']} ({t.get('method')}, {t.get('steps')} steps, {t.get('seconds')} s, "
             f"{t.get('processes', 1)} process(es)) from {d['parent']} at {d['config'].get('path')}"]
    if t.get("loss_start") is not None:
        lines.append(f"  loss {t['loss_start']} -> {t['loss_end']}")
    if t.get("resumed_from"):
        lines.append(f"  resumed from {t['resumed_from']}")
    if t.get("method") == "grpo":
        from posttrain.train.attribution import print_attribution

        lines.append(f"  reward {t.get('reward_start')} -> {t.get('reward_end')}")
        lines.append(print_attribution(t["attribution"], t.get("alarms", [])))
    emit(d, as_json, "\n".join(lines))


def _train(method: str, data: Optional[Path], snapshot: Optional[str], base: str, name: str,
           config: Optional[Path], max_steps: Optional[int], allow_flagged: bool, quiet: bool,
           db: Optional[str], as_json: bool) -> None:
    from posttrain.train import run

    if (data is None) == (snapshot is None):
        fail("give exactly one of --data FILE or --snapshot HASH")
    _call(db, as_json, lambda store: run(method, store=store, base=base, name=name, data=data, snapshot=snapshot,
                                         config=config, max_steps=max_steps, progress=not quiet and not as_json,
                                         allow_flagged=allow_flagged))


def _call(db: Optional[str], as_json: bool, train: Any) -> None:
    """Open the store, train, report; expected errors become one line and exit code 2."""
    store = _open_store(db)
    try:
        info = train(store)
    except (ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(" ".join(str(msg).split()))
    finally:
        store.close()
    _report(info, as_json)


def _method_command(method: str, help_text: str) -> None:
    def command(
        data: Optional[Path] = typer.Option(None, "--data", help="JSONL in the TRL layout (see docs/train.md)."),
        snapshot: Optional[str] = typer.Option(None, "--snapshot", help="A stored data snapshot (hash or prefix)."),
        base: str = typer.Option(..., "--base", help="Registered local model to start from, e.g. smollm2-135m."),
        name: str = typer.Option(..., "--name", help="Name to register the trained model under."),
        config: Optional[Path] = typer.Option(None, "--config", help="TOML config (docs/train.md); flags override it."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
        allow_flagged: bool = typer.Option(False, "--allow-flagged", help="Train against a reward model its audit flagged (recorded in the lineage)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        db: Optional[str] = db_option(),
        as_json: bool = JSON_OPT,
    ) -> None:
        _train(method, data, snapshot, base, name, config, max_steps, allow_flagged, quiet, db, as_json)

    command.__doc__ = help_text
    train_app.command(method)(command)


_method_command("sft", "Supervised fine-tuning on {messages} conversations.")
_method_command("dpo", "DPO on preference pairs {prompt, chosen, rejected}.")
_method_command("kto", "KTO on unpaired feedback {prompt, completion, label}.")
_method_command("grpo", "GRPO with the config's reward mix; prints each signal's reward attribution.")


def distill_cmd(
    teacher: str = typer.Option(..., "--teacher", help="Registered model that answers (any backend)."),
    student: str = typer.Option(..., "--student", help="Registered local model to fine-tune."),
    prompts: str = typer.Option(..., "--prompts", help="JSONL of {prompt: [msgs]} rows, or a prompts snapshot hash."),
    name: str = typer.Option(..., "--name", help="Name to register the student under."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config for the student's SFT."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop the SFT after N steps."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest teacher answer."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    db: Optional[str] = db_option(),
    as_json: bool = JSON_OPT,
) -> None:
    """Distill: the teacher answers the prompts, the answers are stored as a snapshot, the
    student is SFT'd on them and registered."""
    from posttrain.train import distill

    _call(db, as_json, lambda store: distill(store=store, teacher=teacher, student=student, prompts=prompts,
                                             name=name, config=config, max_steps=max_steps,
                                             max_new_tokens=max_new_tokens, progress=not quiet and not as_json))


def register(app: typer.Typer) -> None:
    """Add `train` and `distill` to the main CLI."""
    app.add_typer(train_app, name="train")
    app.command("distill")(distill_cmd)
