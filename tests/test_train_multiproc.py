"""The multi-process path: the same DPO recipe under `accelerate launch` with two CPU processes
(gloo), registered like any other run; the GPU configs parsed and validated by accelerate's own
launcher; real GPU runs behind the `gpu` marker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.train.common import accelerate_config
from tests.test_train import _write, dpo_rows

BIN = Path(sys.executable).parent


def _launch(config: Path, args: list[str], env: dict[str, str], extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(config), *extra, str(BIN / "posttrain"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_dpo_under_accelerate_two_cpu_processes(tmp_path, tiny_model_dir, posttrain_home):
    from posttrain.models.registry import get_model, register_model
    from posttrain.store import Store

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(db)
    register_model(store, "tiny", "local", {"path": str(tiny_model_dir)})
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 1\nsave_steps = 100\nlora_r = 4\nmax_length = 128\n")
    data = _write(tmp_path / "p.jsonl", dpo_rows(4))
    # One torch thread per process: two processes on two cores must not oversubscribe them.
    env = {**os.environ, "POSTTRAIN_HOME": str(posttrain_home), "OMP_NUM_THREADS": "1"}
    r = _launch(accelerate_config("cpu2"), ["train", "dpo", "--data", str(data), "--base", "tiny", "--name", "ddp-dpo",
                                            "--config", str(cfg), "--max-steps", "2", "--quiet", "--json", "--db", db], env)
    assert r.returncode == 0, r.stderr[-3000:]
    reports = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1, r.stdout  # only the main process reports
    t = json.loads(r.stdout[r.stdout.index("{"):])["metrics"]["train"]
    assert t["processes"] == 2 and t["steps"] == 2 and t["method"] == "dpo"
    info = get_model(store, "ddp-dpo")
    assert info.parent == "tiny" and (Path(info.config["path"]) / "model.safetensors").exists()
    store.close()


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"),
                                        ("fsdp", "FSDP"), ("cpu2", "MULTI_GPU")])
def test_packaged_accelerate_configs_load_and_validate(name, kind):
    """accelerate parses each file into its ClusterConfig and its launcher's own validation
    accepts it (the step that picks the launcher: DDP, DeepSpeed or FSDP)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = accelerate_config(name)
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == kind
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the merge step needs whole weights
    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    assert defaults.distributed_type.value == kind
    assert args.use_deepspeed == (kind == "DEEPSPEED") and args.use_fsdp == (kind == "FSDP")
    assert args.multi_gpu == (kind == "MULTI_GPU")


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3", "fsdp"])
def test_gpu_configs_train_and_register(tmp_path, posttrain_home, name):
    """Where GPUs exist: each GPU config trains the embedded model with DPO and registers it."""
    n = _gpus()
    if n < 2:
        pytest.skip(f"needs 2 GPUs, found {n}")
    if name.startswith("zero"):
        pytest.importorskip("deepspeed")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    data = _write(tmp_path / "p.jsonl", dpo_rows(16))
    env = {**os.environ, "POSTTRAIN_HOME": str(posttrain_home)}
    r = _launch(accelerate_config(name), ["train", "dpo", "--data", str(data), "--base", "smollm2-135m",
                                          "--name", f"gpu-{name}", "--max-steps", "4", "--quiet", "--json", "--db", db],
                env, ["--num_processes", str(n)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout[r.stdout.index("{"):])["metrics"]["train"]["processes"] == n


def test_exactly_one_process_is_main_under_accelerate(tmp_path):
    """The runner's own view of the run (which process creates and checks run.json): one main
    process of two. A bare PartialState() came up undistributed on a CPU-only host, both took
    themselves for the main one, and the run folder's file raced (a CI failure)."""
    script = tmp_path / "who.py"
    script.write_text("import os, sys\n"
                      "from posttrain.train.runner import process_state\n"
                      "s = process_state()\n"
                      "role = 'MAIN' if s.is_main_process else 'OTHER'\n"
                      "open(os.path.join(sys.argv[1], os.environ['RANK']), 'w').write(f'{role} {s.process_index} {s.num_processes}')\n"
                      "s.wait_for_everyone()\n")
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(accelerate_config("cpu2")), str(script), str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [(tmp_path / rank).read_text().split() for rank in ("0", "1")]
    assert seen == [["MAIN", "0", "2"], ["OTHER", "1", "2"]]
