"""Training recipes on the tiny random model: config and data errors, each method end to end
(trained, merged, registered with lineage, served, evaluated), GRPO attribution and alarms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.train import ConfigError, make_config
from posttrain.train.data import read_rows

FAST = {"batch_size": 2, "save_steps": 100, "lora_r": 4, "lora_alpha": 8, "max_length": 64, "learning_rate": 5e-3}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _msg(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def sft_rows(n: int = 4) -> list[dict]:
    return [{"messages": _msg("user", f"Say hi {i}") + _msg("assistant", "Hi there!")} for i in range(n)]


def dpo_rows(n: int = 4) -> list[dict]:
    return [{"prompt": _msg("user", f"What is {i}+1?"), "chosen": _msg("assistant", f"{i + 1}."),
             "rejected": _msg("assistant", f"{i + 1}. Would you like me to explain?"), "source": "test"}
            for i in range(n)]


def kto_rows(n: int = 4) -> list[dict]:
    return [{"prompt": _msg("user", f"What is {i}+1?"), "completion": _msg("assistant", f"{i + 1}."),
             "label": i % 2 == 0} for i in range(n)]


def grpo_rows(n: int = 4) -> list[dict]:
    return [{"prompt": _msg("user", f"What is {i}+{i}?"), "answer": str(2 * i), "kind": "number"} for i in range(n)]


@pytest.fixture
def store(tmp_path, tiny_model_dir):
    from posttrain.models.registry import register_model
    from posttrain.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    register_model(s, "tiny", "local", {"path": str(tiny_model_dir)})
    yield s
    s.close()


# -- config and data errors (no weights loaded) ------------------------------------------------

@pytest.mark.parametrize("values, field", [
    ({"lora_r": -1}, "lora_r"), ({"learning_rate": "fast"}, "learning_rate"), ({"finetune": "qlora"}, "finetune"),
    ({"nope": 1}, "nope"), ({"reward_mix": [{"signal": "x", "cap": 0}]}, "reward_mix[0].cap"),
    ({"reward_mix": [{"signal": "x", "wieght": 1}]}, "reward_mix[0].wieght"), ({"num_generations": 1}, "num_generations"),
    ({"lora_layers": -1}, "lora_layers"), ({"precompute_ref": "yes"}, "precompute_ref"),
    ({"group_by_length": 1}, "group_by_length"), ({"precision": "fp16"}, "precision"),
])
def test_bad_config_names_the_field(values, field):
    with pytest.raises(ConfigError, match=f"config field '{field}'" if "[" not in field else "reward_mix\\[0\\]"):
        make_config(values)


def test_toml_config_and_flags_override(tmp_path):
    from posttrain.train import load_config

    p = tmp_path / "c.toml"
    p.write_text('learning_rate = 2e-4\nmax_steps = 10\n[[reward_mix]]\nsignal = "answer_correct"\nweight = 2.0\n')
    cfg = load_config(p, max_steps=3)
    assert (cfg.learning_rate, cfg.max_steps, cfg.reward_mix[0]["weight"]) == (2e-4, 3, 2.0)
    p.write_text("learning_rate = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_bad_data_is_one_line_naming_file_line_and_column(tmp_path):
    bad = _write(tmp_path / "p.jsonl", [dpo_rows(1)[0], {"prompt": _msg("user", "x"), "chosen": _msg("assistant", "y")}])
    with pytest.raises(ValueError, match=r"p.jsonl:2: missing column 'rejected'"):
        read_rows("dpo", bad)
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_rows("sft", tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="'label' must be true or false"):
        read_rows("kto", _write(tmp_path / "k.jsonl", [{**kto_rows(1)[0], "label": "yes"}]))
    # OpenAI's DPO layout is read as TRL's preference layout
    oa = {"input": {"messages": _msg("user", "hi")}, "preferred_output": _msg("assistant", "a"),
          "non_preferred_output": _msg("assistant", "b")}
    assert read_rows("dpo", _write(tmp_path / "o.jsonl", [oa]))[0]["rejected"] == _msg("assistant", "b")


def test_cli_errors_are_one_line_exit_2(tmp_path, store):
    runner = CliRunner()
    db = ["--db", f"sqlite:///{tmp_path / 'store.db'}"]
    data = _write(tmp_path / "d.jsonl", dpo_rows(2))
    cases = [
        (["train", "dpo", "--data", str(data), "--base", "no-such-model", "--name", "m"], "unknown base model"),
        (["train", "sft", "--data", str(data), "--base", "tiny", "--name", "m"], "missing column 'messages'"),
        (["train", "dpo", "--base", "tiny", "--name", "m"], "exactly one of --data"),
        (["train", "grpo", "--data", str(_write(tmp_path / "g.jsonl", grpo_rows(2))), "--base", "tiny", "--name", "m"],
         "reward_mix"),
    ]
    for args, message in cases:
        r = runner.invoke(app, [*args, *db])
        assert r.exit_code == 2, r.output
        assert message in r.output and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


# -- each method on the tiny model ---------------------------------------------------------------

def _first_weight(folder: Path):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        key = next(k for k in f.keys() if "q_proj" in k)
        return f.get_tensor(key)


def test_sft_trains_merges_registers_and_evals(tmp_path, store, tiny_model_dir):
    from posttrain.models.local import LocalBackend
    from posttrain.train import run

    info = run("sft", store=store, base="tiny", name="tiny-sft", data=_write(tmp_path / "s.jsonl", sft_rows()),
               config=FAST, max_steps=2, progress=False)
    t = info.metrics["train"]
    assert (info.parent, info.backend, t["method"], t["steps"], t["resumed_from"]) == ("tiny", "local", "sft", 2, None)
    assert {"config", "reward_mix", "trained_against", "attribution", "alarms", "versions", "seconds"} <= set(t)
    assert t["versions"]["trl"] == "1.16.0" and t["data"]["rows"] == 4
    folder = Path(info.config["path"])
    assert folder.parent.parent == Path(__import__("os").environ["POSTTRAIN_HOME"])  # $POSTTRAIN_HOME/models/NAME
    assert not (folder / "adapter_config.json").exists()  # merged, a plain HF folder
    assert not (_first_weight(folder) == _first_weight(tiny_model_dir)).all()  # LoRA merged into the weights
    assert LocalBackend(path=str(folder)).version() != LocalBackend(path=str(tiny_model_dir)).version()  # new cache key
    r = CliRunner().invoke(app, ["eval", "run", "engagement", "--model", "tiny-sft", "--limit", "2",
                                 "--max-new-tokens", "4", "--json", "--db", f"sqlite:///{tmp_path / 'store.db'}"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model"] == "tiny-sft"
    with pytest.raises(ValueError, match="already registered"):
        run("sft", store=store, base="tiny", name="tiny-sft", data=tmp_path / "s.jsonl", config=FAST, max_steps=1)


@pytest.mark.parametrize("method, rows", [("dpo", dpo_rows), ("kto", kto_rows)])
def test_preference_methods_train_and_register(tmp_path, store, method, rows):
    from posttrain.train import run

    info = run(method, store=store, base="tiny", name=f"tiny-{method}", data=_write(tmp_path / "d.jsonl", rows()),
               config=FAST, max_steps=1, progress=False)
    t = info.metrics["train"]
    assert t["method"] == method and t["steps"] == 1 and t["loss_start"] is not None
    assert t["config"]["beta"] is None and info.parent == "tiny"


def test_lora_on_the_last_layers_with_precomputed_reference(tmp_path, store, tiny_model_dir):
    """lora_layers = 1: only the last layer's weights change (the merged folder against the
    base); precompute_ref: DPO runs with the reference computed once. Too many layers: an error
    naming the field, before training."""
    from safetensors.torch import load_file

    from posttrain.train import run

    data = _write(tmp_path / "d.jsonl", dpo_rows())
    info = run("dpo", store=store, base="tiny", name="tiny-top", data=data, max_steps=2, progress=False,
               config={**FAST, "lora_layers": 1, "precompute_ref": True})
    assert info.metrics["train"]["config"]["lora_layers"] == 1 and info.metrics["train"]["config"]["precompute_ref"]
    before = load_file(str(next(tiny_model_dir.glob("*.safetensors"))))
    after = load_file(str(next(Path(info.config["path"]).glob("*.safetensors"))))
    changed = {k.split(".layers.")[1].split(".")[0] for k in before if ".layers." in k and not (before[k] == after[k]).all()}
    assert changed == {"1"}  # the tiny model has layers 0 and 1
    assert all((before[k] == after[k]).all() for k in before if ".layers." not in k)
    with pytest.raises(ValueError, match="'lora_layers': the model has 2 layers, got 3"):
        run("dpo", store=store, base="tiny", name="tiny-top-3", data=data, max_steps=1, progress=False,
            config={**FAST, "lora_layers": 3})


def test_group_by_length_batches_pairs_of_similar_length(tmp_path, store, tiny_model_dir):
    """group_by_length: each batch holds pairs of neighbouring lengths (one sorted megabatch here),
    where random batches mix them; a DPO run with it trains and records the field."""
    from transformers import AutoTokenizer

    from posttrain.train import run
    from posttrain.train.recipes import dpo

    words = [1, 40, 3, 30, 5, 20, 7, 10]  # lengths interleaved, so random order mixes short and long
    rows = [{"prompt": _msg("user", f"Count {n}."), "chosen": _msg("assistant", " ".join(["one"] * n)),
             "rejected": _msg("assistant", "no")} for n in words]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))

    def batches(group: bool) -> list[set[int]]:
        cfg = make_config({**FAST, "max_length": 512, "group_by_length": group})
        trainer = dpo.build(cfg, tiny_model_dir, tok, rows, tmp_path / f"out-{group}", callbacks=[])
        order = list(trainer._get_train_sampler())
        lengths = dpo.pair_lengths(trainer.train_dataset)
        rank = {i: r for r, i in enumerate(sorted(range(len(rows)), key=lambda i: lengths[i]))}
        return [{rank[i] for i in order[k : k + 2]} for k in range(0, len(order), 2)]

    assert sorted(map(sorted, batches(True))) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert any(sorted(map(sorted, batches(False))) != [[0, 1], [2, 3], [4, 5], [6, 7]] for _ in range(3))
    info = run("dpo", store=store, base="tiny", name="tiny-grouped", data=_write(tmp_path / "d.jsonl", rows),
               config={**FAST, "group_by_length": True}, max_steps=2, progress=False)
    assert info.metrics["train"]["config"]["group_by_length"] is True and info.metrics["train"]["steps"] == 2


def test_grpo_prints_attribution_and_flags_a_dominating_signal(tmp_path, store):
    """Two signals: answer_correct never varies on the random model (always 0), verbosity always
    does, so verbosity carries all the variance and the alarm must fire and reach the lineage."""
    cfg = tmp_path / "grpo.toml"
    cfg.write_text(
        'batch_size = 2\nnum_generations = 2\nmax_completion_length = 8\nsave_steps = 100\nlora_r = 4\n'
        'dominance_steps = 2\neval_suites = ["engagement"]\neval_limit = 2\n'
        '[[reward_mix]]\nsignal = "answer_correct"\nweight = 1.0\n'
        '[[reward_mix]]\nsignal = "verbosity"\nweight = -0.5\ncap = 50.0\nargs = {reference_words = 1}\n')
    r = CliRunner().invoke(app, ["train", "grpo", "--data", str(_write(tmp_path / "g.jsonl", grpo_rows())),
                                 "--base", "tiny", "--name", "tiny-grpo", "--config", str(cfg), "--max-steps", "2",
                                 "--quiet", "--db", f"sqlite:///{tmp_path / 'store.db'}"])
    assert r.exit_code == 0, r.output
    assert "VAR SHARE" in r.output and "ALARM dominance: verbosity" in r.output
    from posttrain.models.registry import get_model

    t = get_model(store, "tiny-grpo").metrics["train"]
    assert t["trained_against"] == ["answer_correct", "verbosity"]
    assert t["reward_mix"][1] == {"signal": "verbosity", "weight": -0.5, "cap": 50.0, "args": {"reference_words": 1}}
    assert [s["step"] for s in t["attribution"]["steps"]] == [1, 2]
    assert t["attribution"]["signals"]["verbosity"]["variance_share"] == pytest.approx(1.0)
    assert t["alarms"] == [{"kind": "dominance", "signal": "verbosity", "share": 1.0, "steps": [1, 2]}]
    assert t["reward_start"] is not None and t["allow_flagged"] is False
    ev = t["attribution"]["eval"]  # base and trained model ran the suite: metric deltas per signal
    assert {m["metric"] for m in ev["metrics"]} == {"follow_up_offer_rate", "flattery_opener_rate"}
    assert set(ev["signals"]) == {"answer_correct", "verbosity"} and isinstance(ev["moved"], list)


def test_a_flagged_reward_model_is_refused_unless_allowed(tmp_path, store):
    """rm:NAME through the Reward engineer's real API: trained on a few pairs, then audited."""
    reward = pytest.importorskip("posttrain.reward")
    from posttrain.models.registry import update_model_metrics
    from posttrain.train.rewards import build_mix

    reward.train_reward_model(store, name="rm-small", pairs=_write(tmp_path / "p.jsonl", dpo_rows(8)), epochs=1,
                              max_steps=2, progress=False, heldout=0.25)
    mix = [{"signal": "rm:rm-small", "weight": 1.0, "cap": 5.0}]
    with pytest.raises(ValueError, match="no audit yet"):  # never audited is not clean
        build_mix(mix, store=store)
    update_model_metrics(store, "rm-small", "audit", {"flagged": True, "properties": []})
    with pytest.raises(ValueError, match="flagged by its bias audit.*--allow-flagged"):
        build_mix(mix, store=store)
    allowed = build_mix(mix, store=store, allow_flagged=True)
    assert allowed.flagged == ["rm:rm-small"]
    values = allowed.signals[0].values([_msg("user", "What is 1+1?")] * 2, ["2.", "2. Want more?"], [{}, {}])
    assert len(values) == 2 and all(-5.0 <= v <= 5.0 for v in values)


