"""Row layouts: TRL's documented dataset types and OpenAI's fine-tuning JSONL.

TRL (conversational, as trl.data_utils and the trainers read them):
- sft:         {"messages": [...the conversation..., {"role": "assistant", "content": answer}]}
               (language modeling; SFTTrainer)
- preferences: {"prompt": [...], "chosen": [assistant msg], "rejected": [assistant msg],
                "source": "pairwise" | "edit" | "thumbs"}  (preference; DPOTrainer, RewardTrainer)
- kto:         {"prompt": [...], "completion": [assistant msg], "label": bool}
               (unpaired preference; KTOTrainer)
- prompts:     {"prompt": [...], "reference": str | null, "reference_source": "edit" |
                "pairwise" | "thumbs_up" | null, "reasons": [...]}  (prompt-only; GRPOTrainer
               passes the extra columns to reward functions as keyword arguments)
OpenAI:
- sft:         {"messages": [...]}  (supervised fine-tuning)
- preferences: {"input": {"messages": [...]}, "preferred_output": [assistant msg],
                "non_preferred_output": [assistant msg]}  (direct preference optimization)
- prompts:     {"messages": [...ending with the user turn], "reference", "reference_source",
                "reasons"}  (reinforcement fine-tuning: extra fields are the graders' `item`)
- kto: OpenAI has no unpaired layout.
feedback is exported as stored (one event per line, both formats refused but trl).
"""

from __future__ import annotations

from typing import Any

from posttrain.datasets.sources import Example

FORMATS = ("trl", "openai")


def check_format(kind: str, fmt: str) -> None:
    """Raise ValueError (one line) for a kind/format pair that has no layout."""
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}")
    if fmt == "openai" and kind == "kto":
        raise ValueError("format: OpenAI fine-tuning has no unpaired (KTO) layout; use --format trl")
    if fmt == "openai" and kind == "feedback":
        raise ValueError("format: feedback is exported as stored; leave --format at trl")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def row(ex: Example, kind: str, fmt: str) -> dict[str, Any]:
    """The JSON object of one exported line."""
    if kind == "feedback":
        return ex.extra
    if kind == "sft":
        return {"messages": ex.prompt + _assistant(ex.answer or "")}
    if kind == "preferences":
        if fmt == "openai":
            return {"input": {"messages": ex.prompt}, "preferred_output": _assistant(ex.answer or ""),
                    "non_preferred_output": _assistant(ex.rejected or "")}
        return {"prompt": ex.prompt, "chosen": _assistant(ex.answer or ""),
                "rejected": _assistant(ex.rejected or ""), "source": ex.source}
    if kind == "kto":
        return {"prompt": ex.prompt, "completion": _assistant(ex.answer or ""), "label": bool(ex.label)}
    if kind == "prompts":
        refs = {"reference": ex.answer, "reference_source": ex.extra.get("reference_source"),
                "reasons": list(ex.extra.get("reasons", []))}
        return {"messages" if fmt == "openai" else "prompt": ex.prompt, **refs}
    raise ValueError(f"kind: unknown {kind!r}")
