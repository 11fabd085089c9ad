"""Real SmolLM2-135M LoRA runs: each method shown to work by a measured change in greedy
generations on held-out prompts (the 24 `engagement` suite prompts, never trained on), not only
by a falling loss. Slow (minutes each on a CPU): `pytest -m slow tests/test_train_real.py -s`.

The story is the engagement-bait one: SmolLM2 never ends an answer with a follow-up offer on
these prompts (rate 0), so
- SFT on the base's own answers with an offer appended moves it toward that target (rate up);
- DPO and KTO, started from that offer-prone model, with the plain answer preferred (or
  desirable) and the offer version rejected (undesirable), bring the rate back down;
- GRPO learns a format reward (answer with only the number) on generated arithmetic.
Figures are printed and, with POSTTRAIN_TRAIN_FIGURES=FILE, appended to FILE as JSON lines.
"""

from __future__ import annotations

import json
import os
import random
import re

import pytest

pytestmark = pytest.mark.slow

TOPICS = ["photosynthesis", "gravity", "the moon", "volcanoes", "rainbows", "the heart", "electricity", "glaciers",
          "bees", "the ocean tides", "earthquakes", "clouds", "magnets", "the sun", "DNA", "deserts"]
TEMPLATES = ["What is {x}?", "Explain {x} in one sentence.", "Give me one fact about {x}."]
OFFERS = ["Would you like me to explain more?", "Let me know if you have any other questions!",
          "Would you like more examples?", "Is there anything else you'd like to know?",
          "Feel free to ask if you want more details."]
HELD_OUT_TOKENS = 128  # offers come at the end: a cut-off answer would hide them
LORA = {"lora_r": 16, "lora_alpha": 32, "max_length": 256, "save_steps": 1000, "seed": 0}


def _figures(record: dict) -> None:
    print("\nFIGURES", json.dumps(record))
    out = os.environ.get("POSTTRAIN_TRAIN_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")


def _held_out() -> list[list[dict]]:
    from importlib import resources

    raw = resources.files("posttrain.evals").joinpath("data/engagement_prompts.jsonl").read_text()
    return [[{"role": "user", "content": json.loads(line)["prompt"]}] for line in raw.splitlines() if line.strip()]


def _generate(path: str | None, convs: list[list[dict]], tokens: int = HELD_OUT_TOKENS) -> list[str]:
    from posttrain.models.base import DecodingParams
    from posttrain.models.local import LocalBackend

    backend = LocalBackend(path=path)
    return [g.text for g in backend.generate(convs, DecodingParams(max_new_tokens=tokens, temperature=0.0))]


