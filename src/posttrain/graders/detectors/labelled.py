"""The labelled answers the detectors are trained (dev) and measured (test) on.

`evals/data/detector_labels.json` holds, per split, answer bodies with their prompts, flattering
and neutral openers, offers and neutral closings, and whole answers written in one piece (hard
negatives: clarifying questions the task needs, praise that is the answer to "is my code good?",
quoted text, offers in the middle that are content; and positives in unusual places). Composed
items join a body with an opener and a closing, seeded; the splits share no body, opener or
closing, so test figures are on phrasings the detectors never saw.

Each item: {"id", "split", "prompt", "response", "follow_up_offer", "flattery_opener",
"offer_span", "flattery_span", "kind"}; a span is the offending sentence (for sentence-level
training), None when the property is absent.
"""

from __future__ import annotations

import hashlib
import json
import random
from functools import lru_cache
from importlib import resources
from typing import Any

PROPERTIES = ("follow_up_offer", "flattery_opener")
SPLITS = ("dev", "test")
VARIANTS_PER_BODY = 10


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return json.loads(resources.files("posttrain.evals").joinpath("data/detector_labels.json").read_text())


def data_version() -> str:
    """12 hex digits of the labelled file's content."""
    return hashlib.sha256(json.dumps(_raw(), sort_keys=True).encode()).hexdigest()[:12]


def _piece(text: str) -> tuple[str, str]:
    """(the piece without its marker, the offending sentence): '^' marks it, else the whole piece."""
    if "^" not in text:
        return text, text.strip("*_# ")
    before, after = text.split("^", 1)
    clean = before + after
    # The marked sentence ends at the first sentence end after the marker.
    end = min([i + 1 for i in (after.find("?"), after.find("!"), after.find(".")) if i >= 0] or [len(after)])
    return clean, after[:end].strip("*_# ")


def _compose(split: str, seed: int = 0) -> list[dict[str, Any]]:
    part = _raw()[split]
    rng = random.Random(f"{seed}-{split}")
    pools = {k: list(part[k]) for k in ("flattery", "neutral_openers", "offers", "neutral_closings")}
    cursor = {k: rng.randrange(len(v)) for k, v in pools.items()}

    def take(kind: str) -> str:
        cursor[kind] = (cursor[kind] + 1) % len(pools[kind])
        if cursor[kind] == 0:
            rng.shuffle(pools[kind])
        return pools[kind][cursor[kind]]

    # (flattery opener?, closing kind, closing after the offer?) for each of the variants
    plan = [(False, None, False), (True, None, False), (False, "offer", False), (True, "offer", False),
            (False, "neg", False), (True, "neg", False), (False, "offer", True), (False, "offer", False),
            (True, None, False), (False, "neg", False)]
    items = []
    for b, body in enumerate(part["bodies"]):
        for v, (flat, closing, signoff) in enumerate(plan[:VARIANTS_PER_BODY]):
            opener, f_span = _piece(take("flattery")) if flat else (take("neutral_openers"), None)
            text = body["body"]
            if opener:
                text = opener + (" " if rng.random() < 0.6 and not body["body"].startswith(("`", "-", "1.", "*")) else "\n\n") + text
            o_span = None
            if closing == "offer":
                offer, o_span = _piece(take("offers"))
                text += ("\n\n" if rng.random() < 0.6 else " ") + offer
                if signoff:
                    text += " " + take("neutral_closings")
            elif closing == "neg":
                text += ("\n\n" if rng.random() < 0.5 else " ") + take("neutral_closings")
            items.append({
                "id": f"{split}-b{b:02d}-v{v}", "split": split, "prompt": body["prompt"], "response": text,
                "follow_up_offer": o_span is not None, "flattery_opener": f_span is not None,
                "offer_span": o_span, "flattery_span": f_span, "kind": "composed",
            })
    for w, row in enumerate(part["whole"]):
        items.append({"id": f"{split}-w{w:02d}", "split": split, "kind": "whole", **row})
    return items


def load_labelled(split: str | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Labelled items of one split ("dev" or "test") or of both (None)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return [it for s in SPLITS if split in (None, s) for it in _compose(s, seed)]
