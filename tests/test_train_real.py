"""Real SmolLM2-135M LoRA runs: each method shown to work by a measured change in greedy
generations on held-out prompts (the 24 `engagement` suite prompts, never trained on), not only
by a falling loss. Slow (minutes each on a CPU): `pytest -m slow tests/test_train_real.py -s`.

The story is the engagement-bait one: SmolLM2 almost never ends an answer with a follow-up
offer on these prompts (1 of 24), so
- SFT on the base's own answers with an offer appended moves it toward that target (rate up);
- DPO and KTO, started from that offer-prone model, with the plain answer preferred (or
  desirable) and the offer version rejected (undesirable), bring the rate back down, and the
  answers must still answer (3 words or more);
- GRPO with the `answer_correct` reward alone raises held-out accuracy on generated additions
  (paired counts and McNemar's p on the same 48 new prompts); GRPO with a number-only format
  reward beside it learns the format, and when that costs accuracy the dominance alarm must
  have named the format signal.
Figures (counts, rates with 95 % Wilson intervals) are printed and, with
POSTTRAIN_TRAIN_FIGURES=FILE, appended to FILE as JSON lines.
"""

from __future__ import annotations

import json
import math
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


def _count(hits: list[bool]) -> dict:
    """k of n with the rate and its 95 % Wilson interval (small n, rates near 0 or 1)."""
    k, n, z = sum(map(bool, hits)), len(hits), 1.96
    p = k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"k": k, "n": n, "rate": round(p, 3), "ci95": [round(max(0.0, mid - half), 3), round(min(1.0, mid + half), 3)]}


def _paired(before: list[bool], after: list[bool]) -> dict:
    """The same prompts before and after: how many flipped each way, and the exact two-sided
    McNemar (sign test) p-value on those flips."""
    up = sum(1 for x, y in zip(before, after) if y and not x)
    down = sum(1 for x, y in zip(before, after) if x and not y)
    n = up + down
    tail = sum(math.comb(n, i) for i in range(min(up, down) + 1)) / 2 ** n if n else 1.0
    return {"gained": up, "lost": down, "p_mcnemar": round(min(1.0, 2 * tail), 4)}


def _offers(texts: list[str]) -> dict:
    """The held-out follow-up offer count (the engagement detector, rules + learned), and how
    many answers still answer (3 words or more): a model that unlearned offers by saying nothing
    has not moved toward the plain answer."""
    from posttrain.graders.engagement import follow_up_offer, word_count

    words = [word_count(t) for t in texts]
    return {**_count([follow_up_offer(t, {}).score >= 0.5 for t in texts]),
            "answered": _count([w >= 3 for w in words]), "mean_words": round(sum(words) / len(words), 1),
            "sample": texts[2][:200]}


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """A store with the embedded model registered, and a folder for the runs' data files."""
    from posttrain.models.registry import ensure_default_models
    from posttrain.store import Store

    root = tmp_path_factory.mktemp("real")
    store = Store.open(f"sqlite:///{root / 'store.db'}")
    ensure_default_models(store)
    yield store, root
    store.close()


@pytest.fixture(scope="module")
def world(real_store):
    """The base's own answers to the training prompts, and its held-out offer rate."""
    store, root = real_store
    prompts = [[{"role": "user", "content": t.format(x=x)}] for x in TOPICS for t in TEMPLATES]
    answers = []
    for text in _generate(None, prompts, 48):
        cut = text[: text.rfind(".") + 1] if "." in text else text  # whole sentences only
        answers.append(cut.strip() or text.strip())
    rng = random.Random(0)
    world = {"store": store, "root": root, "prompts": prompts, "answers": answers,
             "offers": [rng.choice(OFFERS) for _ in prompts], "held_out": _held_out()}
    world["base"] = _offers(_generate(None, world["held_out"]))
    return world


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
        offers = _offers(_generate(info.config["path"], world["held_out"]))
        world["sft"] = {"name": info.name, "offers": offers, "train": info.metrics["train"]}
    return get_model(world["store"], world["sft"]["name"]).name


def test_sft_moves_generations_toward_its_target(world):
    _sft_offer_model(world)
    s = world["sft"]
    _figures({"method": "sft", "held_out_offers": {"base": world["base"], "trained": s["offers"]},
              "loss": [s["train"]["loss_start"], s["train"]["loss_end"]], "steps": s["train"]["steps"],
              "seconds": s["train"]["seconds"]})
    assert s["offers"]["rate"] >= world["base"]["rate"] + 0.25


def _pairs(world) -> list[tuple]:
    return list(zip(world["prompts"], world["answers"], world["offers"]))


def _unlearn_offers(world, method: str, rows: list[dict], learning_rate: float) -> None:
    """Train `method` from the offer-prone SFT model; the held-out offer rate must fall and the
    answers must still answer."""
    from posttrain.train import run

    start = _sft_offer_model(world)
    info = run(method, store=world["store"], base=start, name=f"real-{method}",
               data=_write(world["root"] / f"{method}.jsonl", rows),
               config={**LORA, "learning_rate": learning_rate, "batch_size": 4, "beta": 0.1}, max_steps=24,
               progress=False)
    offers = _offers(_generate(info.config["path"], world["held_out"]))
    t = info.metrics["train"]
    _figures({"method": method, "learning_rate": learning_rate,
              "held_out_offers": {"start (sft)": world["sft"]["offers"], "trained": offers},
              "loss": [t["loss_start"], t["loss_end"]], "steps": t["steps"], "seconds": t["seconds"]})
    assert offers["rate"] <= world["sft"]["offers"]["rate"] - 0.25
    assert offers["answered"]["rate"] >= 0.8


