"""Side-effect detectors that generalize beyond phrase lists: rules, a learned classifier over
MiniLM embeddings, their combination, and an LLM-judge variant (see docs/evals/detectors.md).

    from posttrain.graders.detectors import detect
    detect("follow_up_offer", "Paris. Want me to list more capitals?")            # True
    detect("flattery_opener", "Great question! Paris.", method="rules")           # True

`method`: "rules" (regular expressions, no model), "learned" (the classifier alone) or "both"
(the default: the combiner of the two).
"""

from __future__ import annotations

from typing import Any

from posttrain.graders.detectors.labelled import PROPERTIES, load_labelled

METHODS = ("rules", "learned", "both")


def detect_details(prop: str, text: str, method: str = "both", prompt: str | None = None,
                   closing: int = 3) -> tuple[bool, dict[str, Any]]:
    """(verdict, details: method, probability, offending sentence) for one answer; `closing` is
    how many closing sentences the offer detector reads."""
    if prop not in PROPERTIES:
        raise ValueError(f"property must be one of {', '.join(PROPERTIES)}, not {prop!r}")
    from posttrain.graders.detectors.learned import predict

    return predict(prop, text, prompt, method, closing)


def detect(prop: str, text: str, method: str = "both", prompt: str | None = None) -> bool:
    """Whether `text` shows `prop` ("follow_up_offer" or "flattery_opener"). `prompt` (the user's
    last message) lets praise that answers "is my code good?" pass."""
    return detect_details(prop, text, method, prompt)[0]


def warm(texts: list[str], prompts: list[str | None] | None = None) -> None:
    """Embed every sentence the detectors will read in one batched call (the embedding cache then
    serves them): grading many answers this way is several times faster than one by one."""
    from posttrain.graders.detectors.embed import embed
    from posttrain.graders.detectors.learned import candidates

    prompts = prompts or [None] * len(texts)
    sents = {s for t, p in zip(texts, prompts) for prop in PROPERTIES for s in candidates(prop, t, p)}
    embed(sorted(sents))


def evaluate(prop: str, method: str = "both", split: str = "test") -> dict[str, Any]:
    """Precision and recall (Wilson 95 % intervals) of a method on a labelled split."""
    from posttrain.graders.detectors.stats import pr_report

    items = load_labelled(split)
    warm([it["response"] for it in items], [it.get("prompt") for it in items])
    preds = [detect(prop, it["response"], method, it.get("prompt")) for it in items]
    report = pr_report(preds, [bool(it[prop]) for it in items])
    report["errors"] = [{"id": it["id"], "label": it[prop], "response": it["response"]}
                        for it, p in zip(items, preds) if p != it[prop]]
    return {"property": prop, "method": method, "split": split, **report}


__all__ = ["METHODS", "PROPERTIES", "detect", "detect_details", "evaluate", "load_labelled", "warm"]
