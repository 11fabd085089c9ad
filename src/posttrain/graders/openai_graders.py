"""OpenAI's grader JSON, run here: the same definitions work as GRPO reward signals and as eval
graders (`openai_grader`), so a team's reinforcement fine-tuning graders move over unchanged.

Types: `string_check` (eq, ne, like, ilike), `text_similarity` (fuzzy_match, bleu, gleu,
meteor, rouge_1..rouge_5, rouge_l, cosine), `score_model` and `label_model` (any registered
model: `model` is a posttrain registry name), `python` (the user's `grade(sample, item)` in a
subprocess with a timeout) and `multi` (`calculate_output` through a small arithmetic
evaluator, never `eval`). Strings are templated as OpenAI documents: `{{ item.field }}`,
`{{ sample.output_text }}`, `{{ sample.output_json.key }}`, nested paths with dots or [i].

`run_grader(spec, sample, item)` returns `{"reward", "sub_rewards", "metadata"}` like OpenAI's
run-grader endpoint; `grade(...)` just the reward. Text metrics live in `_openai_text.py`; the
python sandbox and the formula evaluator in `_openai_exec.py`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from posttrain.graders._openai_exec import run_python_batch, safe_formula
from posttrain.graders._registry import Grade, grader
from posttrain.graders._openai_text import METRICS, similarity

TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi")
_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w]*)((?:\.[\w]+|\[\d+\])*)\s*\}\}")
_STRING_OPS = ("eq", "ne", "like", "ilike")


def _need(spec: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in spec:
        raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(spec[key], kind):
        raise ValueError(f"{where}: field {key!r} has the wrong type ({type(spec[key]).__name__})")
    return spec[key]


def validate_grader(spec: Any, where: str = "grader") -> None:
    """Raise ValueError naming the first bad field (checked before any training or eval starts)."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: an OpenAI grader is a JSON object")
    kind = _need(spec, "type", str, where)
    if kind not in TYPES:
        raise ValueError(f"{where}: unknown type {kind!r}; one of {', '.join(TYPES)}")
    where = f"{where} ({spec.get('name') or kind})"
    if kind == "string_check":
        _need(spec, "input", str, where), _need(spec, "reference", str, where)
        if _need(spec, "operation", str, where) not in _STRING_OPS:
            raise ValueError(f"{where}: field 'operation' must be one of {', '.join(_STRING_OPS)}")
    elif kind == "text_similarity":
        _need(spec, "input", str, where), _need(spec, "reference", str, where)
        if _need(spec, "evaluation_metric", str, where) not in METRICS:
            raise ValueError(f"{where}: field 'evaluation_metric' must be one of {', '.join(METRICS)}")
    elif kind in ("score_model", "label_model"):
        _need(spec, "model", str, where)
        _need(spec, "input", list, where)
        if kind == "label_model":
            labels = _need(spec, "labels", list, where)
            if not set(_need(spec, "passing_labels", list, where)) <= set(labels):
                raise ValueError(f"{where}: field 'passing_labels' must be a subset of 'labels'")
    elif kind == "python":
        if "def grade" not in _need(spec, "source", str, where):
            raise ValueError(f"{where}: field 'source' must define grade(sample, item)")
    elif kind == "multi":
        subs = _need(spec, "graders", dict, where)
        for key, sub in subs.items():
            if not key.isidentifier():
                raise ValueError(f"{where}: grader key {key!r} must be a plain identifier to be used in calculate_output")
            validate_grader(sub, f"{where}.graders.{key}")
        safe_formula(_need(spec, "calculate_output", str, where), {k: 1.0 for k in subs})


def _lookup(ns: dict[str, Any], name: str, path: str) -> Any:
    if name not in ns:
        raise ValueError(f"template variable {{{{{name}{path}}}}}: the namespace must be 'item' or 'sample'")
    value: Any = ns[name]
    for part in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        key, index = part
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"template variable {{{{{name}{path}}}}} is not in the {name}") from None
    return value


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """Substitute `{{ namespace.path }}`; non-strings become JSON. ValueError for unknown ones."""
    ns = {"sample": sample, "item": item}

    def sub(m: re.Match[str]) -> str:
        v = _lookup(ns, m.group(1), m.group(2))
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

    return _VAR.sub(sub, template)


def _full_sample(sample: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(sample, str):
        sample = {"output_text": sample}
    sample = dict(sample)
    if "output_json" not in sample:
        try:
            sample["output_json"] = json.loads(sample.get("output_text", ""))
        except (json.JSONDecodeError, TypeError):
            sample["output_json"] = None
    return sample


def _messages(spec: dict[str, Any], sample: dict[str, Any], item: dict[str, Any]) -> list[dict[str, str]]:
    """OpenAI's input messages (content a string, a {type, text} part, or a list of parts)."""
    out = []
    for m in spec["input"]:
        content = m.get("content", "")
        parts = content if isinstance(content, list) else [content]
        text = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in parts)
        role = {"developer": "system"}.get(m.get("role", "user"), m.get("role", "user"))
        out.append({"role": role, "content": render(text, sample, item)})
    return out