def test_dpo_lowers_the_trailing_offer_rate(world):
    _unlearn_offers(world, "dpo", [{"prompt": p, "chosen": [{"role": "assistant", "content": a}],
                                    "rejected": [{"role": "assistant", "content": f"{a} {o}"}]}
                                   for p, a, o in _pairs(world)],
                    # 5e-4 drove the DPO loss to 0.0007 and the answers to nothing (0 of 24 answered):
                    # chosen and rejected share the answer, so the cheapest margin is an early end.
                    learning_rate=1e-4)


def test_kto_lowers_the_trailing_offer_rate(world):
    rows = []
    for p, a, o in _pairs(world):
        rows.append({"prompt": p, "completion": [{"role": "assistant", "content": a}], "label": True})
        rows.append({"prompt": p, "completion": [{"role": "assistant", "content": f"{a} {o}"}], "label": False})
    _unlearn_offers(world, "kto", rows, learning_rate=5e-4)


NUMBER_ONLY = r"^\s*-?\d+\s*\.?\s*$"


def _arithmetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        rows.append({"prompt": [{"role": "user", "content": f"What is {a} + {b}? Reply with only the number."}],
                     "answer": str(a + b), "kind": "number"})
    return rows


def _score(texts: list[str], held: list[dict]) -> dict:
    """Held-out arithmetic: answers that are only the number, and correct answers (the answer
    the rules read, as `answer_correct` grades it), as counts with intervals."""
    from posttrain.graders.sycophancy import is_correct

    correct = [is_correct(t, {**r, "question": r["prompt"][0]["content"]}) for t, r in zip(texts, held)]
    return {"format": _count([bool(re.match(NUMBER_ONLY, t)) for t in texts]), "accuracy": _count(correct),
            "sample": texts[:3], "_correct": correct}


def _grpo(real_store, name: str, mix: list[dict], settings: dict, max_steps: int) -> tuple[dict, dict, dict]:
    """GRPO from the base on 64 generated additions; (before, after, train lineage) on 48 new ones."""
    from posttrain.train import run

    store, root = real_store
    train, held = _arithmetic(64, 1), _arithmetic(48, 2)
    convs = [r["prompt"] for r in held]
    before = _score(_generate(None, convs, 16), held)
    cfg = {**LORA, "num_generations": 4, "max_completion_length": 16, "reward_mix": mix, **settings}
    info = run("grpo", store=store, base="smollm2-135m", name=name, data=_write(root / f"{name}.jsonl", train),
               config=cfg, max_steps=max_steps, progress=False)
    after = _score(_generate(info.config["path"], convs, 16), held)
    after["accuracy_paired"] = _paired(before.pop("_correct"), after.pop("_correct"))
    return before, after, info.metrics["train"]


def test_grpo_answer_correct_reward_on_arithmetic(real_store):
    """The reward the issue names first: answer correctness alone. Reported either way; the
    assertion is the measured outcome on this CPU budget (see docs/train.md)."""
    before, after, t = _grpo(real_store, "real-grpo-correct", [{"signal": "answer_correct", "weight": 1.0}],
                             {"learning_rate": 5e-4, "batch_size": 4, "temperature": 0.8}, 32)
    _figures({"method": "grpo", "reward": "answer_correct", "held_out": {"base": before, "trained": after},
              "reward_mean": [t["reward_start"], t["reward_end"]], "steps": t["steps"], "seconds": t["seconds"]})
    assert after["accuracy"]["rate"] >= before["accuracy"]["rate"] + 0.15


def test_grpo_learns_a_format_reward_and_reports_attribution(real_store):
    mix = [{"signal": "regex", "weight": 1.0, "args": {"pattern": NUMBER_ONLY}},
           {"signal": "answer_correct", "weight": 1.0}]
    before, after, t = _grpo(real_store, "real-grpo", mix,
                             {"learning_rate": 5e-4, "batch_size": 2, "temperature": 1.0,
                              "eval_suites": ["capability"], "eval_limit": 8}, 24)
    _figures({"method": "grpo", "reward": "regex + answer_correct", "held_out": {"base": before, "trained": after},
              "reward_mean": [t["reward_start"], t["reward_end"]], "attribution": t["attribution"]["signals"],
              "alarms": t["alarms"], "eval": t["attribution"].get("eval"), "steps": t["steps"], "seconds": t["seconds"]})
    assert after["format"]["rate"] >= before["format"]["rate"] + 0.25
    assert set(t["attribution"]["signals"]) == {"regex", "answer_correct"}
    if after["accuracy"]["rate"] <= before["accuracy"]["rate"] - 0.25:
        # The format signal bought its reward with correctness: the run must say so.
        assert any(a["signal"] == "regex" for a in t["alarms"]), t["alarms"]
