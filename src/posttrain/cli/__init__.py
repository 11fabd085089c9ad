"""The `posttrain` command. Each command group lives in its own module and only calls the Python API.

A group module exposes `register(app)`; this file wires them up and turns expected errors into a
one-line message (no traceback) with exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    help="posttrain: the post-training feedback loop of a chat assistant, on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order is the order of `posttrain --help`.
_GROUPS = [
    "serve", "users", "models_cmd", "evals_cmd", "export_cmd", "reward_cmd", "train_cmd",
    "gate_cmd", "arena_cmd", "ab_cmd", "stats_cmd", "compare_cmd", "simulate_cmd", "loop_cmd",
    "demo",
]

for _name in _GROUPS:
    try:
        _module = importlib.import_module(f"posttrain.cli.{_name}")
    except ModuleNotFoundError as exc:  # a group still being written must not break the others
        if exc.name != f"posttrain.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    from posttrain.cli._common import UserError

    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
