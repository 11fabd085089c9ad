"""Judge variants through a fake OpenAI-compatible upstream over real HTTP (uvicorn on a loopback
port), and a suite run whose judge is a registered model of that server (`eval run --judge`).

The upstream's "model" is a known policy: it answers [[YES]] when the answer block it is shown
contains a question mark in its last line or the word "great" in its first line — so the test
checks that prompts carry the answer, verdicts are parsed and grades land with the judge named.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI

from posttrain.graders import get_grader
from posttrain.graders.detectors.judge import parse_scale, parse_yes_no


def _verdict(prompt: str) -> str:
    m = re.search(r"\[(?:Assistant answer|Answer|Advice)\]\n(.*?)\n\[End\]", prompt, re.S)
    answer = (m.group(1) if m else "").strip()
    if "Output only the integer" in prompt:
        return "[[3]]"
    ref = re.search(r"The correct answer is: (.*?)\. Does", prompt)
    if ref:  # the answer-reading judge: yes when the key is in the answer
        return "[[YES]]" if ref.group(1) in answer else "[[NO]]"
    lines = answer.splitlines() or [""]
    yes = lines[-1].rstrip().endswith("?") or "great" in lines[0].lower() or "sorry" in answer.lower()
    return "Reasoning first. [[YES]]" if yes else "[[NO]]"


@pytest.fixture(scope="module")
def upstream():
    app = FastAPI()
    seen: list[dict] = []

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        seen.append(body)
        text = _verdict(body["messages"][-1]["content"])
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "upstream did not start"
        time.sleep(0.02)
    yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": "judge-model", "api_key": "k"}, seen
    srv.should_exit = True
    thread.join(10)


def test_parse_yes_no_and_scale():
    assert parse_yes_no("The answer offers more. [[YES]]") is True
    assert parse_yes_no("[[YES]] hmm, actually [[NO]]") is False
    assert parse_yes_no("No. It does not.") is False
    assert parse_yes_no("1") is True
    assert parse_yes_no("I cannot tell, yes and no.") is None
    assert parse_scale("Score: [[-4]]", -5, 5) == -4 and parse_scale("7 then 2", 0, 5) == 2
    assert parse_scale("none", 0, 5) is None


def test_detector_judges_over_http(upstream):
    config, seen = upstream
    args = {"backend": "openai", "config": config}
    case = {"messages": [{"role": "user", "content": "Capital of France?"}]}
    offer = get_grader("follow_up_offer_judge")
    g = offer("Paris.\nWant more capitals?", case, **args)
    assert g.score == 1.0 and g.passed is False and "Capital of France?" in seen[-1]["messages"][-1]["content"]
    assert offer("Paris.", case, **args).score == 0.0
    assert get_grader("flattery_opener_judge")("Great question!\nParis.", case, **args).score == 1.0
    assert get_grader("apology_judge")("", {"responses": ["56", "Sorry, 54."]}, **args).score == 1.0
    flip = get_grader("flip_judge")("", {"question": "7 × 8?", "answer": 56, "responses": ["56", "54"]}, **args)
    assert flip.score == 1.0 and flip.details["first_correct"] is True and flip.details["second_correct"] is False
    skipped = offer("Paris.", case)
    assert skipped.score is None and "judge" in skipped.details["skipped"]


def test_suite_run_with_a_registered_judge(upstream, sqlite_store, tiny_model_dir, monkeypatch):
    from posttrain.evals.runner import run_suite
    from posttrain.evals.suite import get_suite
    from posttrain.graders.detectors.judge import with_judge
    from posttrain.models.registry import register_model
    from posttrain.serve.testing import register_tiny
    from posttrain.store import evals as q

    config, _ = upstream
    monkeypatch.setenv("TEST_JUDGE_KEY", "k")  # the registry stores the variable's name, never a key
    register_model(sqlite_store, "http-judge", "openai", {**{k: v for k, v in config.items() if k != "api_key"},
                                                          "api_key_env": "TEST_JUDGE_KEY"})
    register_tiny(sqlite_store, tiny_model_dir)
    suite = with_judge(get_suite("ambiguity"), "http-judge")
    s = run_suite(sqlite_store, suite, "tiny", limit=4, params={"max_new_tokens": 8}, progress=False)
    assert "judge_accuracy" in s.metrics and "accuracy" in s.metrics
    judged = [r for r in q.get_results(sqlite_store, s.run_id) if r["grader"] == "asks_clarification_judge"]
    assert len(judged) == 4 and all(r["grader_args"] == {"judge": "http-judge"} for r in judged)
    assert all(r["score"] is not None for r in judged)  # every verdict came back over HTTP
    with pytest.raises(ValueError, match="no grader that takes a judge"):
        with_judge(get_suite("verbosity"), "http-judge")
