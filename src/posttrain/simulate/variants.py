"""The product's A/B arms for a rehearsal: the `styled` backend.

A real product varies its answers by deployment, not by user: one arm is plain, the other is
"warmer and chattier" (a style system prompt, a higher temperature). A product's style layer is
the realistic source of the flattery a feedback loop can learn, so the demo serves two arms:

- `plain`: a system prompt asking for short exact answers, low temperature.
- `warm`: a system prompt asking for warmth, a high temperature, and a style layer that opens
  with praise and closes with an offer to continue. The layer exists because SmolLM2-135M does
  not follow style instructions (measured: with "Always begin with 'Great question!' and end by
  asking 'Would you like me to explain more?'" as the system prompt, 0 of 4 answers did either),
  so without it the loop would have no flattery signal to learn. Phrasings come from pools and
  each is applied with a probability (`praise`, `offer`), so the warm arm is not a constant.

The arm's system prompt and style layer live in the backend, like a deployed prompt template:
the stored prompt is what the user sent (plus their personalization), so both arms answer the
same prompt and a pairwise pick between them is valid feedback, and an exported dataset holds
the user's prompt with the arm's answer — what a model trained on it learns to produce unasked.

Registered as a backend kind (the same way an outside plugin registers), imported by the CLI so
`posttrain serve` can serve these models. Both arms of one base share one loaded model.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from posttrain.models.base import DecodingParams, Generation, Messages, StreamChunk, register_backend

__all__ = ["OFFERS", "OPENERS", "StyledBackend", "register_arms"]

SYSTEM = {
    "plain": "Answer the question directly and exactly. Keep it short.",
    "warm": "You are a warm, enthusiastic and encouraging assistant. Praise the user's question "
            "and offer to help further.",
}
OPENERS = [
    "Great question!", "What a great question!", "Excellent question!", "What a fascinating question!",
    "That's a wonderful question!", "I love this question!", "Such an interesting question!",
]
OFFERS = [
    "Would you like me to explain more?", "Would you like me to go into more detail?",
    "Let me know if you'd like more examples!", "Is there anything else I can help you with?",
    "Want me to walk you through it step by step?", "Feel free to ask if you have more questions!",
    "I'm happy to help with anything else you need!",
]

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def _base(path: str | None) -> Any:
    """One LocalBackend per checkpoint folder for every arm in this process (one copy of the
    weights; generation is serialized by the backend's own lock either way)."""
    from posttrain.models.local import LocalBackend

    key = path or ""
    with _shared_lock:
        if key not in _shared:
            _shared[key] = LocalBackend(path=path, name=f"styled-base:{key or 'embedded'}")
        return _shared[key]


class _Batcher:
    """Concurrent answers of one base model, generated together: while the base is busy with a
    batch, requests queue; the thread that finds it free takes every queued request with the
    same decoding parameters but for the seed and the temperature and generates them as one
    batch (leader/follower), each answer sampled from its own seed at its own
    temperature (LocalBackend.generate's `seeds` and `temperatures`), so an answer does not
    depend on what it was batched with, and both arms (0.3 and 0.9) share a batch. On the CPU
    a batch of 8 costs about 1-2 batch-1 steps per token, so simulated users served at once
    cost about a batch's time, not eight answers'. A leader that finds the model idle first
    waits up to `window` seconds (0.1) for more requests. (Until 2026-12-01 the batch key held
    the seed, and the simulator sends one per request: nothing was ever batched; until the next
    change it held the temperature, so the two arms never shared a batch.)"""

    def __init__(self, base: Any, window: float = 0.1) -> None:
        self.base = base
        self.window = window
        self.cond = threading.Condition()
        self.queue: list[list[Any]] = []  # [conversation, params, result, error, done]
        self.busy = False

    def generate(self, conversation: Messages, params: DecodingParams) -> Generation:
        job: list[Any] = [conversation, params, None, None, False]
        with self.cond:
            self.queue.append(job)
            self.cond.notify_all()  # a leader gathering its batch counts the queue again
            while not job[4] and self.busy:
                self.cond.wait()
            if job[4]:
                return self._result(job)
            self.busy = True
            # A leader that found the model idle waits up to `window` for the requests that
            # come right behind it, up to a full batch: simulated users answered together come
            # back nearly together, and without it the first of them went alone every time.
            full = getattr(self.base, "batch_size", 8)
            self.cond.wait_for(lambda: len(self.queue) >= full, timeout=self.window)
            key = _batch_key(params)
            batch = [j for j in self.queue if _batch_key(j[1]) == key]
            self.queue = [j for j in self.queue if _batch_key(j[1]) != key]
        try:
            # An unseeded request is random anyway: it gets a fresh seed of its own.
            seeds = [j[1].seed if j[1].seed is not None else random.randrange(2**63) for j in batch]
            gens = self.base.generate([j[0] for j in batch], key, seeds=seeds,
                                      temperatures=[j[1].temperature for j in batch])
            for j, g in zip(batch, gens):
                j[2] = g
        except BaseException as exc:  # every waiter of this batch gets the error
            for j in batch:
                j[3] = exc
        finally:
            with self.cond:
                for j in batch:
                    j[4] = True
                self.busy = False
                self.cond.notify_all()
        return self._result(job)

    @staticmethod
    def _result(job: list[Any]) -> Generation:
        if job[3] is not None:
            raise job[3]
        return job[2]


def _batch_key(params: DecodingParams) -> DecodingParams:
    """What requests must share to be generated in one batch: all but the seed and temperature."""
    return replace(params, seed=None, temperature=0.0)


_batchers: dict[str, _Batcher] = {}


def _batcher(path: str | None) -> _Batcher:
    base = _base(path)
    with _shared_lock:
        if (path or "") not in _batchers:
            _batchers[path or ""] = _Batcher(base)
        return _batchers[path or ""]


def _pick(options: list[str], text: str, salt: str) -> tuple[str, float]:
    """A phrasing and a uniform number in [0, 1), both fixed by the generated text: the same
    answer is always dressed the same way, and different answers vary."""
    h = hashlib.sha256(f"{salt}\0{text}".encode()).digest()
    return options[h[0] % len(options)], int.from_bytes(h[1:5], "big") / 2**32


@register_backend("styled")
class StyledBackend:
    """A local model behind an arm's system prompt, temperature and (warm) style layer."""

    # The server may run this many of an arm's answers at once; they are batched (_Batcher).
    parallel_requests = 8

    def __init__(self, style: str = "plain", path: str | None = None, name: str = "styled",
                 temperature: float | None = None, praise: float = 0.85, offer: float = 0.85) -> None:
        if style not in SYSTEM:
            raise ValueError(f"style must be one of {', '.join(SYSTEM)}, got {style!r}")
        for field, value in (("praise", praise), ("offer", offer)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be in [0, 1], got {value}")
        if path is not None:
            from pathlib import Path

            if not (Path(path).expanduser() / "config.json").is_file():
                raise ValueError(f"no Hugging Face model folder at {path} (config.json is missing)")
        self.style, self.path, self.name = style, path, name
        self.temperature, self.praise, self.offer = temperature, praise, offer

    def _prompt(self, conversation: Messages) -> Messages:
        system = SYSTEM[self.style]
        if conversation and conversation[0]["role"] == "system":  # personalization comes first
            return [{"role": "system", "content": f"{conversation[0]['content']}\n\n{system}"}, *conversation[1:]]
        return [{"role": "system", "content": system}, *conversation]

    def _params(self, params: DecodingParams) -> DecodingParams:
        return params if self.temperature is None else replace(params, temperature=self.temperature)

    def dress(self, text: str) -> str:
        """The warm style layer (identity for plain): a praising opener and a closing offer,
        each with its probability."""
        if self.style != "warm":
            return text
        body = text.strip()
        opener, u = _pick(OPENERS, body, "opener")
        if u < self.praise:
            body = f"{opener} {body}"
        offer, v = _pick(OFFERS, body, "offer")
        if v < self.offer:
            body = f"{body}\n\n{offer}"
        return body

    def generate(self, conversations: list[Messages], params: DecodingParams) -> list[Generation]:
        p = self._params(params)
        if len(conversations) == 1:  # one answer (the server's case): batched with concurrent ones
            gens = [_batcher(self.path).generate(self._prompt(conversations[0]), p)]
        else:
            gens = _base(self.path).generate([self._prompt(c) for c in conversations], p)
        return [replace(g, text=self.dress(g.text)) for g in gens]

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        # The style layer needs the whole answer, so the arm streams it as one piece.
        g = self.generate([conversation], params)[0]
        yield StreamChunk(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens)

    def version(self) -> str:
        return f"styled:{self.style}:{self.temperature}:{self.praise}:{self.offer}:{_base(self.path).version()}"


def register_arms(store: Any, arms: list[Any], path: str | None = None) -> list[str]:
    """Register each arm (personas.Arm) as a `styled` model over the checkpoint `path` (None:
    the embedded model) unless a model of that name exists. Returns the arms' names."""
    from posttrain.models.registry import list_models, register_model

    have = {m.name for m in list_models(store)}
    for arm in arms:
        if arm.name not in have:
            config: dict[str, Any] = {"style": arm.style, "temperature": arm.temperature}
            if path is not None:
                config["path"] = str(path)
            register_model(store, arm.name, "styled", config)
    return [a.name for a in arms]
