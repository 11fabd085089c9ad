"""`posttrain.train.run`: data + base model + config -> a merged, registered, servable model.

One run, step by step: validate the config and the data (one-line errors before any weights
load), resolve the base model's folder, build the method's TRL trainer, train (resuming from the
last complete checkpoint when the same run was killed), merge LoRA into the weights, save an HF
folder under $POSTTRAIN_HOME/models/<name>/, and register it with its lineage. Under
`accelerate launch` every process trains; the main process saves and registers, the others wait
for it and return the same ModelInfo.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from posttrain.train.common import (cpu_vocab_chunks, load_tokenizer, on_gpu, resolve_base, runs_dir,
                                    save_merged, score_labelled_tokens_only, trained_model_dir, use_bf16,
                                    versions)
from posttrain.train.config import METHODS, TrainConfig, load_config, make_config

RUN_FILE = "run.json"


def _fingerprint(method: str, base: str, base_dir: Path, data_digest: str, cfg: TrainConfig) -> str:
    """What makes "the same command": a rerun with this fingerprint resumes the run's checkpoints."""
    payload = json.dumps([method, base, str(base_dir), data_digest, cfg.to_dict()], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest COMPLETE checkpoint: transformers writes trainer_state.json last, so a folder
    without a readable one was cut short by the kill and is skipped."""
    found = []
    for p in run_dir.glob("checkpoint-*"):
        try:
            step = int(p.name.split("-", 1)[1])
            json.loads((p / "trainer_state.json").read_text())
        except (ValueError, OSError):
            continue
        found.append((step, p))
    return max(found)[1] if found else None


def _prepare_run_dir(run_dir: Path, fingerprint: str, name: str, main: bool) -> Path | None:
    """Create the run folder, or check that the one left by an earlier attempt is this run's;
    return the checkpoint to resume from."""
    meta = run_dir / RUN_FILE
    if meta.exists():
        try:
            old = json.loads(meta.read_text()).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            old = None
        if old != fingerprint:
            raise ValueError(f"{run_dir} holds checkpoints of a different run named {name!r} (other data, base or config); "
                             f"rerun that exact command to resume it, or remove the folder")
        return last_checkpoint(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "name": name}))
        tmp.replace(meta)  # whole or absent: a reader never sees it half written
    return None


def process_state() -> Any:
    """This process's place in the run, set up as the trainer's arguments will set it up (use_cpu
    without CUDA, train/common.py). A bare PartialState() under `accelerate launch` on a CPU-only
    host comes up undistributed: every process took itself for the main one and wrote run.json
    while another read it, a race CI hit as a "different run" error."""
    from accelerate import PartialState

    return PartialState(cpu=not on_gpu())


def _losses(log_history: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    vals = [h[key] for h in log_history if key in h and isinstance(h[key], (int, float))]
    if not vals:
        return None, None
    k = max(1, min(3, len(vals) // 3))  # mean of the first and last few logs: single steps are noisy
    return round(sum(vals[:k]) / k, 6), round(sum(vals[-k:]) / k, 6)


def _training_threads() -> int | None:
    """The torch threads a training run uses: the host's cores, shared by its training processes,
    unless POSTTRAIN_TORCH_THREADS or OMP_NUM_THREADS says otherwise (None: leave torch as it is).
    The chat backend keeps a core free for the server's own threads (models/local.py); a training
    step is a few large matmuls, where the second core pays: on the quiet 2-core machine, 6 DPO
    steps of the demo (SmolLM2, batch 4) took 36.6 s on 2 threads and 68.4 s on 1."""
    import os

    if os.environ.get("POSTTRAIN_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return None
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1)  # processes on this host
    return max(1, len(os.sched_getaffinity(0)) // max(1, local))


def _quiet_engines() -> None:
    """Our progress bar is the one users see: no per-load weight bars, no deprecation notices
    about TRL's own use of transformers arguments (they are not the user's to fix)."""
    import warnings

    from transformers.utils import logging as hf_logging

    import datasets

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)(\.|$)")


def _check_name(store: Any, name: str) -> None:
    from posttrain.models.registry import get_model

    try:
        get_model(store, name)
    except KeyError:
        return
    raise ValueError(f"a model named {name!r} is already registered; choose another --name")


def run(method: str, *, store: Any, base: str, name: str, data: str | Path | None = None,
        snapshot: str | None = None, config: TrainConfig | dict[str, Any] | str | Path | None = None,
        max_steps: int | None = None, progress: bool = True, allow_flagged: bool = False,
        extra_lineage: dict[str, Any] | None = None) -> Any:
    """Train `base` with `method` on the data and register the result as `name`; returns its
    ModelInfo. `config` is a TrainConfig, a dict of its fields, or a TOML path. Bad input raises
    ValueError (ConfigError for config fields) before any weights are loaded."""
    from posttrain.models.registry import get_model, register_model
    from posttrain.train.data import load_data
    from posttrain.train.recipes import get_recipe

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    config_dir = None
    if isinstance(config, TrainConfig):
        cfg = make_config(config.to_dict(), max_steps=max_steps)
    elif isinstance(config, dict) or config is None:
        cfg = make_config(config, max_steps=max_steps)
    else:
        cfg, config_dir = load_config(config, max_steps=max_steps), Path(config).resolve().parent
    _check_name(store, name)
    use_bf16(cfg)  # a precision this hardware can't run is refused before any data or weights load
    train_data = load_data(method, store=store, data=data, snapshot=snapshot)
    base_dir = resolve_base(store, base)
    mix = attribution = None
    if method == "grpo":
        from posttrain.train.attribution import Attribution
        from posttrain.train.rewards import build_mix

        mix = build_mix(cfg.reward_mix, store=store, allow_flagged=allow_flagged, base_dir=config_dir)
        attribution = Attribution(mix, cfg.dominance_threshold, cfg.dominance_steps)

    _quiet_engines()
    state = process_state()
    run_dir = runs_dir(name)
    fingerprint = _fingerprint(method, base, base_dir, train_data.digest, cfg)
    main = state.is_main_process
    resume = _prepare_run_dir(run_dir, fingerprint, name, True) if main else None
    state.wait_for_everyone()  # the main process has created the folder and checked it
    if not main:
        resume = _prepare_run_dir(run_dir, fingerprint, name, False)

    from posttrain.train.callbacks import ATTRIBUTION_FILE, AttributionLogger, ProgressBar, remove_default_progress

    bar = ProgressBar(f"{method} {name}", enabled=progress)
    callbacks: list[Any] = [bar]
    if attribution is not None:
        callbacks.append(AttributionLogger(attribution))
        if resume is not None and (resume / ATTRIBUTION_FILE).exists():
            attribution.load_state(json.loads((resume / ATTRIBUTION_FILE).read_text()))
    tokenizer = load_tokenizer(base_dir)
    score_labelled_tokens_only()
    cpu_vocab_chunks()
    trainer = get_recipe(method).build(cfg, base_dir, tokenizer, train_data.rows, run_dir, callbacks,
                                       mix=mix, attribution=attribution)
    remove_default_progress(trainer)
    if trainer.train_dataset is not None and len(trainer.train_dataset) == 0:
        # TRL drops rows whose answer is cut off entirely; otherwise the sampler fails obscurely.
        raise ValueError(f"config field 'max_length': no row of the {len(train_data.rows)} fits in {cfg.max_length} tokens "
                         f"with some of its answer left; raise max_length")
    import torch

    threads, before = _training_threads(), torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        torch.set_num_threads(before)  # the process's own policy again (e.g. the demo's evaluation)
    seconds = time.perf_counter() - started
    final = run_dir / "final"
    trainer.save_model(str(final))  # collective: gathers sharded weights under ZeRO-3 / FSDP
    trainer.accelerator.wait_for_everyone()

    if trainer.accelerator.is_main_process:
        out = save_merged(final, base_dir, trained_model_dir(name))
        lineage = _lineage(method, cfg, trainer, mix, attribution, allow_flagged, train_data, seconds, resume)
        lineage.update(extra_lineage or {})
        if attribution is not None and cfg.eval_suites:
            from posttrain.train.eval_attribution import eval_report

            lineage["attribution"]["eval"] = eval_report(store, mix, base, name, out, cfg.eval_suites,
                                                          cfg.eval_limit, progress=progress)
        register_model(store, name, "local", {"path": str(out)}, parent=base, data_snapshot=train_data.snapshot,
                       metrics={"train": lineage})
        # Registered: the checkpoints have done their job (a full fine-tune's are GBs each).
        for ckpt in [*run_dir.glob("checkpoint-*"), final]:
            shutil.rmtree(ckpt, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return get_model(store, name)


def _lineage(method: str, cfg: TrainConfig, trainer: Any, mix: Any, attribution: Any, allow_flagged: bool,
             train_data: Any, seconds: float, resume: Path | None) -> dict[str, Any]:
    """metrics["train"] as INTERFACES.md defines it (plus data, resumed_from and loss figures)."""
    history = trainer.state.log_history
    loss_start, loss_end = _losses(history, "loss")
    reward_start, reward_end = _losses(history, "reward")
    summary = attribution.summary() if attribution is not None else {"signals": {}, "steps": []}
    return {
        "method": method,
        "config": cfg.to_dict(),
        "reward_mix": mix.specs() if mix is not None else [],
        "trained_against": mix.names if mix is not None else [],
        "attribution": summary,
        "alarms": attribution.alarms if attribution is not None else [],
        "flagged_signals": mix.flagged if mix is not None else [],
        "reward_start": reward_start,
        "reward_end": reward_end,
        "loss_start": loss_start,
        "loss_end": loss_end,
        "steps": trainer.state.global_step,
        "allow_flagged": allow_flagged,
        "versions": versions(),
        "seconds": round(seconds, 3),
        "processes": trainer.accelerator.num_processes,
        "resumed_from": resume.name if resume else None,
        "precision": "bf16" if trainer.args.bf16 else "fp32",  # what ran, whatever the config asked
        "data": {"source": train_data.source, "sha256": train_data.digest, "rows": len(train_data.rows)},
    }