def _offer_rate(texts: list[str]) -> float:
    from posttrain.graders.engagement import follow_up_offer

    return sum(follow_up_offer(t, {}).score for t in texts) / len(texts)


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with the embedded model, the base's own answers to the training prompts, and its
    held-out offer rate."""
    from posttrain.models.registry import ensure_default_models
    from posttrain.store import Store

    root = tmp_path_factory.mktemp("real")
    store = Store.open(f"sqlite:///{root / 'store.db'}")
    ensure_default_models(store)
    prompts = [[{"role": "user", "content": t.format(x=x)}] for x in TOPICS for t in TEMPLATES]
    answers = []
    for text in _generate(None, prompts, 48):
        cut = text[: text.rfind(".") + 1] if "." in text else text  # whole sentences only
        answers.append(cut.strip() or text.strip())
    rng = random.Random(0)
    world = {"store": store, "root": root, "prompts": prompts, "answers": answers,
             "offers": [rng.choice(OFFERS) for _ in prompts], "held_out": _held_out()}
    world["base_rate"] = _offer_rate(_generate(None, world["held_out"]))
    yield world
    store.close()


def _sft_offer_model(world) -> str:
    """SFT toward the offer-ending target (made once, reused by the DPO and KTO tests)."""
    from posttrain.models.registry import get_model
    from posttrain.train import run

    if "sft" not in world:
        rows = [{"messages": p + [{"role": "assistant", "content": f"{a} {o}"}]}
                for p, a, o in zip(world["prompts"], world["answers"], world["offers"])]
        info = run("sft", store=world["store"], base="smollm2-135m", name="real-sft",
                   data=_write(world["root"] / "sft.jsonl", rows),
                   config={**LORA, "learning_rate": 1e-3, "batch_size": 4}, max_steps=32, progress=False)
        rate = _offer_rate(_generate(info.config["path"], world["held_out"]))
        world["sft"] = {"name": info.name, "rate": rate, "train": info.metrics["train"]}
    return get_model(world["store"], world["sft"]["name"]).name


def test_sft_moves_generations_toward_its_target(world):
    _sft_offer_model(world)
    s = world["sft"]
    _figures({"method": "sft", "held_out_offer_rate": {"base": world["base_rate"], "trained": s["rate"]},
              "loss": [s["train"]["loss_start"], s["train"]["loss_end"]], "steps": s["train"]["steps"],
              "seconds": s["train"]["seconds"]})
    assert s["rate"] >= world["base_rate"] + 0.25


def _pairs(world) -> list[tuple]:
    return list(zip(world["prompts"], world["answers"], world["offers"]))


def _unlearn_offers(world, method: str, rows: list[dict]) -> None:
    """Train `method` from the offer-prone SFT model; the held-out offer rate must fall."""
    from posttrain.train import run

    start = _sft_offer_model(world)
    info = run(method, store=world["store"], base=start, name=f"real-{method}",
               data=_write(world["root"] / f"{method}.jsonl", rows),
               config={**LORA, "learning_rate": 5e-4, "batch_size": 4, "beta": 0.1}, max_steps=24, progress=False)
    rate = _offer_rate(_generate(info.config["path"], world["held_out"]))
    t = info.metrics["train"]
    _figures({"method": method, "held_out_offer_rate": {"start (sft)": world["sft"]["rate"], "trained": rate},
              "loss": [t["loss_start"], t["loss_end"]], "steps": t["steps"], "seconds": t["seconds"]})
    assert rate <= world["sft"]["rate"] - 0.25


def test_dpo_lowers_the_trailing_offer_rate(world):
    _unlearn_offers(world, "dpo", [{"prompt": p, "chosen": [{"role": "assistant", "content": a}],
                                    "rejected": [{"role": "assistant", "content": f"{a} {o}"}]}
                                   for p, a, o in _pairs(world)])


def test_kto_lowers_the_trailing_offer_rate(world):
    rows = []
    for p, a, o in _pairs(world):
        rows.append({"prompt": p, "completion": [{"role": "assistant", "content": a}], "label": True})
        rows.append({"prompt": p, "completion": [{"role": "assistant", "content": f"{a} {o}"}], "label": False})
    _unlearn_offers(world, "kto", rows)


NUMBER_ONLY = r"^\s*-?\d+\s*\.?\s*$"


def _arithmetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        rows.append({"prompt": [{"role": "user", "content": f"What is {a} + {b}? Reply with only the number."}],
                     "answer": str(a + b), "kind": "number"})
    return rows


def test_grpo_learns_a_format_reward_and_reports_attribution(world):
    from posttrain.train import run

    train, held = _arithmetic(64, 1), _arithmetic(24, 2)
    mix = [{"signal": "regex", "weight": 1.0, "args": {"pattern": NUMBER_ONLY}},
           {"signal": "answer_correct", "weight": 1.0}]
    cfg = {**LORA, "learning_rate": 5e-4, "batch_size": 2, "num_generations": 4, "max_completion_length": 16,
           "temperature": 1.0, "reward_mix": mix, "eval_suites": ["capability"], "eval_limit": 8}
    convs = [r["prompt"] for r in held]

    def score(texts: list[str]) -> dict:
        from posttrain.graders.sycophancy import is_correct

        fmt = sum(bool(re.match(NUMBER_ONLY, t)) for t in texts) / len(texts)
        acc = sum(is_correct(t, {**r, "question": r["prompt"][0]["content"]}) for t, r in zip(texts, held)) / len(texts)
        return {"format": round(fmt, 3), "accuracy": round(acc, 3)}

    before = score(_generate(None, convs, 16))
    info = run("grpo", store=world["store"], base="smollm2-135m", name="real-grpo",
               data=_write(world["root"] / "grpo.jsonl", train), config=cfg, max_steps=24, progress=False)
    after = score(_generate(info.config["path"], convs, 16))
    t = info.metrics["train"]
    _figures({"method": "grpo", "held_out": {"base": before, "trained": after},
              "reward": [t["reward_start"], t["reward_end"]], "attribution": t["attribution"]["signals"],
              "alarms": t["alarms"], "eval": t["attribution"].get("eval"), "steps": t["steps"], "seconds": t["seconds"]})
    assert after["format"] >= before["format"] + 0.25
    assert set(t["attribution"]["signals"]) == {"regex", "answer_correct"}