def test_the_fused_lm_head_scores_only_labelled_positions_with_the_same_logprobs(tiny_model_dir):
    """On the CPU, TRL's fused head sent every position (prompt and padding too) through the output
    projection; posttrain makes it score the labelled ones only. Same log-probs and gradients, and
    the projection sees exactly the labelled rows (the count fails if the switch does nothing)."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from posttrain.train.common import score_labelled_tokens_only

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model)
    torch.manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    attention = torch.ones_like(ids)
    attention[2, 9:] = 0  # padding at the end of one row
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :5] = -100  # the prompt
    seen, apply = [], trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    def score():
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        out.log_probs.sum().backward()
        return out.log_probs.detach(), model.model.embed_tokens.weight.grad.clone()

    trl_utils._ChunkedLogProbFunction.apply = spy
    try:
        assert score_labelled_tokens_only(False) is False
        every, every_grad = score()
        assert score_labelled_tokens_only() is True
        assert score_labelled_tokens_only() is True  # idempotent: one wrapper, not two
        labelled, labelled_grad = score()
    finally:
        trl_utils._ChunkedLogProbFunction.apply = apply
        score_labelled_tokens_only(False)
    assert seen == [3 * 11, int((labels[:, 1:] != -100).sum())]
    torch.testing.assert_close(labelled, every)
    torch.testing.assert_close(labelled_grad, every_grad)
    assert not trl_utils._use_triton(torch.device("cpu"))  # TRL's own choice is restored


def test_the_fused_lm_head_walks_the_vocabulary_in_cpu_sized_chunks_with_the_same_logprobs(tiny_model_dir):
    """On the CPU TRL's fused head takes the vocabulary (49152 words here) 4096 columns at a time
    instead of 32768; the log-probs and gradients are the same to float rounding, and switching
    it off gives TRL's size back (the spy fails if the switch does nothing)."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from posttrain.train.common import CPU_VOCAB_CHUNK, cpu_vocab_chunks

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert model.config.vocab_size > 2 * CPU_VOCAB_CHUNK
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    torch.manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    labels = ids.clone()
    labels[:, :4] = -100
    chunks, apply = [], trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, weight, bias, targets, temperature, chunk_size, *args):
        chunks.append(chunk_size)
        return apply(hidden, weight, bias, targets, temperature, chunk_size, *args)

    def score():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        (out.log_probs.sum() + out.entropy.sum()).backward()
        return out.log_probs.detach(), out.entropy.detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone()

    trl_utils._ChunkedLogProbFunction.apply = spy
    try:
        assert cpu_vocab_chunks(False) is False
        trl_size = score()
        assert cpu_vocab_chunks() is True
        assert cpu_vocab_chunks() is True  # idempotent: TRL's own size is remembered once
        cpu_size = score()
        assert cpu_vocab_chunks(False) is False
        score()
    finally:
        trl_utils._ChunkedLogProbFunction.apply = apply
        cpu_vocab_chunks(False)
    assert chunks == [32768, CPU_VOCAB_CHUNK, 32768]
    for a, b in zip(cpu_size, trl_size):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_on_the_cpu_where_native_and_refused_where_not(tmp_path, store, monkeypatch):
    """precision = "bf16": trained under bf16 autocast where this CPU has native bf16 (recorded in
    the lineage; "auto" stays fp32 on the CPU); where a bf16 product is slower than fp32, a one-line
    error naming the field before any data loads, and nothing registered."""
    from posttrain.models.registry import get_model
    from posttrain.train import common, run

    data = _write(tmp_path / "d.jsonl", dpo_rows())
    auto = run("dpo", store=store, base="tiny", name="tiny-auto", data=data, config=FAST, max_steps=1, progress=False)
    assert auto.metrics["train"]["precision"] == "fp32"
    if common.cpu_bf16_speedup() >= 1:
        info = run("dpo", store=store, base="tiny", name="tiny-bf16", data=data, max_steps=1, progress=False,
                   config={**FAST, "precision": "bf16"})
        assert info.metrics["train"]["precision"] == "bf16" and info.metrics["train"]["config"]["precision"] == "bf16"
    monkeypatch.setattr(common, "cpu_bf16_speedup", lambda: 0.06)
    with pytest.raises(ValueError, match="config field 'precision': this CPU has no native bf16 .*0.06x"):
        run("dpo", store=store, base="tiny", name="tiny-emulated", data=tmp_path / "missing.jsonl", max_steps=1,
            progress=False, config={**FAST, "precision": "bf16"})
    with pytest.raises(KeyError):
        get_model(store, "tiny-emulated")
