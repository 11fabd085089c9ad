"""Training overhead: each posttrain recipe beside raw TRL with the same settings, in one run.

For each method, the same data, model, LoRA and TRL arguments are trained twice, alternating
(raw, ours, raw, ours...), and the seconds of each optimizer step after the first are recorded
by a step timer; the ratio of medians is posttrain's overhead (its progress bar, attribution,
reward wrappers, data checks). GRPO's time is split into generation and update by timing
TRL's `_generate` on the trainer. Finally the same DPO run on two CPU processes (accelerate,
gloo) beside one process.

    .venv/bin/python benchmarks/bench_train.py                  # tiny model, ~3 min
    .venv/bin/python benchmarks/bench_train.py --model smollm2  # the embedded model, ~15 min
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
    """A TrainerCallback recording wall seconds per optimizer step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.steps.append(time.perf_counter() - timer.t0)

        self.callback = _CB()
        self.steps: list[float] = []
        self.t0 = 0.0


def _rows(method: str, n: int) -> list[dict]:
    u = lambda t: [{"role": "user", "content": t}]  # noqa: E731
    a = lambda t: [{"role": "assistant", "content": t}]  # noqa: E731
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


def _time_generation(trainer) -> list[float]:
    """Wrap TRL's generation call on this trainer instance; returns the list it fills."""
    spent: list[float] = []
    inner = trainer._generate

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent.append(time.perf_counter() - t0)

    trainer._generate = timed
    return spent


def _ours(method: str, store, base: str, rows: list[dict], tmp: Path, steps: int, tag: str, timer: StepTimer):
    """posttrain's recipe, with the step timer added to its trainer."""
    from posttrain.train import runner
    from posttrain.train.recipes import get_recipe

    recipe = get_recipe(method)
    real_build = recipe.build
    gen: dict[str, list[float]] = {}

    def build(*a, **k):
        trainer = real_build(*a, **k)
        trainer.add_callback(timer.callback)
        if method == "grpo":
            gen["spent"] = _time_generation(trainer)
        return trainer

    recipe.build = build
    try:
        data = tmp / f"{method}-{tag}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        runner.run(method, store=store, base=base, name=f"bench-{method}-{tag}", data=data,
                   config=SETTINGS, max_steps=steps, progress=False)
    finally:
        recipe.build = real_build
    return gen.get("spent", [])


def bench_recipes(model_dir: Path, base: str, store, steps: int, rounds: int, methods: list[str]) -> list[dict]:
    from posttrain.train.runner import _quiet_engines

    _quiet_engines()
    out = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    for method in methods:
        rows = _rows(method, 64)
        res = {"raw": [], "ours": [], "raw_gen": [], "ours_gen": []}
        for r in range(rounds):
            timer = StepTimer()
            trainer = _raw_trainer(method, model_dir, rows if method != "sft" else rows, tmp / f"raw-{method}-{r}", steps,
                                   timer.callback)
            spent = _time_generation(trainer) if method == "grpo" else []
            trainer.train()
            res["raw"] += timer.steps[1:]
            res["raw_gen"] += spent[1:]
            timer = StepTimer()
            res["ours_gen"] += _ours(method, store, base, rows, tmp, steps, f"{r}", timer)[1:]
            res["ours"] += timer.steps[1:]
        raw, ours = statistics.median(res["raw"]), statistics.median(res["ours"])
        row = {"method": method, "raw_s_per_step": round(raw, 3), "ours_s_per_step": round(ours, 3),
               "overhead": round(ours / raw - 1, 4), "steps_timed": len(res["ours"])}
        if method == "grpo":
            g = statistics.median(res["ours_gen"]) if res["ours_gen"] else 0.0
            row.update(generation_s=round(g, 3), update_s=round(ours - g, 3),
                       raw_generation_s=round(statistics.median(res["raw_gen"]), 3) if res["raw_gen"] else None)
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def bench_processes(base_dir: Path, steps: int) -> list[dict]:
    """DPO on one process and on two (accelerate + torchrun, gloo): seconds per step, examples/s."""
    from posttrain.models.registry import register_model
    from posttrain.store import Store
    from posttrain.train.common import accelerate_config

    out = []
    for procs in (1, 2):
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
        args = [str(bin_ / "posttrain"), "train", "dpo", "--data", str(data), "--base", "base", "--name", f"p{procs}",
                "--config", str(cfg), "--max-steps", str(steps), "--quiet", "--json", "--db", db]
        env = {**os.environ, "POSTTRAIN_HOME": str(home)}
        if procs == 2:
            env["OMP_NUM_THREADS"] = "1"  # one thread per process on a 2-core machine
            args = [str(bin_ / "accelerate"), "launch", "--config_file", str(accelerate_config("cpu2")), *args]
        r = subprocess.run(args, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        t = json.loads(r.stdout[r.stdout.index("{"):])["metrics"]["train"]
        sps = t["seconds"] / t["steps"]
        row = {"processes": procs, "s_per_step": round(sps, 3), "examples_per_s": round(4 * procs / sps, 2)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
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
    result = {"model": a.model, "recipes": bench_recipes(model_dir, base, store, a.steps, a.rounds, a.methods.split(","))}
    if not a.skip_processes:
        result["processes"] = bench_processes(model_dir, a.steps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
