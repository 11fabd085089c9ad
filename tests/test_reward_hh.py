"""External check (slow, ~30 min on a busy 2-core machine): a MiniLM reward model trained on one
half of HH-RLHF harmless-base, judged on the other half. Config chosen on a validation split of
the training half (benchmarks/bench_reward.py --train --validate), never on the test half."""

from __future__ import annotations

import time

import pytest


@pytest.mark.slow
def test_hh_rlhf_half_trained_minilm_beats_the_length_heuristic(shared_data, tmp_path):
    from posttrain.reward import evaluate_reward_model, train_reward_model
    from posttrain.reward._data import read_pairs
    from posttrain.reward.external import hh_rlhf_halves, write_jsonl
    from posttrain.store import Store

    train, test = hh_rlhf_halves(shared_data, seed=0)
    assert len(train) + len(test) == 2312 and abs(len(train) - len(test)) < 40
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        started = time.perf_counter()
        train_reward_model(store, name="hh", pairs=write_jsonl(train, tmp_path / "train.jsonl"), epochs=2,
                           learning_rate=1e-4, max_length=128, progress=False, out=tmp_path / "rm")
        seconds = time.perf_counter() - started
        result = evaluate_reward_model(store, "hh", write_jsonl(test, tmp_path / "test.jsonl"))
    finally:
        store.close()
    shorter = read_pairs(tmp_path / "test.jsonl")
    baseline = sum(len(p.chosen.split()) < len(p.rejected.split()) for p in shorter) / len(shorter)
    print(f"HH-RLHF harmless-base test half: accuracy {result['accuracy']} {result['ci']} on {result['n']} pairs, "
          f"prefer-the-shorter baseline {baseline:.3f}, {seconds:.0f} s")
    assert result["n"] == len(test)
    assert result["accuracy"] > baseline  # learns more than "shorter is safer"
    assert result["ci"][0] > 0.5
