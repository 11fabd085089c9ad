"""Reward models: data layouts, the statistics (by simulation), the encoder, and the CLI end to
end on a small MiniLM run (train -> registered with lineage -> eval -> score)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from posttrain.reward._data import pair_from_row, parse_transcript, point_from_row, split_by_prompt
from posttrain.reward._stats import ece, pair_report, pairwise_ece, spearman, wilson

# -- layouts ----------------------------------------------------------------------------------------


def test_reads_every_trl_preference_layout():
    conv = pair_from_row({"prompt": [{"role": "user", "content": "2+2?"}],
                          "chosen": [{"role": "assistant", "content": "4"}],
                          "rejected": [{"role": "assistant", "content": "5"}]})
    std = pair_from_row({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    implicit = pair_from_row({"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5"})
    implicit_conv = pair_from_row({"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                                   "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]})
    assert conv == std == implicit == implicit_conv
    assert conv.messages == [{"role": "user", "content": "2+2?"}] and (conv.chosen, conv.rejected) == ("4", "5")


def test_hh_transcripts_that_differ_before_the_last_turn_keep_the_rest_as_the_answer():
    p = pair_from_row({"chosen": "\n\nHuman: hi\n\nAssistant: a\n\nAssistant: b",
                       "rejected": "\n\nHuman: hi\n\nAssistant: c"})
    assert p.messages == [{"role": "user", "content": "hi"}]
    assert p.chosen == "Assistant: a\n\nAssistant: b" and p.rejected == "c"
    assert parse_transcript("no markers here") == [{"role": "user", "content": "no markers here"}]


@pytest.mark.parametrize("row,msg", [
    ({"prompt": "q", "chosen": "a"}, "missing 'rejected'"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"}, "must end with an assistant"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "'prompt' must be a string"),
])
def test_bad_preference_rows_name_the_field(row, msg):
    with pytest.raises(ValueError, match=msg):
        pair_from_row(row, "f.jsonl:7")


def test_kto_rows_and_bad_labels():
    p = point_from_row({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}], "label": True})
    assert (p.completion, p.label) == ("a", True)
    with pytest.raises(ValueError, match="'label' must be true or false"):
        point_from_row({"prompt": "q", "completion": "a", "label": 1})


def test_split_keeps_whole_prompts_on_one_side():
    rows = [pair_from_row({"prompt": f"q{i % 30}", "chosen": f"a{i}", "rejected": f"b{i}"}) for i in range(120)]
    train, held = split_by_prompt(rows, 0.2, seed=3)
    assert len(train) + len(held) == 120 and 0.15 <= len(held) / 120 <= 0.3
    assert not {r.prompt for r in train} & {r.prompt for r in held}
    assert split_by_prompt(rows, 0.2, seed=3) == (train, held)  # seeded


# -- statistics ---------------------------------------------------------------------------------


def test_wilson_interval_covers_95_percent_by_simulation():
    rng = np.random.default_rng(0)
    coverages = []
    for p in (0.05, 0.3, 0.5, 0.62, 0.9):
        for n in (30, 100, 400):
            k = rng.binomial(n, p, size=4000)
            covered = [lo <= p <= hi for lo, hi in (wilson(int(x), n) for x in k)]
            coverages.append(sum(covered) / len(covered))
    assert min(coverages) >= 0.92, coverages
    assert 0.94 <= sum(coverages) / len(coverages) <= 0.97, coverages


def test_wilson_matches_a_hand_computed_value():
    lo, hi = wilson(62, 100)  # centre (0.62 + 1.92/100)/(1.0384) = 0.61557; half-width 0.09280
    assert lo == pytest.approx(0.5228, abs=1e-3) and hi == pytest.approx(0.7085, abs=1e-3)


def test_ece_small_for_a_calibrated_model_and_large_for_an_overconfident_one():
    rng = random.Random(1)
    margins = [rng.gauss(0, 2) for _ in range(4000)]
    # Outcomes drawn from the model's own probabilities: calibrated by construction.
    calibrated = [m if rng.random() < 1 / (1 + math.exp(-m)) else -m for m in margins]
    assert pairwise_ece(calibrated) < 0.03
    assert pairwise_ece([4 * m for m in calibrated]) > 0.1
    assert ece([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0]) == pytest.approx((0.4 * 2 + 0.1 * 2) / 4)


def test_spearman_against_scipy_and_pair_report_ties():
    from scipy.stats import spearmanr

    rng = random.Random(2)
    x = [rng.randint(0, 20) for _ in range(200)]  # many ties
    y = [a + rng.gauss(0, 5) for a in x]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-9)
    r = pair_report([1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [5, 5, 5], [3, 3, 3])
    assert r["accuracy"] == pytest.approx(0.5) and r["n"] == 3  # a tie counts half


# -- encoder ------------------------------------------------------------------------------------


def test_encoder_cuts_the_oldest_prompt_tokens_and_keeps_the_answer_start():
    from posttrain.reward._encode import Encoder, load_tokenizer, minilm_dir

    tok = load_tokenizer(minilm_dir())
    enc = Encoder(tok, "pair", 32)
    long_prompt = [{"role": "user", "content": " ".join(f"w{i}" for i in range(200)) + " final words"}]
    [ids] = enc.encode_many([long_prompt], ["the answer starts here"])
    text = tok.decode(ids)
    assert len(ids) == 32 and "final words" in text and "the answer starts here" in text
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


# -- CLI end to end -------------------------------------------------------------------------------

QA = [("Name a primary color.", "Red is a primary color.", "Dogs bark loudly."),
      ("What is ice made of?", "Ice is frozen water.", "Bananas are yellow."),
      ("What do cows drink?", "Cows drink water.", "Cows drink milk shakes."),
      ("How many wheels has a bicycle?", "A bicycle has two wheels.", "A bicycle has nine wheels."),
      ("What shines in the day sky?", "The Sun shines in the day.", "The Moon is made of cheese.")]


def _pairs_file(path, n=40):
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "source": "test"} for q, c, r in (QA * 20)[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_train_eval_score_and_lineage(tmp_path):
    from posttrain.cli import app
    from posttrain.graders import get_grader
    from posttrain.models.registry import get_model
    from posttrain.store import Store

    db = f"sqlite:///{tmp_path / 's.db'}"
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    runner = CliRunner()
    res = runner.invoke(app, ["reward", "train", "--pairs", str(pairs), "--name", "rm-cli", "--epochs", "1",
                              "--max-length", "48", "--heldout", "0.2", "--quiet", "--db", db, "--json"])
    assert res.exit_code == 0, res.output + str(res.exception)
    out = json.loads(res.stdout)
    assert out["heldout"]["n"] > 0 and len(out["heldout"]["ci"]) == 2 and "ece" in out["heldout"]
    assert out["train"]["steps"] >= 1 and out["train"]["data"]["rows"] == 40

    store = Store.open(db)
    try:
        info = get_model(store, "rm-cli")
        assert info.backend == "reward_model" and info.metrics["train"]["method"] == "reward-pairwise"
        assert info.metrics["train"]["data"]["sha256"] and info.metrics["heldout"]["accuracy"] is not None
    finally:
        store.close()

    res = runner.invoke(app, ["reward", "eval", "rm-cli", "--pairs", str(pairs), "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert {"accuracy", "ci", "n"} <= set(ev) and ev["n"] == 40 and ev["ci"][0] <= ev["accuracy"] <= ev["ci"][1]

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "Name a primary color.", "completion": "Red."}) + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    res = runner.invoke(app, ["reward", "score", "rm-cli", "--input", str(inp), "--db", db])
    assert res.exit_code == 0, res.output
    scored = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(scored) == 2 and all(isinstance(r["score"], float) for r in scored)

    # The trained RM is usable by the reward_model grader by name.
    from posttrain.reward import load_reward_model, register_store_reward_models

    store = Store.open(db)
    try:
        assert register_store_reward_models(store) == ["rm-cli"]
        g = get_grader("reward_model")("Red.", {"messages": [{"role": "user", "content": "Name a primary color."}]}, name="rm-cli")
        assert g.score == pytest.approx(load_reward_model(store, "rm-cli").score(
            [{"role": "user", "content": "Name a primary color."}], "Red."), abs=1e-5)
    finally:
        store.close()


def test_cli_errors_are_one_line(tmp_path):
    from posttrain.cli import app

    db = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a"}\n')
    res = runner.invoke(app, ["reward", "train", "--pairs", str(bad), "--name", "x", "--db", db])
    assert res.exit_code == 2 and "bad.jsonl:1: missing 'rejected'" in res.output
    res = runner.invoke(app, ["reward", "eval", "nope", "--pairs", str(bad), "--db", db])
    assert res.exit_code == 2 and "unknown model 'nope'" in res.output
    res = runner.invoke(app, ["reward", "audit", "smollm2-135m", "--db", db])
    assert res.exit_code == 2 and "not a reward model" in res.output
    res = runner.invoke(app, ["reward", "train", "--snapshot", "abc", "--pairs", str(bad), "--name", "x", "--db", db])
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_unknown_snapshot_is_a_one_line_error(tmp_path):
    from posttrain.cli import app

    res = CliRunner().invoke(app, ["reward", "train", "--snapshot", "deadbeef", "--name", "x",
                                   "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert res.exit_code == 2 and "snapshot" in res.output and "deadbeef" in res.output, res.output
