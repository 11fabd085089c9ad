"""What every recipe shares: the base model's folder, TRL arguments for the CPU, LoRA, merging.

The recipes are thin: each maps posttrain's TrainConfig onto its TRL config and trainer. The
settings here are the ones posttrain fixes for the user: on the CPU `bf16=False, fp16=False,
use_cpu=True` (TRL's bf16 default makes CPU training 15-20x slower), no hub, no wandb, our own
progress bar, checkpoints every `save_steps` with the last two kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from posttrain import config as pt_config
from posttrain.train.config import TrainConfig


def runs_dir(name: str) -> Path:
    """Where a run's checkpoints live: $POSTTRAIN_HOME/runs/<name>/."""
    return pt_config.home() / "runs" / name


def trained_model_dir(name: str) -> Path:
    """Where the merged model is saved: $POSTTRAIN_HOME/models/<name>/ (a plain HF folder)."""
    return pt_config.home() / "models" / name


def resolve_base(store: Any, base: str) -> Path:
    """The HF folder of a registered local model (the embedded model is converted on first use).
    ValueError (one line) for an unknown name or a model that is not local."""
    from posttrain.models.registry import ensure_default_models, get_model

    ensure_default_models(store)
    try:
        info = get_model(store, base)
    except KeyError as exc:
        raise ValueError(f"unknown base model: {exc}") from None
    if info.backend != "local":
        raise ValueError(f"base model {base!r} is served by the {info.backend!r} backend; training needs a local model (posttrain models add NAME --backend local --path DIR)")
    if info.config.get("path"):
        folder = Path(info.config["path"])
        if not (folder / "config.json").is_file():
            raise ValueError(f"base model {base!r}: no Hugging Face folder at {folder}")
        return folder
    from posttrain.models.embedded import embedded_model_dir

    return embedded_model_dir()


def on_gpu() -> bool:
    """True when CUDA is usable (then mixed precision and GPU placement are left to accelerate)."""
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard requirement of training
        return False


@lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """How many times faster a bf16 matrix product runs than an fp32 one on this CPU, measured
    once per process (about 0.1 s). AMX makes it several times faster (7.4x on a 2-core Xeon:
    2985 against 401 GFLOP/s), AVX-512 BF16 alone about 2x at most; emulated, it is slower."""
    import time

    import torch

    def best(dtype: Any) -> float:
        a, b = torch.randn(512, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
        a @ b
        times = []
        for _ in range(5):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        return min(times)

    return best(torch.float32) / best(torch.bfloat16)


def use_bf16(cfg: TrainConfig) -> bool:
    """Whether this run trains under bf16: the config's `precision` on this hardware. bf16 on a
    CPU where it is slower than fp32 (emulated: 15-20x slower) is refused, one line naming the field."""
    import torch

    if cfg.precision == "fp32":
        return False
    if on_gpu():
        if cfg.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError("config field 'precision': this GPU does not support bf16; use 'auto' or 'fp32'")
        return torch.cuda.is_bf16_supported()
    if cfg.precision == "auto":
        return False
    speedup = cpu_bf16_speedup()
    if speedup < 1:
        raise ValueError(f"config field 'precision': this CPU has no native bf16 (a bf16 matrix product runs "
                         f"{speedup:.2f}x the speed of fp32 here); use 'auto' or 'fp32'")
    return True


def trl_args(cfg: TrainConfig, out_dir: Path, *, logging_steps: int = 1) -> dict[str, Any]:
    """Keyword arguments every TRL config gets from posttrain's config."""
    gpu, bf16 = on_gpu(), use_bf16(cfg)
    args: dict[str, Any] = {
        "output_dir": str(out_dir),
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "seed": cfg.seed,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "logging_steps": logging_steps,
        "report_to": "none",
        "disable_tqdm": True,  # our progress bar (progress.py) shows loss and reward instead
        "push_to_hub": False,
        "dataloader_num_workers": 0,
        # fp32 on the CPU unless the config asks for bf16 (where the CPU has it natively: elsewhere
        # it is emulated and 15-20x slower); GPUs get bf16 when they support it.
        "bf16": bf16,
        "fp16": False,
        "use_cpu": not gpu,
        # Activation checkpointing (TRL's default) trades ~30 % more compute for memory a CPU run
        # of a small model does not need; GPUs keep it.
        "gradient_checkpointing": gpu,
        # On the CPU the weights stay fp32 under bf16 autocast: LoRA's updates are too small for bf16.
        "model_init_kwargs": {"dtype": "bfloat16" if gpu and bf16 else "float32"},
    }
    if not gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        args["ddp_backend"] = "gloo"  # CPU processes talk over gloo (NCCL needs GPUs)
    return args


def score_labelled_tokens_only(on: bool = True) -> bool:
    """Make TRL's fused LM head score only the labelled positions on the CPU too (`on=False`:
    TRL's own choice again); True when that is now in effect.

    DPO, KTO and GRPO get their per-token log-probs from `trl.trainer.utils.add_fused_lm_head`.
    It sends the hidden states of the labelled positions alone through the 49152-word output
    projection only when Triton runs (CUDA/XPU). Elsewhere it sends every position, prompt and
    padding included, and zeroes their results. TRL says why: on Neuron a varying count would
    recompile every batch. Eager CPU runs don't recompile, so that choice only costs time. On the
    demo's DPO pairs (batch 4, SmolLM2) a step took 3.4 s scoring every position and 2.3 s scoring
    the labelled ones, with the same losses to six digits (benchmarks/bench_train.py measures it).
    The switch is TRL 1.16's own `compact` branch, reached through the module-level name it asks.
    Any other TRL, or one without that name, is left as it is (False)."""
    try:
        import trl
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover - training needs trl
        return False
    current = getattr(trl_utils, "_use_triton", None)
    original = getattr(current, "_posttrain_original", current)
    if not on:
        if original is not None:
            trl_utils._use_triton = original
        return False
    if current is None or not trl.__version__.startswith("1.16."):
        return False
    if original is current:

        def compact(device: Any) -> bool:
            return device.type == "cpu" or original(device)

        compact._posttrain_original = original  # type: ignore[attr-defined]
        trl_utils._use_triton = compact
    return True


# TRL 1.16's fused head walks the vocabulary 32768 columns at a time: one [tokens, 32768] fp32
# tile (50-80 MB for a DPO batch of the demo) that a dozen elementwise passes (max, exp, sums,
# the top-1 test) then stream through memory. That size suits a GPU. On a CPU a 4096-column tile
# stays in the caches: the head's forward and backward took 0.50 + 0.81 s at 32768 and
# 0.28 + 0.49 s at 4096 for 600 tokens (2048 and 1024 about the same as 4096), with the same
# log-probs to float rounding; four DPO steps of the demo's pairs 18.8 s -> 15.9 s, alternated
# in one process (BENCHMARKS.md, "Training recipes vs raw TRL").
CPU_VOCAB_CHUNK = 4096


def cpu_vocab_chunks(on: bool = True) -> bool:
    """Make TRL's fused LM head walk the vocabulary in CPU-sized chunks (CPU_VOCAB_CHUNK columns;
    `on=False`: TRL's own size again); True when that is now in effect. Only for TRL 1.16, whose
    module-level `_CHUNKED_LOGPROB_CHUNK_SIZE` the head reads on every call, and only for a run
    on the CPU: the size is one setting for every device, and a GPU keeps TRL's."""
    try:
        import trl
        import trl.trainer.utils as trl_utils
    except ImportError:  # pragma: no cover - training needs trl
        return False
    current = getattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", None)
    if current is None or not trl.__version__.startswith("1.16."):
        return False
    original = getattr(trl_utils, "_posttrain_original_chunk_size", current)
    trl_utils._posttrain_original_chunk_size = original
    if not on or on_gpu():
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = original
        return False
    trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = min(original, CPU_VOCAB_CHUNK)
    return True


def peft_config(cfg: TrainConfig, model_dir: Path | None = None) -> Any:
    """A peft LoraConfig, or None for full fine-tuning. With `lora_layers` = N the adapters go on
    the last N of the model's layers (read from model_dir's config.json)."""
    if cfg.finetune == "full":
        return None
    from peft import LoraConfig

    targets, layers = cfg.lora_targets, {}
    if cfg.lora_layers:
        total, linear = _layers_and_linear_names(model_dir)
        if cfg.lora_layers > total:
            raise ValueError(f"config field 'lora_layers': the model has {total} layers, got {cfg.lora_layers}")
        layers = {"layers_to_transform": list(range(total - cfg.lora_layers, total))}
        if targets == "all-linear":  # peft takes a layer subset only with a list of module names
            targets = linear
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=targets, task_type="CAUSAL_LM", **layers)


