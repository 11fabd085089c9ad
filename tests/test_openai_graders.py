"""OpenAI grader JSON run locally: each type on OpenAI's documented examples, templating, the
python sandbox, the formula evaluator, and the same file as an eval grader and a GRPO signal."""

from __future__ import annotations

import json
import math

import pytest

from posttrain.graders.openai_graders import grade, render, run_grader, validate_grader
from posttrain.graders._openai_exec import safe_formula
from posttrain.graders._openai_text import bleu, gleu, meteor, rouge_l, rouge_n, similarity

# The examples in OpenAI's graders guide (platform.openai.com/docs/guides/graders).
STRING_CHECK = {"type": "string_check", "name": "Example string check grader", "input": "{{sample.output_text}}",
                "reference": "{{item.label}}", "operation": "eq"}
TEXT_SIMILARITY = {"type": "text_similarity", "name": "Example text similarity grader",
                   "input": "{{sample.output_text}}", "reference": "{{item.label}}", "pass_threshold": 0.8,
                   "evaluation_metric": "fuzzy_match"}
MULTI = {"type": "multi", "name": "example multi grader",
         "graders": {"name": {"name": "name_grader", "type": "text_similarity", "input": "{{sample.output_json.name}}",
                              "reference": "{{item.name}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9},
                     "email": {"name": "email_grader", "type": "string_check", "input": "{{sample.output_json.email}}",
                               "reference": "{{item.email}}", "operation": "eq"}},
         "calculate_output": "(name + email) / 2"}
PYTHON = {"type": "python", "name": "python grader",
          "source": "def grade(sample, item) -> float:\n"
                    "    output_text = sample['output_text']\n"
                    "    reference_answer = item['reference_answer']\n"
                    "    return 1.0 if output_text.strip().lower() == reference_answer.lower() else 0.0\n"}


@pytest.mark.parametrize("op, text, ref, want", [
    ("eq", "positive", "positive", 1), ("eq", "Positive", "positive", 0), ("ne", "a", "b", 1),
    ("like", "the answer is positive", "positive", 1), ("like", "POSITIVE", "positive", 0),
    ("ilike", "POSITIVE!", "positive", 1)])
def test_string_check_operations(op, text, ref, want):
    assert grade({**STRING_CHECK, "operation": op}, {"output_text": text}, {"label": ref}) == want


def test_templating_paths_and_unknown_variables():
    assert render("{{ item.a.b[1] }}/{{sample.output_text}}", {"output_text": "x"}, {"a": {"b": [0, 7]}}) == "7/x"
    assert render("{{item.obj}}", {}, {"obj": {"k": 1}}) == '{"k": 1}'
    with pytest.raises(ValueError, match="not in the item"):
        render("{{item.missing}}", {}, {})
    with pytest.raises(ValueError, match="namespace"):
        render("{{other.x}}", {}, {})


def test_text_similarity_metrics_against_hand_computed_values():
    assert grade(TEXT_SIMILARITY, "fuzzy wuzzy was a bear", {"label": "fuzzy wuzzy was a bear"}) == 1.0
    assert run_grader(TEXT_SIMILARITY, "Fuzzy Wuzzy was a bear", {"label": "fuzzy wuzzy was a bear"})["reward"] == 1.0
    # ROUGE-1: hyp "the cat sat", ref "the cat sat down": p = 1, r = 3/4 -> F1 = 6/7
    assert rouge_n("the cat sat", "the cat sat down", 1) == pytest.approx(6 / 7)
    # ROUGE-2: bigrams 2 of 2 vs 2 of 3 -> F1 = 0.8
    assert rouge_n("the cat sat", "the cat sat down", 2) == pytest.approx(0.8)
    assert rouge_l("a b c d", "a x c d") == pytest.approx(0.75)  # LCS a c d = 3 of 4 both ways
    # GLEU: 1-4-grams of hyp (3+2+1=6) all in ref (4+3+2+1=10): min(6/6, 6/10)
    assert gleu("the cat sat", "the cat sat down") == pytest.approx(0.6)
    # BLEU: identical 4+ word sentences score 1; brevity penalty exp(1 - 4/3) for a 3-word hyp
    assert bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    p1, p2, p3 = 3 / 3, (2 + 1) / (2 + 1), (1 + 1) / (1 + 1)
    p4 = 1 / 1  # add-one smoothing of an empty 4-gram set: (0+1)/(0+1)
    assert bleu("the cat sat", "the cat sat down") == pytest.approx(math.exp(1 - 4 / 3) * (p1 * p2 * p3 * p4) ** 0.25)
    # METEOR, exact matches: m = 3, P = 1, R = 3/4, one chunk -> Fmean * (1 - 0.5 * (1/3)^3)
    fmean = (1 * 0.75) / (0.9 * 1 + 0.1 * 0.75)
    assert meteor("the cat sat", "the cat sat down") == pytest.approx(fmean * (1 - 0.5 * (1 / 3) ** 3))
    assert similarity("rouge_3", "a b c", "x y z") == 0.0


def test_cosine_uses_the_packaged_encoder():
    same = similarity("cosine", "The cat sat on the mat.", "A cat was sitting on the mat.")
    other = similarity("cosine", "The cat sat on the mat.", "Quarterly revenue grew by four percent.")
    assert 0.6 < same <= 1.0 and other < same - 0.3


def test_multi_documented_example_and_safe_formula():
    sample = {"output_text": json.dumps({"name": "John Doe", "email": "john@example.com"})}
    out = run_grader(MULTI, sample, {"name": "John Doe", "email": "john@example.com"})
    assert out["reward"] == 1.0 and out["sub_rewards"] == {"name": 1.0, "email": 1.0}
    assert run_grader(MULTI, sample, {"name": "John Doe", "email": "jane@example.com"})["reward"] == 0.5
    assert safe_formula("max(a, b) ^ 2 + abs(-1) - floor(0.5) + sqrt(4) / log(exp(2))", {"a": 1, "b": 3}) == 11.0
    for evil in ["__import__('os').system('true')", "a.__class__", "[a][0]", "(lambda: 1)()", "open('x')", "a if a else b"]:
        with pytest.raises(ValueError):
            safe_formula(evil, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="unknown name"):
        safe_formula("c + 1", {"a": 1})


def test_python_grader_runs_in_a_subprocess_with_a_timeout():
    assert grade(PYTHON, "Paris", {"reference_answer": "paris"}) == 1.0
    assert grade(PYTHON, "Lyon", {"reference_answer": "paris"}) == 0.0
    with pytest.raises(ValueError, match="timed out"):
        grade({**PYTHON, "source": "def grade(sample, item):\n    while True:\n        pass\n", "timeout": 1},
              "x", {})
    with pytest.raises(ValueError, match="KeyError"):
        grade(PYTHON, "x", {})
    # the grader cannot see our process: no environment variables reach it
    leak = {**PYTHON, "source": "import os\ndef grade(sample, item):\n    return float(len(os.environ))\n"}
    assert grade(leak, "x", {}) <= 3.0  # only what the interpreter sets itself (e.g. LC_CTYPE)


def test_validation_names_the_field():
    with pytest.raises(ValueError, match="missing field 'reference'"):
        validate_grader({"type": "string_check", "input": "x", "operation": "eq"})
    with pytest.raises(ValueError, match="'operation' must be one of"):
        validate_grader({**STRING_CHECK, "operation": "regex"})
    with pytest.raises(ValueError, match="passing_labels"):
        validate_grader({"type": "label_model", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["b"]})
    with pytest.raises(ValueError, match="unknown type"):
        validate_grader({"type": "sql"})


class _Judge:
    """A registered backend that answers like a grading model would (a plugin, registered the
    way any outside backend is)."""

    def __init__(self, reply: str, name: str = "judge") -> None:
        self.name, self.reply = name, reply

    def generate(self, conversations, params):
        from posttrain.models.base import Generation

        return [Generation(self.reply, 1, 1, 0.0) for _ in conversations]

    def stream(self, conversation, params):  # pragma: no cover - not used by graders
        raise NotImplementedError

    def version(self) -> str:
        return self.reply


@pytest.fixture
def judge_store(sqlite_store):
    from posttrain.models.base import register_backend
    from posttrain.models.registry import register_model

    register_backend("test-judge")(_Judge)
    register_model(sqlite_store, "scorer", "test-judge", {"reply": '{"result": 0.8, "steps": []}'})
    register_model(sqlite_store, "labeler", "test-judge", {"reply": "The sentiment is negative."})
    return sqlite_store


def test_score_and_label_model_through_registered_models(judge_store):
    from posttrain.evals.grade import grading_store

    score = {"type": "score_model", "name": "Example score model grader", "model": "scorer", "range": [0, 1],
             "input": [{"role": "user", "content": [{"type": "input_text", "text":
                        "Score how close the reference answer is to the model answer on a 0-1 scale. "
                        "Reference answer: {{item.reference_answer}}\n\nModel answer: {{sample.output_text}}"}]}]}
    label = {"name": "First label grader", "type": "label_model", "model": "labeler",
             "input": [{"type": "message", "role": "system", "content": {"type": "input_text", "text":
                        "Classify the sentiment of the following statement as one of positive, neutral, or negative"}},
                       {"type": "message", "role": "user", "content": {"type": "input_text",
                                                                       "text": "Statement: {{item.response}}"}}],
             "passing_labels": ["positive"], "labels": ["positive", "neutral", "negative"]}
    with grading_store(judge_store):
        assert grade(score, "fuzzy wuzzy", {"reference_answer": "fuzzy wuzzy was a bear"}) == 0.8
        out = run_grader(label, "x", {"response": "I hate Mondays"})
    assert out["reward"] == 0.0 and out["sub_rewards"] == {"label": "negative"}


def test_the_same_file_is_an_eval_grader_and_a_grpo_signal(tmp_path, sqlite_store):
    from posttrain.evals.runner import run_suite
    from posttrain.evals.suite import Case, GraderSpec, Suite
    from posttrain.train.rewards import build_mix

    path = tmp_path / "grader.json"
    path.write_text(json.dumps({**STRING_CHECK, "operation": "ilike", "reference": "{{item.answer}}"}))
    suite = Suite(name="oa-test", version="1", description="", graders=[GraderSpec("openai_grader", {"path": str(path)})],
                  load=lambda d, s: [Case("c1", [{"role": "user", "content": "capital of France?"}], {"answer": "paris"}),
                                     Case("c2", [{"role": "user", "content": "2+2?"}], {"answer": "4"})],
                  metrics=lambda rs: {"score": sum(r.grades["openai_grader"].score for r in rs) / len(rs)})

    class Fixed(_Judge):
        def generate(self, conversations, params):
            from posttrain.models.base import Generation

            return [Generation("It is Paris.", 1, 1, 0.0) for _ in conversations]

    summary = run_suite(sqlite_store, suite, "fixed", backend=Fixed("x", "fixed"), progress=False)
    assert summary.metrics == {"score": 0.5}

    mix = build_mix([{"signal": f"openai:{path}", "weight": 2.0}])
    prompts = [[{"role": "user", "content": "capital of France?"}]] * 2
    assert mix.contributions(prompts, ["Paris!", "Lyon"], [{"answer": "paris"}, {"answer": "paris"}]) == [[2.0, 0.0]]
