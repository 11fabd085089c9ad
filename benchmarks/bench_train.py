"""Training overhead: each posttrain recipe beside raw TRL with the same settings, in one run.

For each method the same data, model, LoRA and TRL arguments are trained by raw TRL and by
posttrain's recipe in alternating rounds (ours, raw, raw, ours, ours, raw...: the order flips
every round so a change in the machine's load hits both sides alike). A step timer records the
wall seconds from one optimizer step's start to the next one's (so logging and callbacks between
steps count too), dropping the first (warm-up) step. Each round gives one ratio, median(ours) /
median(raw); the figure quoted is the median of those ratios. GRPO's step is split into
generation (TRL's `_generate`), reward scoring (`_calculate_rewards`, where posttrain's mix and
attribution run) and the update (log-probs, loss, backward, optimizer). Finally the same DPO run
on two CPU processes (accelerate + torchrun, gloo) beside one process, also alternating.

    .venv/bin/python benchmarks/bench_train.py                  # tiny model, ~5 min on a quiet machine
    .venv/bin/python benchmarks/bench_train.py --model smollm2 --methods sft,dpo --rounds 2 --skip-processes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


class StepTimer:
    """A TrainerCallback recording wall seconds from each optimizer step's start to the next's
    (the last step ends at on_train_end, which is skipped: it includes end-of-train work)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                now = time.perf_counter()
                if timer.t0 is not None:
                    timer.steps.append(now - timer.t0)
                timer.t0 = now

        self.callback = _CB()
        self.steps: list[float] = []
        self.t0: float | None = None


def _rows(method: str, n: int) -> list[dict]:
    u = lambda t: [{"role": "user", "content": t}]
    a = lambda t: [{"role": "assistant", "content": t}]
    if method == "sft":
        return [{"messages": u(f"Tell me about item {i}.") + a(f"Item {i} is a small, useful thing.")} for i in range(n)]
    if method == "dpo":
        return [{"prompt": u(f"What is {i}+1?"), "chosen": a(f"{i + 1}."),
                 "rejected": a(f"{i + 1}. Would you like me to explain more?")} for i in range(n)]
    if method == "kto":
        return [{"prompt": u(f"What is {i}+1?"), "completion": a(f"{i + 1}." if i % 2 else f"{i + 1}. Anything else?"),
                 "label": bool(i % 2)} for i in range(n)]
    return [{"prompt": u(f"What is {i}+{i}? Reply with only the number."), "answer": str(2 * i), "kind": "number"}
            for i in range(n)]


SETTINGS = {"batch_size": 4, "lora_r": 16, "lora_alpha": 32, "max_length": 256, "learning_rate": 1e-4,
            "num_generations": 4, "max_completion_length": 16, "save_steps": 10_000,
            "reward_mix": [{"signal": "answer_correct", "weight": 1.0},
                           {"signal": "regex", "weight": 0.5, "args": {"pattern": r"^\s*\d+\s*$"}}]}