def _layers_and_linear_names(model_dir: Path | None) -> tuple[int, list[str]]:
    """The model's layer count and the names of its linear modules but the output head (what
    peft's "all-linear" means), read from an empty (meta-device) copy of the model."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    total = getattr(config, "num_hidden_layers", None)
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"config field 'lora_layers': {model_dir} names no num_hidden_layers")
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    return total, sorted(names)


def accelerate_config(name: str) -> Path:
    """The packaged accelerate config `name` (cpu2, ddp, zero2, zero3, fsdp) as a file path."""
    from importlib import resources

    path = Path(str(resources.files("posttrain.train") / "accelerate" / f"{name}.yaml"))
    if not path.is_file():
        raise ValueError(f"no accelerate config {name!r}; packaged: cpu2, ddp, zero2, zero3, fsdp")
    return path


def save_merged(trained: Path, base_dir: Path, out: Path) -> Path:
    """Merge LoRA into the base weights (if `trained` is an adapter) and save model + tokenizer
    as a plain HF folder at `out`.

    `trained` is what `trainer.save_model` wrote: every process takes part in that call, which is
    what gathers ZeRO-3 / FSDP shards into whole weights, so this merge (main process only) works
    the same after any engine. The folder is written to a temp name and renamed, so `out` is
    either complete or absent; LocalBackend then serves it like any other checkpoint, and its
    version() (a hash of the weight files, the generation cache's key) differs from the base's
    because the weights do.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if (trained / "adapter_config.json").exists():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, trained).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        load_tokenizer(trained if (trained / "tokenizer_config.json").exists() else base_dir).save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        if out.exists():  # left by a run that died between saving and registering
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def versions() -> dict[str, str]:
    """Versions of the engines that trained the model (stored in the lineage)."""
    out = {}
    for pkg in ("trl", "peft", "torch", "transformers", "accelerate", "datasets"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def load_tokenizer(folder: Path) -> Any:
    """The base's tokenizer with a pad token (TRL pads batches; SmolLM2's has one, others may not)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise ValueError(f"the tokenizer in {folder} has no chat template; the TRL layouts are conversational")
    return tok
