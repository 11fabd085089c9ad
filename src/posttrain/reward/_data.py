"""Reading reward-model training data in TRL's documented layouts.

Preference rows (pairwise): `{"prompt", "chosen", "rejected"}` with an explicit prompt, or
`{"chosen", "rejected"}` with the prompt implicit in both (HH-RLHF's transcripts); either plain
strings or conversational lists of `{"role", "content"}` messages. Unpaired rows (pointwise, KTO):
`{"prompt", "completion", "label"}`. Everything is normalised to a prompt as a message list and
the answer as a string, so training and scoring encode text the same way.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.jsonl import read_objects

Messages = list[dict[str, str]]

# HH-RLHF and Anthropic-style transcripts: "\n\nHuman: …\n\nAssistant: …".
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant|System):[ ]?", re.MULTILINE)
_ROLE = {"Human": "user", "Assistant": "assistant", "System": "system"}


@dataclass(frozen=True)
class Pair:
    """One preference: `chosen` is the better answer to the conversation `prompt`."""

    prompt: tuple[tuple[str, str], ...]  # (role, content), hashable for grouping
    chosen: str
    rejected: str

    @property
    def messages(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.prompt]


@dataclass(frozen=True)
class Point:
    """One unpaired rating: `label` True for a good answer (thumbs up)."""

    prompt: tuple[tuple[str, str], ...]
    completion: str
    label: bool

    @property
    def messages(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.prompt]


def parse_transcript(text: str) -> Messages:
    """Split an "Human: … Assistant: …" transcript into messages; text without markers is one
    user message."""
    marks = list(_TURN.finditer(text))
    if not marks:
        return [{"role": "user", "content": text.strip()}] if text.strip() else []
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append({"role": _ROLE[m.group(1)], "content": text[m.end():end].strip()})
    return out


def _messages(value: Any, where: str, field: str) -> Messages:
    if isinstance(value, str):
        return parse_transcript(value)
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                       and isinstance(m.get("role"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(f"{where}: {field!r} must be a string or a list of {{role, content}} messages")


def _answer(value: Any, where: str, field: str) -> str:
    """The assistant's answer: a string, or a conversational list whose last message is it."""
    if isinstance(value, str):
        return value.strip()
    msgs = _messages(value, where, field)
    if not msgs or msgs[-1]["role"] != "assistant":
        raise ValueError(f"{where}: {field!r} must end with an assistant message")
    return msgs[-1]["content"]


def _key(msgs: Messages) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in msgs)


def _rest(msgs: Messages) -> str:
    """What follows the shared prompt, as one answer: its content, or labelled turns if several."""
    if len(msgs) == 1:
        return msgs[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in msgs)


def _split_implicit(chosen: Any, rejected: Any, where: str) -> tuple[Messages, str, str]:
    """Implicit prompt: both sides carry the whole conversation; the prompt is the longest run of
    messages they share, the answers are what follows (usually one assistant turn; a few HH-RLHF
    rows differ earlier, and then the answer is the rest of the transcript)."""
    c, r = _messages(chosen, where, "chosen"), _messages(rejected, where, "rejected")
    shared = 0
    while shared < min(len(c), len(r)) - 1 and c[shared] == r[shared]:
        shared += 1
    if not c[shared:] or not r[shared:] or c == r:
        raise ValueError(f"{where}: 'chosen' and 'rejected' must differ in their last turns")
    return c[:shared], _rest(c[shared:]), _rest(r[shared:])


def pair_from_row(row: dict[str, Any], where: str = "row") -> Pair:
    """A Pair from one preference row in any of TRL's preference layouts."""
    for field in ("chosen", "rejected"):
        if field not in row:
            raise ValueError(f"{where}: missing {field!r} (preference rows need prompt/chosen/rejected)")
    if "prompt" in row and row["prompt"] not in (None, "", []):
        prompt = _messages(row["prompt"], where, "prompt")
        chosen, rejected = _answer(row["chosen"], where, "chosen"), _answer(row["rejected"], where, "rejected")
    else:
        prompt, chosen, rejected = _split_implicit(row["chosen"], row["rejected"], where)
    return Pair(_key(prompt), chosen, rejected)


def point_from_row(row: dict[str, Any], where: str = "row") -> Point:
    """A Point from one KTO row (`prompt`, `completion`, `label`)."""
    for field in ("prompt", "completion", "label"):
        if field not in row:
            raise ValueError(f"{where}: missing {field!r} (unpaired rows need prompt/completion/label)")
    if not isinstance(row["label"], bool):
        raise ValueError(f"{where}: 'label' must be true or false, got {row['label']!r}")
    return Point(_key(_messages(row["prompt"], where, "prompt")), _answer(row["completion"], where, "completion"),
                 row["label"])


def read_pairs(path: Path | str) -> list[Pair]:
    """Every preference row of a JSONL file (ValueError naming the line otherwise)."""
    pairs = [pair_from_row(rec, f"{path}:{n}") for n, rec in read_objects(path, "pairs")]
    if not pairs:
        raise ValueError(f"{path}: no preference rows")
    return pairs


def read_points(path: Path | str) -> list[Point]:
    """Every unpaired (KTO) row of a JSONL file."""
    points = [point_from_row(rec, f"{path}:{n}") for n, rec in read_objects(path, "ratings")]
    if not points:
        raise ValueError(f"{path}: no prompt/completion/label rows")
    return points


def file_digest(path: Path | str) -> str:
    """sha256 of a data file, recorded in the lineage of a model trained from it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_by_prompt(rows: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held out): whole prompts go to one side, so the held-out score is not inflated by
    answers to prompts the model trained on. At least one row stays on each side."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be between 0 and 1, got {fraction}")
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.prompt, []).append(row)
    keys = sorted(groups, key=lambda k: hashlib.sha256(repr(k).encode()).hexdigest())
    random.Random(seed).shuffle(keys)
    want = max(1, round(fraction * len(rows)))
    held: list[Any] = []
    for k in keys[:-1]:  # the last prompt always stays in training
        if len(held) >= want:
            break
        held.extend(groups[k])
    held_set = {id(r) for r in held}
    train = [r for r in rows if id(r) not in held_set]
    if not train or not held:
        raise ValueError(f"need at least two distinct prompts to hold out a split, got {len(groups)}")
    return train, held
