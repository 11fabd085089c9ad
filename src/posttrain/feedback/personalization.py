"""How custom instructions and memory reach the model: one system message, built the same way by
the chat server and the eval runner (so an eval with memory probes what users really get)."""

from __future__ import annotations

MEMORY_HEADER = "Things the user asked you to remember:"


def system_prompt(custom_instructions: str | None, memory: list[str]) -> str | None:
    """The personalization system prompt, or None when the user has neither."""
    parts = []
    if custom_instructions and custom_instructions.strip():
        parts.append(custom_instructions.strip())
    facts = [m.strip() for m in memory if m and m.strip()]
    if facts:
        parts.append(MEMORY_HEADER + "\n" + "\n".join(f"- {f}" for f in facts))
    return "\n\n".join(parts) if parts else None


def apply(
    messages: list[dict[str, str]], custom_instructions: str | None, memory: list[str],
    default_system: str | None = None,
) -> list[dict[str, str]]:
    """Messages as the model sees them.

    The personalization prompt goes first. A client's own system message is kept and merged after
    it (one system message, because many chat templates, SmolLM2's included, expect at most one).
    With `default_system` set (the chat server sets it), a conversation that would otherwise have
    no system message gets that one, possibly empty: a chat template then has no reason to insert
    a default system prompt of its own, so the messages are exactly what the model saw.
    """
    prompt = system_prompt(custom_instructions, memory)
    if prompt is None:
        out = [dict(m) for m in messages]
        if default_system is not None and not (out and out[0].get("role") == "system"):
            out.insert(0, {"role": "system", "content": default_system})
        return out
    rest = [dict(m) for m in messages]
    if rest and rest[0].get("role") == "system":
        prompt = prompt + "\n\n" + rest.pop(0)["content"]
    return [{"role": "system", "content": prompt}, *rest]
