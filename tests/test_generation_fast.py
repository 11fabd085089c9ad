"""The local backend's own token loop against transformers' generate(): same tokens greedy, same
samples for a seed, same stops and counts; and the fallback to generate() where the loop does
not apply. On a tiny random model (padding-sensitive weights) and on the real embedded model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from posttrain.models.base import DecodingParams
from posttrain.models.local import LocalBackend
from test_models_local import CONVERSATIONS  # different lengths on purpose: batches of them are left-padded
from test_models_local import sensitive_model_dir  # noqa: F401  (the padding-sensitive tiny model)


@pytest.fixture(scope="module")
def pair(sensitive_model_dir: Path) -> tuple[LocalBackend, LocalBackend]:
    """The same checkpoint through our loop and through generate()."""
    fast = LocalBackend(path=str(sensitive_model_dir), batch_size=3)
    slow = LocalBackend(path=str(sensitive_model_dir), batch_size=3, decoder="generate")
    fast.tokenizer, slow.tokenizer  # load both
    assert fast._step is not None and fast._fast and not slow._fast
    return fast, slow


def _same(a, b) -> None:
    assert [g.text for g in a] == [g.text for g in b]
    assert [(g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in a] == [
        (g.prompt_tokens, g.completion_tokens, g.finish_reason) for g in b]


@pytest.mark.parametrize("params", [
    DecodingParams(max_new_tokens=16, temperature=0),
    DecodingParams(max_new_tokens=16, temperature=1.0, seed=7),
    DecodingParams(max_new_tokens=16, temperature=0.7, top_p=0.8, seed=11),
], ids=["greedy", "sample", "sample-top-p"])
def test_the_loop_chooses_what_generate_chooses(pair, params):
    fast, slow = pair
    _same(fast.generate(CONVERSATIONS, params), slow.generate(CONVERSATIONS, params))


def test_a_seed_draws_differently_from_another_seed(pair):
    fast, _ = pair
    texts = lambda seed: [g.text for g in fast.generate(CONVERSATIONS, DecodingParams(max_new_tokens=8, temperature=1.0, seed=seed))]
    assert texts(1) == texts(1) != texts(2)


@pytest.mark.parametrize("decoder", ["loop", "generate"])
def test_seeds_per_row_give_each_answer_what_it_gets_alone(pair, decoder):
    """A batch with one seed per conversation: each answer is the one that conversation gets
    alone with its seed, whatever it shares the batch with (the styled arms batch concurrent
    requests this way)."""
    backend = pair[0] if decoder == "loop" else pair[1]
    params = DecodingParams(max_new_tokens=12, temperature=1.0, top_p=0.9)
    seeds = [5, 6, 5, 9, 3]
    batched = backend.generate(CONVERSATIONS, params, seeds=seeds)
    alone = [backend.generate([c], DecodingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=s))[0]
             for c, s in zip(CONVERSATIONS, seeds)]
    _same(batched, alone)
    # In other company (batches of 3 by length: the rows now share a batch with others).
    again = backend.generate(CONVERSATIONS[2:] + CONVERSATIONS[:1], params, seeds=seeds[2:] + seeds[:1])
    _same(again, batched[2:] + batched[:1])
    # and another seed changes that row's answer.
    other = backend.generate(CONVERSATIONS, params, seeds=[s + 100 for s in seeds])
    assert [g.text for g in other] != [g.text for g in batched]
    with pytest.raises(ValueError, match="one integer per conversation"):
        backend.generate(CONVERSATIONS, params, seeds=seeds[:-1])


@pytest.mark.parametrize("decoder", ["loop", "generate"])
def test_temperatures_per_row_give_each_answer_what_it_gets_alone(pair, decoder):
    """Rows at different temperatures (0 is greedy) in one batch, each with its own seed: each
    answer is the one that conversation gets alone at its temperature (the two styled arms,
    0.3 and 0.9, share batches this way)."""
    backend = pair[0] if decoder == "loop" else pair[1]
    key = DecodingParams(max_new_tokens=12, top_p=0.9)
    seeds, temps = [5, 6, 5, 9, 3], [0.3, 0.9, 0.0, 1.0, 0.9]
    batched = backend.generate(CONVERSATIONS, key, seeds=seeds, temperatures=temps)
    alone = [backend.generate([c], DecodingParams(max_new_tokens=12, temperature=t, top_p=0.9, seed=s))[0]
             for c, s, t in zip(CONVERSATIONS, seeds, temps)]
    _same(batched, alone)
    # The temperature is used: the same seeds all at 0 give the greedy answers, which differ.
    greedy = backend.generate(CONVERSATIONS, key, seeds=seeds, temperatures=[0.0] * 5)
    _same(greedy, backend.generate(CONVERSATIONS, DecodingParams(max_new_tokens=12, temperature=0)))
    assert [g.text for g in greedy] != [g.text for g in batched]
    with pytest.raises(ValueError, match="need seeds"):
        backend.generate(CONVERSATIONS, key, temperatures=temps)
    with pytest.raises(ValueError, match="one number >= 0 per conversation"):
        backend.generate(CONVERSATIONS, key, seeds=seeds, temperatures=temps[:-1])
    with pytest.raises(ValueError, match="one number >= 0 per conversation"):
        backend.generate(CONVERSATIONS, key, seeds=seeds, temperatures=[0.3, -1.0, 0.0, 1.0, 0.9])


def test_stops_and_eos_end_rows_as_generate_does(pair):
    fast, slow = pair
    full = slow.generate(CONVERSATIONS, DecodingParams(max_new_tokens=24, temperature=0))
    # A stop string from the middle of one answer; the other rows run to their own end.
    stop = full[1].text[len(full[1].text) // 2:][:3]
    params = DecodingParams(max_new_tokens=24, temperature=0, stop=(stop,))
    got, want = fast.generate(CONVERSATIONS, params), slow.generate(CONVERSATIONS, params)
    _same(got, want)
    assert got[1].finish_reason == "stop" and got[1].completion_tokens < full[1].completion_tokens


def test_stream_matches_generate_on_the_loop(pair):
    fast, slow = pair
    params = DecodingParams(max_new_tokens=20, temperature=0.9, seed=5)
    chunks = list(fast.stream(CONVERSATIONS[2], params))
    want = slow.generate([CONVERSATIONS[2]], params)[0]
    assert "".join(c.text for c in chunks) == want.text
    assert (chunks[-1].finish_reason, chunks[-1].completion_tokens) == (want.finish_reason, want.completion_tokens)


def test_a_generation_config_the_loop_does_not_honour_falls_back(sensitive_model_dir, tmp_path):
    """A repetition penalty is applied by generate() and not by the loop: such a model must not
    take the loop, and still generates what generate() gives."""
    copy = tmp_path / "penalised"
    shutil.copytree(sensitive_model_dir, copy)
    cfg = json.loads((copy / "generation_config.json").read_text())
    cfg["repetition_penalty"] = 1.5
    (copy / "generation_config.json").write_text(json.dumps(cfg))
    backend = LocalBackend(path=str(copy))
    plain = LocalBackend(path=str(sensitive_model_dir))
    params = DecodingParams(max_new_tokens=16, temperature=0)
    got, unpenalised = backend.generate(CONVERSATIONS[:2], params), plain.generate(CONVERSATIONS[:2], params)
    assert backend._step is None and plain._step is not None
    assert [g.text for g in got] != [g.text for g in unpenalised]  # the penalty acts


def test_decoder_is_validated_and_part_of_the_version(sensitive_model_dir):
    with pytest.raises(ValueError, match="decoder must be one of auto, generate"):
        LocalBackend(path=str(sensitive_model_dir), decoder="fast")
    a = LocalBackend(path=str(sensitive_model_dir)).version()
    assert a != LocalBackend(path=str(sensitive_model_dir), decoder="generate").version() and len(a) == 16


def test_the_real_model_decodes_the_same_tokens_as_generate():
    """SmolLM2-135M: greedy answers to eight prompts, batched (padded) and alone, token for token
    what transformers' generate() gives."""
    fast = LocalBackend(batch_size=8)
    prompts = ["What is the capital of France?", "Write a haiku about rain.", "Explain gravity to a child.",
               "List three colours.", "Hi", "Give me a tip for learning to cook.", "What is 2 + 2?",
               "Describe the water cycle in two sentences."]
    convs = [[{"role": "user", "content": p}] for p in prompts]
    params = DecodingParams(max_new_tokens=24, temperature=0)
    got = fast.generate(convs, params)
    fast.decoder = "generate"
    want = fast.generate(convs, params)
    alone_want = fast.generate(convs[:1], params)
    fast.decoder = "auto"
    _same(got, want)
    _same(fast.generate(convs[:1], params), alone_want)
    assert "Paris" in got[0].text


def test_a_model_fine_tuned_by_posttrain_train_takes_the_loop(tmp_path, sensitive_model_dir, monkeypatch):
    """SFT with LoRA, merged: the folder posttrain.train writes decodes through the loop (the
    default path), with the answers generate() gives."""
    from posttrain.models.registry import load_backend, register_model
    from posttrain.store import Store
    from posttrain.train import run

    monkeypatch.setenv("POSTTRAIN_HOME", str(tmp_path / "home"))
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say hi {i}"},
                                                     {"role": "assistant", "content": "Hi there!"}]}) + "\n"
                            for i in range(4)))
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        register_model(store, "base", "local", {"path": str(sensitive_model_dir)})
        run("sft", store=store, base="base", name="tuned", data=data, max_steps=2, progress=False,
            config={"batch_size": 2, "save_steps": 100, "lora_r": 4, "lora_alpha": 8, "max_length": 64,
                    "learning_rate": 5e-3})
        tuned = load_backend(store, "tuned")
    finally:
        store.close()
    params = DecodingParams(max_new_tokens=12, temperature=0)
    got = tuned.generate(CONVERSATIONS, params)
    assert tuned._fast
    tuned.decoder = "generate"
    _same(got, tuned.generate(CONVERSATIONS, params))