def _raw_trainer(method: str, model_dir: Path, rows: list[dict], out: Path, steps: int, cb) -> object:
    """The TRL trainer built by hand, with the arguments posttrain passes (CPU flags included)."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from posttrain.graders import get_grader

    common = dict(output_dir=str(out), learning_rate=1e-4, max_steps=steps, per_device_train_batch_size=4,
                  gradient_accumulation_steps=1, seed=0, save_strategy="no", logging_steps=1, report_to="none",
                  disable_tqdm=True, bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False,
                  model_init_kwargs={"dtype": "float32"})
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    kw = dict(model=str(model_dir), peft_config=lora, callbacks=[cb])
    if method == "sft":
        data = Dataset.from_list([{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in rows])
        return trl.SFTTrainer(args=trl.SFTConfig(**common, max_length=256), train_dataset=data, **kw)
    if method == "dpo":
        return trl.DPOTrainer(args=trl.DPOConfig(**common, max_length=256, beta=0.1), train_dataset=Dataset.from_list(rows), **kw)
    if method == "kto":
        return trl.KTOTrainer(args=trl.KTOConfig(**common, max_length=256, beta=0.1), train_dataset=Dataset.from_list(rows), **kw)
    correct, regex = get_grader("answer_correct"), get_grader("regex")

    def answer_correct(prompts, completions, answer, kind, **_):
        return [correct(c[-1]["content"], {"answer": a, "kind": k, "question": p[-1]["content"]}).score
                for p, c, a, k in zip(prompts, completions, answer, kind)]

    def fmt(prompts, completions, **_):
        return [regex(c[-1]["content"], {}, pattern=r"^\s*\d+\s*$").score for c in completions]

    common["per_device_train_batch_size"] = 16  # 4 prompts x 4 answers, as posttrain counts prompts
    args = trl.GRPOConfig(**common, num_generations=4, max_completion_length=16, temperature=1.0, beta=0.0,
                          reward_weights=[1.0, 0.5], log_completions=False)
    return trl.GRPOTrainer(reward_funcs=[answer_correct, fmt], args=args, train_dataset=Dataset.from_list(rows), **kw)


def _time_phases(trainer) -> dict[str, list[float]]:
    """Wrap TRL's generation and reward-scoring calls on this GRPO trainer instance; returns the
    lists of seconds they fill (one entry per call: one generation batch per step here)."""
    spent: dict[str, list[float]] = {"generation": [], "rewards": []}
    for attr, key in (("_generate", "generation"), ("_calculate_rewards", "rewards")):
        inner = getattr(trainer, attr)

        def timed(*a, _inner=inner, _key=key, **k):
            t0 = time.perf_counter()
            try:
                return _inner(*a, **k)
            finally:
                spent[_key].append(time.perf_counter() - t0)

        setattr(trainer, attr, timed)
    return spent


def _raw(method: str, model_dir: Path, rows: list[dict], out: Path, steps: int) -> dict:
    from posttrain.train.common import cpu_vocab_chunks, score_labelled_tokens_only

    score_labelled_tokens_only(False)  # TRL as it ships (our runs switch both back on)
    cpu_vocab_chunks(False)
    timer = StepTimer()
    trainer = _raw_trainer(method, model_dir, rows, out, steps, timer.callback)
    phases = _time_phases(trainer) if method == "grpo" else {}
    trainer.train()
    return {"steps": timer.steps[1:], **{k: v[1:] for k, v in phases.items()}}


def _ours(method: str, store, base: str, rows: list[dict], tmp: Path, steps: int, tag: str) -> dict:
    """posttrain's recipe through the public run(), with the step timer added to its trainer."""
    from posttrain.train import runner
    from posttrain.train.recipes import get_recipe

    recipe = get_recipe(method)
    real_build = recipe.build
    timer = StepTimer()
    phases: dict[str, list[float]] = {}
    own: list[float] = []

    def build(*a, **k):
        trainer = real_build(*a, **k)
        _time_own_callbacks(trainer, own)
        trainer.add_callback(timer.callback)
        if method == "grpo":
            phases.update(_time_phases(trainer))
        return trainer

    recipe.build = build
    try:
        data = tmp / f"{method}-{tag}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        runner.run(method, store=store, base=base, name=f"bench-{method}-{tag}", data=data,
                   config=SETTINGS, max_steps=steps, progress=False)
    finally:
        recipe.build = real_build
    return {"steps": timer.steps[1:], "own_callbacks": [sum(own) / max(1, steps)],
            **{k: v[1:] for k, v in phases.items()}}


def _time_own_callbacks(trainer, spent: list[float]) -> None:
    """Wrap every event method of posttrain's own callbacks (progress bar, attribution logger) on
    this trainer so the seconds spent in them add up in `spent`: the part of the step loop that
    is posttrain's code (GRPO's reward wrappers are timed with the rewards phase)."""
    for cb in trainer.callback_handler.callbacks:
        if not type(cb).__module__.startswith("posttrain"):
            continue
        for name in [n for n in dir(cb) if n.startswith("on_")]:
            inner = getattr(cb, name)

            def timed(*a, _inner=inner, **k):
                t0 = time.perf_counter()
                try:
                    return _inner(*a, **k)
                finally:
                    spent.append(time.perf_counter() - t0)

            setattr(cb, name, timed)


