"""The local backend's own token loop: one prefill, then one token per step, no `generate()`.

It chooses tokens exactly as transformers' `generate()` does for the parameters posttrain
passes (greedy argmax; or temperature, then top-p, then softmax and `torch.multinomial` over the
whole batch each step, so a seed draws the same random numbers), and leaves stopping to the
caller, who simply stops iterating. With one generator per row (`generators`), each row draws
from its own seeded stream instead: a row's answer is then the one it gets alone with that seed,
whatever else shares the batch (up to the batched products' rounding in the last bits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from posttrain.models._llama_step import LlamaStep, supports
from posttrain.models.base import DecodingParams

# Generation-config fields that only name tokens or limits we handle ourselves, or say nothing
# about how tokens are chosen. Anything else (a repetition penalty, banned words, a minimum
# length...) is something generate() honours and this loop does not: such a model falls back.
_NEUTRAL_FIELDS = {
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "do_sample", "temperature",
    "top_p", "top_k", "max_length", "max_new_tokens", "use_cache", "output_attentions",
    "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "transformers_version", "_from_model_config", "cache_implementation",
}


def fast_step(model: Any) -> LlamaStep | None:
    """A LlamaStep for `model`, or None when the loop cannot reproduce generate() for it."""
    from transformers import GenerationConfig

    if not supports(model):
        return None
    defaults = GenerationConfig().to_dict()
    extra = {k for k, v in model.generation_config.to_dict().items()
             if k not in _NEUTRAL_FIELDS and v != defaults.get(k, v)}
    return None if extra else LlamaStep(model)


def choose(logits: torch.Tensor, params: DecodingParams,
           generators: list[torch.Generator] | None = None,
           temperatures: list[float] | None = None) -> torch.Tensor:
    """Next token per row from fp32 logits [batch, vocab], as generate() picks it (top_k off);
    with `generators`, row i samples from generators[i]; with `temperatures` (one per row, in
    place of params.temperature; needs `generators`), row i is scaled by its own, 0 being greedy."""
    if temperatures is not None:
        if generators is None or len(temperatures) != len(generators):
            raise ValueError("temperatures need one generator per row")
        temps = torch.tensor(temperatures, dtype=logits.dtype)
        greedy = logits.argmax(dim=-1)
        sampled = temps > 0
        if not bool(sampled.any()):
            return greedy
        scores = logits / torch.where(sampled, temps, torch.ones_like(temps))[:, None]
        picks = _sample(scores, params.top_p, generators)
        return torch.where(sampled, picks, greedy)
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits / params.temperature if params.temperature != 1.0 else logits
    return _sample(scores, params.top_p, generators)


def _sample(scores: torch.Tensor, top_p: float, generators: list[torch.Generator] | None) -> torch.Tensor:
    if top_p < 1.0:
        # transformers' TopPLogitsWarper: drop the low tail whose mass is <= 1 - top_p, keep >= 1.
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if generators is None:
        return torch.multinomial(probs, num_samples=1).squeeze(1)
    return torch.cat([torch.multinomial(probs[i : i + 1], num_samples=1, generator=g).squeeze(1)
                      for i, g in enumerate(generators)])


# What one more prefill call costs beside the positions it computes, in positions: a call's fixed
# work (30 layers of small operations) and its smaller, less efficient products.
PREFILL_CALL_POSITIONS = 32
# The most positions one prefill call computes: a group above it is cut by rows, so a batch of
# long prompts does not need its activations all at once (at 16384 positions SmolLM2's MLP
# holds about 100 MB per intermediate tensor).
PREFILL_MAX_POSITIONS = 16384


def prefill_groups(lengths: list[int], max_positions: int = PREFILL_MAX_POSITIONS) -> list[tuple[int, int, int]]:
    """The rows cut into consecutive groups (first, end, widest length) so that the positions a
    grouped prefill computes (each group padded to its widest prompt) plus
    PREFILL_CALL_POSITIONS per group are fewest (exact, by dynamic programming over the cuts);
    then any group over `max_positions` is cut by rows. Sorted lengths group best; the local
    backend sorts its batches."""
    n = len(lengths)
    best, cut = [0] + [None] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        widest = 0
        for first in range(end - 1, -1, -1):
            widest = max(widest, lengths[first])
            cost = best[first] + widest * (end - first) + PREFILL_CALL_POSITIONS
            if best[end] is None or cost < best[end]:
                best[end], cut[end] = cost, first
    groups, end = [], n
    while end > 0:
        first = cut[end]
        widest = max(lengths[first:end])
        rows = max(1, max_positions // widest)
        groups[:0] = [(at, min(at + rows, end), max(lengths[at : min(at + rows, end)])) for at in range(first, end, rows)]
        end = first
    return groups


def decode(step: LlamaStep, prompts: list[list[int]], pad_id: int, params: DecodingParams,
           generators: list[torch.Generator] | None = None,
           temperatures: list[float] | None = None,
           finished: list[bool] | None = None) -> Iterator[list[int]]:
    """Yield each step's next token for every row of the left-padded batch, up to
    max_new_tokens steps (`generators`, `temperatures`: one per row, see choose). Breaking out of
    the loop ends it and frees the cache.

    `finished` (one flag per row, set by the caller between steps): rows it marks are dropped
    from the batch, their cache rows with them, and get -1 from then on; the others go on as
    they would have. Without it, finished rows keep getting tokens (ignored), as in generate().
    Only where each row's choice is its own (greedy, or a generator per row): sampling from the
    one global generator draws a row's numbers by its place in the batch, so a smaller batch
    would change the other rows' samples, and there nothing is dropped. In an eval batch the
    answers end at very different steps (64 questions at 32 new tokens: 907 of 2,048 slots
    used), so dropping the finished rows saves most of the decoding work."""
    batch, width = len(prompts), max(len(p) for p in prompts)
    total = width + params.max_new_tokens
    lengths = torch.tensor([len(p) for p in prompts])
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    offset = (width - lengths)[:, None]  # where each row's prompt starts
    positions = (torch.arange(width)[None, :] - offset).clamp(min=0)  # each row counts from 0
    key_ok = None
    if int(lengths.min()) < width:
        key_ok = torch.ones(batch, total, dtype=torch.bool)
        key_ok[:, :width] = torch.arange(width)[None, :] >= offset
    own_choice = generators is not None or (temperatures is None and params.temperature == 0)
    if not own_choice:
        finished = None
    rows = list(range(batch))  # the original index of each row still in the batch
    step.start(batch, total, key_ok)
    try:
        logits = step.prefill(ids, positions, prefill_groups(lengths.tolist()))
        for t in range(params.max_new_tokens):
            tokens = choose(logits, params, generators, temperatures)
            if len(rows) == batch:
                yield tokens.tolist()
            else:
                out = [-1] * batch
                for r, token in zip(rows, tokens.tolist()):
                    out[r] = token
                yield out
            if t + 1 == params.max_new_tokens:
                break
            if finished is not None:
                keep = [j for j, r in enumerate(rows) if not finished[r]]
                if not keep:
                    break
                if len(keep) < len(rows):
                    sel = torch.tensor(keep)
                    step.keep(sel)
                    rows, lengths, tokens = [rows[j] for j in keep], lengths[sel], tokens[sel]
                    if generators is not None:
                        generators = [generators[j] for j in keep]
                    if temperatures is not None:
                        temperatures = [temperatures[j] for j in keep]
            logits = step.forward(tokens[:, None], (lengths + t)[:, None])
    finally:
        step.finish()
