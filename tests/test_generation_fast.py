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


def test_prefill_groups_are_the_cheapest_cut_of_the_rows():
    """The dynamic programme against every way of cutting the rows into consecutive groups."""
    import itertools
    import random

    from posttrain.models._decode import PREFILL_CALL_POSITIONS, prefill_groups

    def cost(lengths, groups):
        return sum(n * (end - first) + PREFILL_CALL_POSITIONS for first, end, n in groups)

    rng = random.Random(3)
    for _ in range(200):
        lengths = [rng.choice([1, 5, 30, 31, 90, 200]) for _ in range(rng.randint(1, 7))]
        groups = prefill_groups(lengths)
        assert [g[0] for g in groups][0] == 0 and groups[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
        assert all(n == max(lengths[f:e]) for f, e, n in groups)
        brute = min(cost(lengths, [(f, e, max(lengths[f:e])) for f, e in zip((0, *cuts), (*cuts, len(lengths)))])
                    for k in range(len(lengths)) for cuts in itertools.combinations(range(1, len(lengths)), k))
        assert cost(lengths, groups) == brute
    assert prefill_groups([40] * 8) == [(0, 8, 40)]  # equal lengths: one prefill, as before
    assert len(prefill_groups([10, 11, 12, 300])) == 2  # one long prompt no longer pads the rest
    long = prefill_groups([5000] * 8, max_positions=16384)  # a call's activations stay bounded
    assert [(f, e) for f, e, _ in long] == [(0, 3), (3, 6), (6, 8)] and all(n == 5000 for *_, n in long)


def test_grouped_prefill_gives_the_padded_batch_logits_and_reads_no_unwritten_slot(pair):
    """Each group of rows runs its own columns only; the logits are those of one prefill of the
    whole padded batch, also when every unwritten cache slot holds NaN (torch.empty may)."""
    import torch

    from posttrain.models._decode import prefill_groups

    fast, _ = pair
    step, pad = fast._step, fast.tokenizer.pad_token_id
    prompts = sorted((fast._prompt_ids(c) for c in CONVERSATIONS), key=len)
    lengths = torch.tensor([len(p) for p in prompts])
    width = int(lengths.max())
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    positions = (torch.arange(width)[None, :] - (width - lengths)[:, None]).clamp(min=0)
    key_ok = torch.ones(len(prompts), width + 2, dtype=torch.bool)
    key_ok[:, :width] = torch.arange(width)[None, :] >= (width - lengths)[:, None]
    groups = prefill_groups(lengths.tolist())
    assert len(groups) > 1

    def run(grouped: bool) -> tuple[torch.Tensor, torch.Tensor]:
        step.start(len(prompts), width + 2, key_ok.clone())
        try:
            with torch.inference_mode():
                step.k.fill_(float("nan"))
                step.v.fill_(float("nan"))
            first = step.prefill(ids, positions, groups) if grouped else step.forward(ids, positions)
            nxt = step.forward(first.argmax(-1)[:, None], lengths[:, None])
        finally:
            step.finish()
        return first, nxt

    whole, grouped = run(False), run(True)
    for a, b in zip(grouped, whole):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params", [DecodingParams(max_new_tokens=12, temperature=0),
                                    DecodingParams(max_new_tokens=12, temperature=1.0, top_p=0.9)],
                         ids=["greedy", "seeded"])
def test_finished_rows_leave_the_batch_and_the_others_go_on_unchanged(pair, params):
    """decode() drops the rows the caller marks finished (their cache with them); every other
    row gets the tokens it gets when nothing is dropped."""
    import torch

    from posttrain.models._decode import decode

    fast, _ = pair
    prompts = [fast._prompt_ids(c) for c in CONVERSATIONS]
    gens = lambda: None if params.temperature == 0 else [torch.Generator().manual_seed(s) for s in range(len(prompts))]
    pad = fast.tokenizer.pad_token_id
    kept = list(decode(fast._step, prompts, pad, params, gens()))
    finished = [False] * len(prompts)
    dropped, sizes = [], []
    for t, tokens in enumerate(decode(fast._step, prompts, pad, params, gens(), finished=finished)):
        dropped.append(tokens)
        sizes.append(fast._step.k.shape[1])
        if t == 2:
            finished[1] = finished[3] = True  # two rows end after their third token
    assert sizes[:3] == [5, 5, 5] and set(sizes[3:]) == {3}  # the cache holds the three left
    for t, (a, b) in enumerate(zip(kept, dropped)):
        for i in range(len(prompts)):
            assert b[i] == (-1 if t > 2 and i in (1, 3) else a[i])