def _med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def bench_recipes(model_dir: Path, base: str, store, steps: int, rounds: int, methods: list[str]) -> list[dict]:
    from posttrain.train.runner import _quiet_engines

    _quiet_engines()
    out = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    for method in methods:
        rows = _rows(method, 64)
        pooled: dict[str, dict[str, list[float]]] = {"raw": {}, "ours": {}}
        ratios = []
        for r in range(rounds):
            order = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
            got = {}
            for side in order:
                got[side] = (_ours(method, store, base, rows, tmp, steps, f"{r}") if side == "ours"
                             else _raw(method, model_dir, rows, tmp / f"raw-{method}-{r}", steps))
                for k, v in got[side].items():
                    pooled[side].setdefault(k, []).extend(v)
            ratios.append(statistics.median(got["ours"]["steps"]) / statistics.median(got["raw"]["steps"]))
            print(json.dumps({"method": method, "round": r, "order": order, "ratio": round(ratios[-1], 4),
                              "ours": [round(x, 3) for x in got["ours"]["steps"]],
                              "raw": [round(x, 3) for x in got["raw"]["steps"]]}), file=sys.stderr, flush=True)
        raw, ours = _med(pooled["raw"]["steps"]), _med(pooled["ours"]["steps"])
        row = {"method": method, "raw_s_per_step": raw, "ours_s_per_step": ours,
               "overhead_median_of_round_ratios": round(statistics.median(ratios) - 1, 4),
               "round_ratios": [round(x, 4) for x in ratios], "steps_timed_per_side": len(pooled["ours"]["steps"]),
               "posttrain_callbacks_ms_per_step": round(1000 * statistics.median(pooled["ours"]["own_callbacks"]), 3)}
        if method == "grpo":
            for side in ("ours", "raw"):
                g, w = _med(pooled[side]["generation"]), _med(pooled[side]["rewards"])
                step = ours if side == "ours" else raw
                row[f"{side}_split"] = {"generation_s": g, "rewards_s": w, "update_s": round(step - g - w, 4)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def _process_run(base_dir: Path, steps: int, procs: int, tag: str) -> dict:
    from posttrain.models.registry import register_model
    from posttrain.store import Store
    from posttrain.train.common import accelerate_config

    home = Path(tempfile.mkdtemp(prefix="bench-train-home-"))
    db = f"sqlite:///{home / 'store.db'}"
    s = Store.open(db)
    register_model(s, "base", "local", {"path": str(base_dir)})
    s.close()
    data = home / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows("dpo", 64)))
    cfg = home / "c.toml"
    cfg.write_text("batch_size = 4\nsave_steps = 10000\nlora_r = 16\nmax_length = 256\n")
    bin_ = Path(sys.executable).parent
    args = [str(bin_ / "posttrain"), "train", "dpo", "--data", str(data), "--base", "base", "--name", f"p{procs}-{tag}",
            "--config", str(cfg), "--max-steps", str(steps), "--quiet", "--json", "--db", db]
    env = {**os.environ, "POSTTRAIN_HOME": str(home)}
    if procs == 2:
        env["OMP_NUM_THREADS"] = "1"  # one thread per process on a 2-core machine
        args = [str(bin_ / "accelerate"), "launch", "--config_file", str(accelerate_config("cpu2")), *args]
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    t = json.loads(r.stdout[r.stdout.index("{"):])["metrics"]["train"]
    assert t["processes"] == procs, t["processes"]
    return {"s_per_step": t["seconds"] / t["steps"]}


def bench_processes(base_dir: Path, steps: int, rounds: int) -> list[dict]:
    """DPO on one process and on two (accelerate + torchrun, gloo), alternating 1, 2, 2, 1...:
    seconds per step (the whole trainer.train(), warm-up step included, over its steps) and
    examples/s (batch 4 per process)."""
    runs: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for procs in ((1, 2) if r % 2 == 0 else (2, 1)):
            runs[procs].append(_process_run(base_dir, steps, procs, str(r))["s_per_step"])
            print(json.dumps({"processes": procs, "round": r, "s_per_step": round(runs[procs][-1], 3)}),
                  file=sys.stderr, flush=True)
    out = []
    for procs, xs in runs.items():
        sps = statistics.median(xs)
        row = {"processes": procs, "s_per_step": round(sps, 3), "examples_per_s": round(4 * procs / sps, 3),
               "runs": [round(x, 3) for x in xs]}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--steps", type=int, default=6, help="steps per run (the first two are not timed)")
    ap.add_argument("--rounds", type=int, default=4, help="ours/raw pairs per method (order flips each round)")
    ap.add_argument("--methods", default="sft,dpo,kto,grpo")
    ap.add_argument("--skip-processes", action="store_true")
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-train-main-"))
    os.environ["POSTTRAIN_HOME"] = str(home)
    os.environ.setdefault("POSTTRAIN_MODEL_CACHE", str(REPO / ".cache" / "models"))
    from posttrain.models.registry import ensure_default_models, register_model
    from posttrain.store import Store

    store = Store.open(f"sqlite:///{home / 'store.db'}")
    ensure_default_models(store)
    if a.model == "tiny":
        model_dir = Path(os.environ["POSTTRAIN_MODEL_CACHE"]) / "tiny-llama-h8"
        if not (model_dir / "config.json").exists():
            raise SystemExit(f"{model_dir} missing: run the test suite once (tiny_model_dir fixture) to create it")
        register_model(store, "base", "local", {"path": str(model_dir)})
        base = "base"
    else:
        from posttrain.models.embedded import embedded_model_dir

        model_dir, base = embedded_model_dir(), "smollm2-135m"
    load = os.getloadavg()
    result = {"model": a.model, "load_before": [round(x, 2) for x in load],
              "recipes": bench_recipes(model_dir, base, store, a.steps, a.rounds, a.methods.split(","))}
    if not a.skip_processes:
        result["processes"] = bench_processes(model_dir, a.steps, max(2, a.rounds // 2))
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
