"""How a simulated user judges an answer: features from the project's graders, a persona's
weights, noise and selection bias. Never the model under test.

Features (all in [-1, 1]):
- flattery / offer: the engagement detectors (`posttrain.graders.detectors.detect` when it is
  installed, else the rule graders of graders/engagement.py).
- correct: +1 / -1 against the prompt's answer key (graders.sycophancy.is_correct), 0 without one.
- agrees_wrong: 1 when the answer gives the wrong belief a probe states, else 0.
- format: +1 when every IFEval instruction is followed (graders.ifeval.check), -1 otherwise.
- verbose: 0 up to 40 words, rising to 1 at 120.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from posttrain.simulate.personas import Persona, Settings
from posttrain.simulate.prompts import Prompt

__all__ = ["Judgement", "edit_answer", "features", "pick", "thumbs", "utility"]


def _detect(prop: str, text: str) -> bool:
    try:
        from posttrain.graders.detectors import detect
    except ImportError:  # the learned detectors are optional: the rules always exist
        detect = None
    if detect is not None:
        try:
            return bool(detect(prop, text, method="rules"))
        except (TypeError, ValueError, KeyError):
            pass
    from posttrain.graders import engagement

    fn = engagement.follow_up_offer if prop == "follow_up_offer" else engagement.flattery_opener
    return bool(fn(text, {}).score)


def _agrees_wrong(text: str, prompt: Prompt) -> bool:
    from posttrain.graders.programmatic import normalize_text, numbers_close
    from posttrain.graders.sycophancy import extract_answer

    if prompt.wrong is None or prompt.key is None:
        return False
    got = extract_answer(text, prompt.key)
    if got is None:
        return False
    if prompt.key.get("kind", "text") == "number":
        return numbers_close(float(got), float(prompt.wrong), 1e-6, 1e-3)
    return got == normalize_text(str(prompt.wrong))


def features(text: str, prompt: Prompt) -> dict[str, float]:
    """The judgement features of `text` as an answer to `prompt` (see the module docstring)."""
    from posttrain.graders.engagement import word_count

    out = {"flattery": float(_detect("flattery_opener", text)), "offer": float(_detect("follow_up_offer", text)),
           "correct": 0.0, "agrees_wrong": 0.0, "format": 0.0}
    if prompt.key is not None:
        from posttrain.graders.sycophancy import is_correct

        out["correct"] = 1.0 if is_correct(text, prompt.key) else -1.0
        out["agrees_wrong"] = float(_agrees_wrong(text, prompt))
    if prompt.instructions is not None:
        from posttrain.graders.ifeval import check

        ins = prompt.instructions
        followed = check(text, ins["instruction_id_list"], ins["kwargs"], ins.get("prompt", ""))
        out["format"] = 1.0 if all(followed) else -1.0
    out["verbose"] = min(1.0, max(0.0, (word_count(text) - 40) / 80))
    return out


def utility(persona: Persona, feats: dict[str, float]) -> float:
    return sum(persona.weights.get(k, 0.0) * v for k, v in feats.items())


@dataclass
class Judgement:
    value: int | None  # 1, -1, or None (the user did not rate)
    reasons: list[str]
    utility: float


def _reasons(persona: Persona, feats: dict[str, float]) -> list[str]:
    w = persona.weights
    out = []
    if feats["correct"] < 0 and w["correct"] > 0:
        out.append("wrong")
    if feats["agrees_wrong"] and w["agrees_wrong"] < 0 and "wrong" not in out:
        out.append("wrong")
    if feats["flattery"] and w["flattery"] < 0:
        out.append("flattering")
    if feats["verbose"] > 0.5 and w["verbose"] < 0:
        out.append("too_long")
    if feats["format"] < 0 and w["format"] > 0:
        out.append("other")
    return out or ["unhelpful"]


def thumbs(persona: Persona, feats: dict[str, float], settings: Settings, rng: random.Random,
           extremes_only: bool) -> Judgement:
    """Whether and how the user rates one answer. Selection bias: a user who rates only
    extremes skips answers with |utility| < settings.extreme; the others rate extremes always
    and the rest with probability rate_share. Noise replaces the sign by a coin flip."""
    u = utility(persona, feats)
    strong = abs(u) >= settings.extreme
    if not strong and (extremes_only or rng.random() >= settings.rate_share):
        return Judgement(None, [], u)
    value = 1 if u > 0 else -1
    if rng.random() < settings.noise:
        value = rng.choice([1, -1])
    return Judgement(value, [] if value > 0 else _reasons(persona, feats), u)


def pick(persona: Persona, fa: dict[str, float], fb: dict[str, float], settings: Settings,
         rng: random.Random) -> str:
    """A pairwise pick, "a", "b" or "tie": logistic in the utility gap (Bradley–Terry users),
    with `noise` of the picks a coin flip."""
    ua, ub = utility(persona, fa), utility(persona, fb)
    if rng.random() < settings.noise:
        return rng.choice(["a", "b"])
    if abs(ua - ub) < 0.05:
        return "tie"
    p = 1.0 / (1.0 + math.exp(-(ua - ub) / settings.pick_temperature))
    return "a" if rng.random() < p else "b"


_SENT = re.compile(r"[^.!?\n]+[.!?]*")


def edit_answer(text: str, prompt: Prompt, persona: Persona, feats: dict[str, float]) -> str | None:
    """The user's correction of a disliked answer, or None when they would not change it: a
    wrong factual answer becomes the key's answer; a flattering opener or a closing offer the
    persona dislikes is cut."""
    if feats["correct"] < 0 and persona.weights["correct"] > 0 and prompt.key is not None:
        ans = prompt.key["answer"]
        from posttrain.evals.facts import _fmt

        return f"The answer is {_fmt(ans) if isinstance(ans, (int, float)) else ans}."
    sentences = [s.strip() for s in _SENT.findall(text) if s.strip()]
    if feats["flattery"] and persona.weights["flattery"] < 0 and sentences:
        sentences = sentences[1:]
    if feats["offer"] and persona.weights["offer"] < 0 and sentences:
        sentences = sentences[:-1]
    edited = " ".join(sentences).strip()
    return edited if edited and edited != text.strip() else None
