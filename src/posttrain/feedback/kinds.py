"""Feedback kinds, reason tags and implicit signals, and the validation of one feedback payload.

Plain Python on purpose: the HTTP server, the simulator and imports from files all validate
through `validate`, and the JSON schema shown in /openapi.json is built from the same constants.

- thumbs:   value 1 or -1; reasons ⊆ REASONS; optional comment.
- pairwise: completion_id is answer "a", other_completion_id answer "b"; value "a" | "b" | "tie";
            optional positions {"left": id, "right": id} (how the two were displayed).
- edit:     edited_text (the user's corrected answer), non-empty.
- implicit: signal in SIGNALS (regenerate, copy, abandon, continue).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("thumbs", "pairwise", "edit", "implicit")
REASONS = ("wrong", "unhelpful", "too_long", "flattering", "evasive", "unsafe", "other")
SIGNALS = ("regenerate", "copy", "abandon", "continue")
PAIRWISE_VALUES = ("a", "b", "tie")
THUMBS_VALUES = (1, -1)

MAX_ID = 200  # longer than any id we make; an unknown id is a 404, not a format error
MAX_KEY = 200  # matches feedback_events.idempotency_key
MAX_TEXT = 100_000
FIELDS = (
    "completion_id", "kind", "value", "reasons", "comment", "other_completion_id",
    "positions", "edited_text", "signal", "idempotency_key",
)


class InvalidFeedback(ValueError):
    """The payload breaks a rule; str(exc) is a one-line reason naming the field."""


@dataclass(frozen=True)
class Feedback:
    """A validated feedback payload."""

    completion_id: str
    kind: str
    value: int | str | None = None
    reasons: list[str] = field(default_factory=list)
    comment: str | None = None
    other_completion_id: str | None = None
    positions: dict[str, str] | None = None
    edited_text: str | None = None
    signal: str | None = None
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choices(values: tuple) -> str:
    return ", ".join(str(v) for v in values)


def _string(payload: dict[str, Any], name: str, *, max_len: int, required: bool = False) -> str | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise InvalidFeedback(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise InvalidFeedback(f"{name}: must be a string")
    if not value.strip():
        raise InvalidFeedback(f"{name}: must not be empty")
    if len(value) > max_len:
        raise InvalidFeedback(f"{name}: must be at most {max_len} characters")
    return value


def _only_for(payload: dict[str, Any], name: str, kind: str, allowed: str) -> None:
    if payload.get(name) is not None and kind != allowed:
        raise InvalidFeedback(f"{name}: only allowed when kind is {allowed}")


def validate(payload: Any) -> Feedback:
    """Check one feedback payload (a decoded JSON object); raise InvalidFeedback on the first
    problem. Only types and values are checked here; whether the completions exist and belong
    to the caller is the service's job."""
    if not isinstance(payload, dict):
        raise InvalidFeedback("body: must be a JSON object")
    unknown = [k for k in payload if k not in FIELDS]
    if unknown:
        raise InvalidFeedback(f"{unknown[0]}: unknown field; allowed: {', '.join(FIELDS)}")
    completion_id = _string(payload, "completion_id", max_len=MAX_ID, required=True)
    kind = payload.get("kind")
    if kind is None:
        raise InvalidFeedback("kind: required")
    if kind not in KINDS or not isinstance(kind, str):
        raise InvalidFeedback(f"kind: must be one of {_choices(KINDS)}")

    value = payload.get("value")
    if kind == "thumbs":
        # bool is an int in Python (True == 1): refuse it explicitly.
        if value is None:
            raise InvalidFeedback("value: required for thumbs (1 or -1)")
        if isinstance(value, bool) or not isinstance(value, int) or value not in THUMBS_VALUES:
            raise InvalidFeedback("value: must be 1 or -1 for thumbs")
    elif kind == "pairwise":
        if value is None:
            raise InvalidFeedback("value: required for pairwise (a, b or tie)")
        if not isinstance(value, str) or value not in PAIRWISE_VALUES:
            raise InvalidFeedback(f"value: must be one of {_choices(PAIRWISE_VALUES)} for pairwise")
    elif value is not None:
        raise InvalidFeedback(f"value: must be null or absent for {kind}")

    reasons = payload.get("reasons")
    if reasons is None:
        reasons = []
    if not isinstance(reasons, list):
        raise InvalidFeedback("reasons: must be an array")
    for i, r in enumerate(reasons):
        if not isinstance(r, str) or r not in REASONS:
            raise InvalidFeedback(f"reasons[{i}]: must be one of {_choices(REASONS)}")
    reasons = list(dict.fromkeys(reasons))  # keep order, drop repeats

    comment = payload.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise InvalidFeedback("comment: must be a string")
        if len(comment) > MAX_TEXT:
            raise InvalidFeedback(f"comment: must be at most {MAX_TEXT} characters")
        comment = comment or None

    for name, allowed in (("other_completion_id", "pairwise"), ("positions", "pairwise"),
                          ("edited_text", "edit"), ("signal", "implicit")):
        _only_for(payload, name, kind, allowed)

    other = positions = edited = signal = None
    if kind == "pairwise":
        other = _string(payload, "other_completion_id", max_len=MAX_ID, required=True)
        if other == completion_id:
            raise InvalidFeedback("other_completion_id: must differ from completion_id")
        positions = payload.get("positions")
        if positions is not None:
            if not isinstance(positions, dict) or set(positions) != {"left", "right"}:
                raise InvalidFeedback('positions: must be {"left": <completion_id>, "right": <completion_id>}')
            for side in ("left", "right"):
                if not isinstance(positions[side], str):
                    raise InvalidFeedback(f"positions.{side}: must be a string (a completion id)")
            if {positions["left"], positions["right"]} != {completion_id, other}:
                raise InvalidFeedback("positions: left and right must be completion_id and other_completion_id")
            positions = {"left": positions["left"], "right": positions["right"]}
    elif kind == "edit":
        edited = _string(payload, "edited_text", max_len=MAX_TEXT, required=True)
    elif kind == "implicit":
        signal = payload.get("signal")
        if signal is None:
            raise InvalidFeedback(f"signal: required for implicit ({_choices(SIGNALS)})")
        if not isinstance(signal, str) or signal not in SIGNALS:
            raise InvalidFeedback(f"signal: must be one of {_choices(SIGNALS)}")

    key = _string(payload, "idempotency_key", max_len=MAX_KEY)
    return Feedback(
        completion_id=completion_id, kind=kind, value=value, reasons=reasons, comment=comment,
        other_completion_id=other, positions=positions, edited_text=edited, signal=signal,
        idempotency_key=key,
    )


