"""`posttrain reward`: train, evaluate, score with and audit reward models; best-of-n baselines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from posttrain.cli._common import db_option, emit, fail

reward_app = typer.Typer(help="Reward models: train (pairwise or pointwise), eval, score, bias audit, best-of-n.",
                         no_args_is_help=True)


def _open_store(db: str | None) -> Any:
    from posttrain.store import Store

    from posttrain.models.registry import ensure_default_models

    try:
        store = Store.open(db)
        ensure_default_models(store)  # so names like smollm2-135m resolve, as in `models list`
        return store
    except Exception as exc:  # a bad URL or unreachable server: one line, no traceback
        reason = " ".join(str(exc).split("(Background on")[0].split())
        fail(f"cannot open the store at {db or 'the default location'}: {reason[:240]}")


def _msg(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _fmt_ci(r: dict[str, Any]) -> str:
    return f"{r['accuracy']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] on {r['n']} pairs"


@reward_app.command("train")
def train_cmd(
    name: str = typer.Option(..., "--name", help="Name to register the reward model under."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="JSONL in TRL's layout: prompt/chosen/rejected (pairwise) or prompt/completion/label (pointwise)."),
    snapshot: Optional[str] = typer.Option(None, "--snapshot", help="Hash (or prefix) of a stored export instead of --pairs."),
    backbone: str = typer.Option("minilm", "--backbone", help="minilm (all-MiniLM-L6-v2, fast), smollm2, or a Hugging Face folder."),
    kind: str = typer.Option("pairwise", "--kind", help="pairwise (Bradley–Terry on preferences) or pointwise (thumbs)."),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training rows."),
    learning_rate: float = typer.Option(5e-5, "--lr", help="Peak learning rate (linear warm-up and decay)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Pairs (or rows) per step."),
    max_length: int = typer.Option(256, "--max-length", help="Tokens per (conversation, answer); the oldest turns are cut first."),
    heldout: float = typer.Option(0.1, "--heldout", help="Share of prompts held out for the reported accuracy."),
    heldout_pairs: Optional[Path] = typer.Option(None, "--heldout-pairs", help="Evaluate on this file instead of a held-out split."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Train a reward model, report held-out accuracy (95 % CI), ECE and length correlation,
    and register it with its lineage."""
    from posttrain.reward import train_reward_model

    store = _open_store(db)
    try:
        result = train_reward_model(store, name=name, pairs=pairs, snapshot=snapshot, backbone=backbone, kind=kind,
                                    epochs=epochs, seed=seed, learning_rate=learning_rate, batch_size=batch_size,
                                    max_length=max_length, heldout=heldout, heldout_path=heldout_pairs,
                                    progress=not quiet)
    except (ValueError, KeyError, RuntimeError) as exc:
        fail(_msg(exc))
    finally:
        store.close()
    h, t = result["heldout"], result["train"]
    human = (f"registered reward model {name} ({kind}, {t['backbone']}): held-out accuracy {_fmt_ci(h)}, "
             f"ECE {h['ece']:.3f}, reward~length Spearman {h['length_spearman']:+.2f}; "
             f"{t['steps']} steps in {t['seconds']:.0f} s\nnext: posttrain reward audit {name}")
    emit(result, as_json, human)


@reward_app.command("eval")
def eval_cmd(
    name: str = typer.Argument(..., help="A registered reward model."),
    pairs: Path = typer.Option(..., "--pairs", help="Preference JSONL (TRL layout) to measure pairwise accuracy on."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pairwise accuracy of a reward model on a preference file, with a 95 % Wilson interval."""
    from posttrain.reward import evaluate_reward_model

    store = _open_store(db)
    try:
        result = evaluate_reward_model(store, name, pairs)
    except (ValueError, KeyError) as exc:
        fail(_msg(exc))
    finally:
        store.close()
    emit(result, as_json, f"{name}: accuracy {_fmt_ci(result)}, ECE {result['ece']:.3f}")


@reward_app.command("score")
def score_cmd(
    name: str = typer.Argument(..., help="A registered reward model."),
    input: Path = typer.Option(..., "--input", help="JSONL rows: prompt+completion, prompt+chosen+rejected, or messages."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write scored JSONL here (default: stdout)."),
    db: Optional[str] = db_option(),
) -> None:
    """Score answers in batches: each input row comes back with `score` (or `chosen_score` and
    `rejected_score`)."""
    from posttrain.reward import score_file

    store = _open_store(db)
    try:
        result = score_file(store, name, input, output)
    except (ValueError, KeyError) as exc:
        fail(_msg(exc))
    finally:
        store.close()
    if output is None:
        for row in result:  # type: ignore[union-attr]
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        typer.echo(f"scored {result} rows into {output}", err=True)


@reward_app.command("audit")
def audit_cmd(
    name: str = typer.Argument(..., help="A registered reward model."),
    threshold: float = typer.Option(0.55, "--threshold", help="Flag a property when the biased side wins more often than this..."),
    ci_floor: float = typer.Option(0.5, "--ci-floor", help="...and the 95 % interval's lower bound is above this."),
    n: int = typer.Option(120, "--n", help="Probe pairs per property (at least 100 for the default verdict)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe phrasings and questions."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Probe what a reward model pays for (sycophancy, flattery, engagement bait, padding,
    confident errors, markdown); stores the result with the RM. Exit 0 clean, 1 flagged, 2 bad
    input."""
    from posttrain.reward import audit_reward_model

    store = _open_store(db)
    try:
        report = audit_reward_model(store, name, threshold=threshold, ci_floor=ci_floor, n_per_property=n, seed=seed)
    except (ValueError, KeyError) as exc:
        fail(_msg(exc))
    finally:
        store.close()
    lines = [f"{'PROPERTY':<26} {'N':>4} {'RATE':>6} {'95% CI':>16} {'GAP(SD)':>8}  VERDICT"]
    for p in report["properties"]:
        lines.append(f"{p['property']:<26} {p['n']:>4} {p['preference_rate']:>6.3f} "
                     f"[{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] {p['reward_gap_sd']:>+8.2f}  {'FLAGGED' if p['flagged'] else 'ok'}")
    lines.append(f"{name}: {'FLAGGED' if report['flagged'] else 'clean'} (rate = how often the RM prefers the biased answer)")
    emit(report, as_json, "\n".join(lines))
    raise typer.Exit(1 if report["flagged"] else 0)


@reward_app.command("best-of-n")
def best_of_n_cmd(
    name: str = typer.Argument(..., help="Name to register the best-of-n model under."),
    base: str = typer.Option(..., "--base", help="The registered chat model to sample from."),
    rm: str = typer.Option(..., "--rm", help="The registered reward model that picks the answer."),
    n: int = typer.Option(4, "--n", help="Samples per request."),
    db: Optional[str] = db_option(),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a best-of-n model (servable and evaluable like any model): n samples from BASE,
    the one RM scores highest."""
    from posttrain.models.best_of_n import register_best_of_n

    store = _open_store(db)
    try:
        info = register_best_of_n(store, name, base, rm, n=n)
    except (ValueError, KeyError) as exc:
        fail(_msg(exc))
    finally:
        store.close()
    warn = info.metrics["best_of_n"]["rm_audit_flagged"]
    note = {True: " (warning: its RM is flagged by the audit)", None: " (its RM has not been audited)"}.get(warn, "")
    emit(info.to_dict(), as_json, f"registered {name}: best of {n} from {base}, picked by {rm}{note}")


def register(app: typer.Typer) -> None:
    """Add the `reward` group to the main CLI."""
    app.add_typer(reward_app, name="reward")
