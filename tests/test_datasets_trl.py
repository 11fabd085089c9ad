"""TRL reads every export unchanged: each TRL-layout file is loaded with `datasets` and handed to
TRL 1.16's own trainer for its kind (SFTTrainer, DPOTrainer, KTOTrainer, GRPOTrainer), whose
dataset preparation (chat template, tokenization, prompt/completion split) runs on it in the
constructor. The model is the tiny random Llama with SmolLM2's tokenizer and chat template.
"""

from __future__ import annotations

import pytest

from test_datasets_export import seed_world

from posttrain.datasets import export

COMMON = dict(bf16=False, fp16=False, use_cpu=True, report_to=[], max_steps=1, per_device_train_batch_size=2,
              save_strategy="no", logging_steps=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import os

    from posttrain.store import Store

    root = tmp_path_factory.mktemp("trl")
    old = os.environ.get("POSTTRAIN_HOME")
    os.environ["POSTTRAIN_HOME"] = str(root / "home")
    store = Store.open(f"sqlite:///{root / 'store.db'}")
    try:
        seed_world(store, n_users=4, per_user=2)
        paths = {k: export(store, k, root / f"{k}.jsonl", near_duplicates=False, max_user_share=1, test_fraction=0)["path"]
                 for k in ("sft", "preferences", "kto", "prompts")}
    finally:
        store.close()
        if old is None:
            os.environ.pop("POSTTRAIN_HOME", None)
        else:
            os.environ["POSTTRAIN_HOME"] = old
    return paths, root


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def _load(path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")


def test_sft_export_is_prepared_by_sft_trainer(exported, tiny):
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational

    paths, root = exported
    ds = _load(paths["sft"])
    assert ds.column_names == ["messages"] and is_conversational(ds[0])
    model, tok = tiny
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(root / "o"), max_length=256, **COMMON),
                         train_dataset=ds, processing_class=tok)
    prepared = trainer.train_dataset
    assert len(prepared) == len(ds) and {"input_ids", "labels"} <= set(prepared.column_names)
    # The chat template rendered the answer: its text is in the tokens TRL will train on.
    text = tok.decode(prepared[0]["input_ids"])
    assert ds[0]["messages"][-1]["content"] in text and "<|im_start|>assistant" in text


def test_preferences_export_is_prepared_by_dpo_trainer(exported, tiny):
    from trl import DPOConfig, DPOTrainer

    paths, root = exported
    ds = _load(paths["preferences"])
    assert ds.column_names == ["prompt", "chosen", "rejected", "source"]
    model, tok = tiny
    trainer = DPOTrainer(model=model, args=DPOConfig(output_dir=str(root / "o"), max_length=256, **COMMON),
                         train_dataset=ds, processing_class=tok)
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] and row["chosen_ids"] and row["rejected_ids"]
    assert tok.decode(row["chosen_ids"]).startswith(ds[0]["chosen"][0]["content"])
    assert ds[0]["prompt"][-1]["content"] in tok.decode(row["prompt_ids"])


def test_kto_export_is_prepared_by_kto_trainer(exported, tiny):
    from trl import KTOConfig, KTOTrainer

    paths, root = exported
    ds = _load(paths["kto"])
    assert ds.column_names == ["prompt", "completion", "label"] and set(ds["label"]) == {True, False}
    model, tok = tiny
    trainer = KTOTrainer(model=model, args=KTOConfig(output_dir=str(root / "o"), max_length=256, **COMMON),
                         train_dataset=ds, processing_class=tok)
    row = trainer.train_dataset[0]
    assert tok.decode(row["completion_ids"]).startswith(ds[0]["completion"][0]["content"])


def _grpo(exported, tiny, seen):
    from trl import GRPOConfig, GRPOTrainer

    paths, root = exported
    ds = _load(paths["prompts"])

    def reward(prompts, completions, reference, reference_source, reasons, **kw):
        seen.update(reference=reference, reference_source=reference_source, reasons=reasons)
        return [0.0] * len(completions)

    model, tok = tiny
    args = GRPOConfig(output_dir=str(root / "g"), num_generations=2, max_completion_length=4, **COMMON)
    return ds, tok, GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok)


def test_prompts_export_is_what_grpo_trainer_reads(exported, tiny):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    ds, tok, trainer = _grpo(exported, tiny, {})
    assert ds.column_names == ["prompt", "reference", "reference_source", "reasons"]
    # GRPOTrainer renders each prompt with TRL's chat template helper when it samples a batch.
    assert trainer.train_dataset is not None and is_conversational({"prompt": ds[0]["prompt"]})
    rendered = maybe_apply_chat_template({"prompt": ds[0]["prompt"]}, tok)["prompt"]
    assert rendered.endswith("<|im_start|>assistant\n") and ds[0]["prompt"][-1]["content"] in rendered


@pytest.mark.slow
def test_grpo_reward_functions_receive_the_reference_columns(exported, tiny):
    seen: dict = {}
    ds, _, trainer = _grpo(exported, tiny, seen)
    trainer.train()
    assert seen["reference"][0] in set(ds["reference"]) and seen["reference_source"][0] in {"edit", "pairwise", "thumbs_up", None}