def json_schema() -> dict[str, Any]:
    """The request-body schema of POST /v1/feedback, built from the constants above."""
    nullable_str = {"type": ["string", "null"]}
    return {
        "type": "object",
        "title": "FeedbackIn",
        "required": ["completion_id", "kind"],
        "additionalProperties": False,
        "properties": {
            "completion_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
            "kind": {"type": "string", "enum": list(KINDS)},
            "value": {
                "description": "thumbs: 1 | -1; pairwise: a | b | tie; edit, implicit: null",
                "oneOf": [
                    {"type": "integer", "enum": list(THUMBS_VALUES)},
                    {"type": "string", "enum": list(PAIRWISE_VALUES)},
                    {"type": "null"},
                ],
            },
            "reasons": {"type": "array", "items": {"type": "string", "enum": list(REASONS)}},
            "comment": nullable_str,
            "other_completion_id": {"type": ["string", "null"], "maxLength": MAX_ID},
            "positions": {
                "type": ["object", "null"],
                "properties": {"left": {"type": "string"}, "right": {"type": "string"}},
            },
            "edited_text": nullable_str,
            "signal": {"type": ["string", "null"], "enum": [*SIGNALS, None]},
            "idempotency_key": {"type": ["string", "null"], "maxLength": MAX_KEY},
        },
    }
