"""The stored prompt is exactly what the model saw: rendering the stored messages with the
model's own chat template gives the prompt the model was given, token for token, and the
template adds no system message of its own (SmolLM2's inserts a default one when a
conversation has none, which the stored prompt did not show at 7b61e5a)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from posttrain.serve.testing import make_env
from posttrain.store import chat as chat_queries

SYSTEM_OPEN = "<|im_start|>system"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _stored(env, who: str, messages: list[dict]) -> dict:
    with env.client(who) as c:
        r = c.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 2})
    assert r.status_code == 200, r.text
    with env.store.session() as s:
        return chat_queries.get_completion(s, r.json()["id"])


def test_the_stored_prompt_renders_to_what_the_model_saw(sqlite_store, tiny_model_dir, tokenizer):
    env = make_env(sqlite_store, tiny_model_dir)
    with env.client("bob") as c:
        assert c.post("/v1/me/memory", json={"text": "my dog is called Rex"}).status_code == 201
    cases = [
        ("alice", [{"role": "user", "content": "What is the capital of France?"}]),
        ("alice", [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello"}]),
        ("bob", [{"role": "user", "content": "What is my dog called?"}]),
    ]
    for who, messages in cases:
        row = _stored(env, who, messages)
        rendered = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        # Every system block in what the model saw is a system message in the stored prompt.
        systems = [m for m in row["prompt"] if m["role"] == "system"]
        assert rendered.count(SYSTEM_OPEN) == len(systems) == 1, rendered
        assert "SmolLM" not in rendered  # the template's own default system prompt
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert row["prompt_tokens"] == len(ids)
        assert row["prompt"][-1] == messages[-1]