def _ask(spec: dict[str, Any], msgs: list[dict[str, str]]) -> str:
    from posttrain.graders.judge import resolve_judge
    from posttrain.models.base import DecodingParams

    sp = spec.get("sampling_params") or {}
    params = DecodingParams(max_new_tokens=int(sp.get("max_completions_tokens") or sp.get("max_tokens") or 256),
                            temperature=float(sp.get("temperature", 0.0)), top_p=float(sp.get("top_p", 1.0)),
                            seed=sp.get("seed"))
    return resolve_judge(model=spec["model"]).generate([msgs], params)[0].text


def _json_result(text: str) -> Any:
    try:
        data = json.loads(text.strip().strip("`").removeprefix("json").strip())
        return data.get("result") if isinstance(data, dict) else data
    except (json.JSONDecodeError, AttributeError):
        return None


def _score_model(spec: dict[str, Any], sample: dict[str, Any], item: dict[str, Any]) -> float:
    lo, hi = (spec.get("range") or [0.0, 1.0])[:2]
    text = _ask(spec, _messages(spec, sample, item))
    value = _json_result(text)
    if not isinstance(value, (int, float)):
        nums = re.findall(r"-?\d+(?:\.\d+)?", text)
        if not nums:
            raise ValueError(f"score_model {spec.get('name')!r}: the model gave no score ({text[:80]!r})")
        value = float(nums[-1])
    return max(float(lo), min(float(hi), float(value)))


def _label_model(spec: dict[str, Any], sample: dict[str, Any], item: dict[str, Any]) -> tuple[float, str | None]:
    text = _ask(spec, _messages(spec, sample, item))
    value = _json_result(text)
    label = value if value in spec["labels"] else None
    if label is None:  # the first label named in the answer (longest first: "negative" before "neg")
        low = text.lower()
        hits = [(low.find(lab.lower()), -len(lab), lab) for lab in spec["labels"] if lab.lower() in low]
        label = min(hits)[2] if hits else None
    return float(label in spec["passing_labels"]), label


def run_grader_batch(spec: dict[str, Any], samples: list[dict[str, Any] | str], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """run_grader over many samples (python graders run all of them in one subprocess)."""
    validate_grader(spec)
    full = [_full_sample(s) for s in samples]
    kind = spec["type"]
    if kind == "python":
        rewards = run_python_batch(spec["source"], full, items, timeout=float(spec.get("timeout", 30)))
        return [_result(spec, r, {}) for r in rewards]
    if kind == "multi":
        subs = {k: run_grader_batch(sub, full, items) for k, sub in spec["graders"].items()}
        out = []
        for i in range(len(full)):
            values = {k: subs[k][i]["reward"] for k in subs}
            out.append(_result(spec, safe_formula(spec["calculate_output"], values), values))
        return out
    return [_result(spec, *_one(spec, s, it)) for s, it in zip(full, items)]


def _one(spec: dict[str, Any], sample: dict[str, Any], item: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    kind = spec["type"]
    if kind == "string_check":
        a, b = render(spec["input"], sample, item), render(spec["reference"], sample, item)
        op = spec["operation"]
        ok = {"eq": a == b, "ne": a != b, "like": b in a, "ilike": b.lower() in a.lower()}[op]
        return float(ok), {}
    if kind == "text_similarity":
        a, b = render(spec["input"], sample, item), render(spec["reference"], sample, item)
        return similarity(spec["evaluation_metric"], a, b), {}
    if kind == "score_model":
        return _score_model(spec, sample, item), {}
    score, label = _label_model(spec, sample, item)
    return score, {"label": label}


def _result(spec: dict[str, Any], reward: float, sub: dict[str, Any]) -> dict[str, Any]:
    return {"reward": float(reward), "sub_rewards": sub,
            "metadata": {"name": spec.get("name"), "type": spec["type"]}}


def run_grader(spec: dict[str, Any], sample: dict[str, Any] | str, item: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"reward", "sub_rewards", "metadata"}` for one sample (a dict with output_text, or the text)."""
    return run_grader_batch(spec, [sample], [item or {}])[0]


def grade(spec: dict[str, Any], sample: dict[str, Any] | str, item: dict[str, Any] | None = None) -> float:
    """The reward OpenAI's grader would give this sample."""
    return run_grader(spec, sample, item)["reward"]


def passed(spec: dict[str, Any], reward: float) -> bool | None:
    """Pass/fail where the grader defines it (pass_threshold, a check, passing labels)."""
    if "pass_threshold" in spec:
        return reward >= float(spec["pass_threshold"])
    if spec["type"] in ("string_check", "label_model"):
        return reward >= 1.0
    return None


def load_spec(grader: dict[str, Any] | None = None, path: str | None = None) -> dict[str, Any]:
    """The grader object, given inline or as a JSON file."""
    if (grader is None) == (path is None):
        raise ValueError("openai_grader needs exactly one of `grader` (the JSON object) or `path` (a JSON file)")
    if path is not None:
        from posttrain.train.rewards import load_openai_grader_file

        return load_openai_grader_file(path)
    return grader  # type: ignore[return-value]


@grader("openai_grader")
def openai_grader(response: str, case: dict[str, Any], grader: dict[str, Any] | None = None,
                  path: str | None = None) -> Grade:
    """Grade with an OpenAI grader: `item` is the case (its data, `messages`, `responses`),
    `sample.output_text` the response; score = the reward."""
    spec = load_spec(grader, path)
    result = run_grader(spec, {"output_text": response}, case)
    return Grade(result["reward"], passed(spec, result["reward"]),
                 {"grader": spec.get("name"), "type": spec["type"], "sub_rewards": result["sub_rewards"]})
