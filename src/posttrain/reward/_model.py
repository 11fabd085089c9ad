"""A trained reward model loaded for scoring: the `graders.reward_model.RewardModel` protocol
plus batched scoring."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from posttrain.reward._data import Messages
from posttrain.reward._encode import Encoder, load_classifier, load_tokenizer

META_FILE = "posttrain_reward.json"


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not a posttrain reward model (no {META_FILE})")
    return json.loads(path.read_text())


class TrainedRewardModel:
    """Scores answers with a checkpoint written by `train_reward_model`. Loads lazily; safe to
    call from several threads (forward passes are serialized; torch already uses the cores)."""

    def __init__(self, path: str | Path, name: str | None = None, batch_size: int = 32) -> None:
        self.path = Path(path).expanduser().resolve()
        self.meta = read_meta(self.path)
        self.name = name or self.path.name
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: Any = None
        self._encoder: Encoder | None = None

    def _load(self) -> None:
        with self._lock:
            if self._model is None:
                tok = load_tokenizer(self.path)
                self._encoder = Encoder(tok, self.meta["style"], int(self.meta["max_length"]))
                model = load_classifier(self.path)
                model.eval()
                self._model = model

    @property
    def encoder(self) -> Encoder:
        self._load()
        assert self._encoder is not None
        return self._encoder

    def version(self) -> str:
        """Changes when the weights change (the checkpoint's path and size/mtime of its files)."""
        h = hashlib.sha256(str(self.path).encode())
        for f in sorted(self.path.glob("*.safetensors")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def score_ids(self, ids: list[list[int]]) -> list[float]:
        """Rewards for already-encoded sequences, in order. Sequences are batched by length so
        padding (wasted compute) stays small."""
        import torch

        self._load()
        pad = self._encoder.tok.pad_token_id
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = [0.0] * len(ids)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                width = max(len(ids[i]) for i in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
                for row, i in enumerate(chunk):
                    out[i] = float(logits[row])
        return out

    def score_batch(self, prompts: list[Messages], completions: list[str]) -> list[float]:
        """One reward per (conversation, answer); higher is better."""
        return self.score_ids(self.encoder.encode_many(prompts, completions))

    def score(self, messages: Messages, response: str) -> float:
        """The reward of one answer to a conversation."""
        return self.score_batch([messages], [response])[0]
