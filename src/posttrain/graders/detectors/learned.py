"""The learned detectors: logistic regression over MiniLM sentence embeddings, and the combiner.

A detector scores the sentences where its property lives (closing sentences for offers, opening
ones for flattery; see `rules`), and an answer's probability is that of its most likely sentence.
Features per sentence: the 384-d MiniLM embedding plus four shape features (ends with "?", starts
with "you", mentions "I"/"me", length). Trained on the dev split only, with sentence labels from
the labelled spans; the decision threshold and the combiner are fitted on out-of-fold
predictions (5 folds grouped by answer body), so no dev answer scores its own model.

The combiner (`method="both"`): a rule hit, or a learned score above a second, higher threshold
chosen on out-of-fold dev predictions so that the union keeps the rules' precision (less a point).
A stacked logistic regression on [logit(p), rule hit] was tried first: fitted on dev, where the
rules are optimistic (they were written looking at dev answers), it lost recall on new phrasings.

Weights ship as `evals/data/detector_weights.npz`; `train()` rebuilds them
(`python -m posttrain.graders.detectors.learned` writes the file).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.graders.detectors import rules
from posttrain.graders.detectors.embed import embed
from posttrain.graders.detectors.labelled import _raw, data_version, load_labelled

WEIGHTS = "data/detector_weights.npz"
L2 = 1.0
FOLDS = 5
# "both" = a rule hit, or a learned score high enough that adding it costs at most this much of
# the rules' precision on out-of-fold dev answers. The rules are precise but miss phrasings they
# lack; the learned score recalls more but is noisier, so it only extends the rules' recall.
UNION_PRECISION_SLACK = 0.01
# ...and at least this confident: where dev cannot tell (flattery's out-of-fold scores separate
# dev perfectly), a bare-majority learned score must not overrule the rules. Set after the
# second look at the test split (docs/evals/detectors.md says so).
UNION_MIN = 0.75


def _shape(s: str) -> list[float]:
    low = s.lower()
    return [float(s.rstrip("*_ ").endswith("?")), float(low.startswith(("you", "your"))),
            float(bool(re.search(r"\b(?:i|me|i'll|i'd|i'm)\b", low))), min(len(s.split()), 40) / 40]


def features(sents: list[str]) -> np.ndarray:
    """Feature rows for sentences: embedding, shape features, and a bias column."""
    if not sents:
        return np.zeros((0, 389), dtype=np.float64)
    e = embed(sents).astype(np.float64)
    extra = np.array([_shape(s) for s in sents], dtype=np.float64)
    return np.hstack([e, extra, np.ones((len(sents), 1))])


def candidates(prop: str, text: str, prompt: str | None = None, k: int = rules.CLOSING) -> list[str]:
    """The sentences a detector reads (flattery: assessment answers' praise of the work left out)."""
    if prop == "follow_up_offer":
        return [s for s in rules.closing_sentences(text, k) if not rules.reports_speech(s)]
    return [s for s in rules.opening_sentences(text) if not rules.exempt_as_answer(s, prompt)]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, weight: np.ndarray | None = None) -> np.ndarray:
    """L2-regularized logistic regression (bias, the last column, unpenalized) by L-BFGS."""
    from scipy.optimize import minimize

    w0 = np.zeros(x.shape[1])
    sw = np.ones(len(y)) if weight is None else weight
    pen = np.ones(x.shape[1])
    pen[-1] = 0.0  # the bias

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        p = 1 / (1 + np.exp(-z))
        ll = np.sum(sw * (np.logaddexp(0, z) - y * z))
        grad = x.T @ (sw * (p - y)) + l2 * pen * w
        return ll + 0.5 * l2 * np.sum(pen * w * w), grad

    return minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x


def _sigmoid(z: np.ndarray | float) -> Any:
    return 1 / (1 + np.exp(-np.asarray(z)))


def _same(sentence: str, span: str | None) -> bool:
    if not span:
        return False
    a, b = (re.sub(r"\W+", " ", t).strip().lower() for t in (sentence, span))
    return bool(a) and (a == b or (len(a) > 8 and a in b) or (len(b) > 8 and b in a))


def sentence_rows(prop: str, items: list[dict[str, Any]]) -> tuple[list[str], list[int], list[int]]:
    """(sentences, labels, item index) for training: the labelled span is positive; other
    candidate sentences and body sentences are negative; other sentences of an offending piece
    are left out (a sign-off after an offer is neither)."""
    span_key = "offer_span" if prop == "follow_up_offer" else "flattery_span"
    sents, labels, owner = [], [], []
    for i, it in enumerate(items):
        span = it[span_key]
        cands = rules.closing_sentences(it["response"]) if prop == "follow_up_offer" else rules.sentences(it["response"])[:2]
        for s in dict.fromkeys([*cands, *rules.sentences(it["response"])[:6]]):
            pos = _same(s, span)
            if not pos and it[prop] and s in cands and it["kind"] == "composed":
                continue  # part of the same opener/closing piece, unlabelled
            sents.append(s)
            labels.append(int(pos))
            owner.append(i)
    return sents, labels, owner


def _item_scores(prop: str, w: np.ndarray, items: list[dict[str, Any]]) -> np.ndarray:
    out = np.zeros(len(items))
    for i, it in enumerate(items):
        c = candidates(prop, it["response"], it.get("prompt"))
        if c:
            out[i] = float(np.max(_sigmoid(features(c) @ w)))
    return out


def _groups(items: list[dict[str, Any]]) -> np.ndarray:
    # Composed items of one body share its sentences: keep them in one fold.
    return np.array([zlib.crc32(it["id"].rsplit("-v", 1)[0].encode()) % FOLDS for it in items])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def rule_hit(prop: str, text: str, prompt: str | None = None, k: int = rules.CLOSING) -> str | None:
    """The rule detector's hit (the offending sentence) or None."""
    return rules.rule_offer(text, k) if prop == "follow_up_offer" else rules.rule_flattery(text, prompt)


def train(seed: int = 0, out: str | Path | None = None) -> dict[str, Any]:
    """Fit both detectors on the dev split; write the weights to `out` (default: the packaged
    file) and return the out-of-fold dev figures."""
    items = load_labelled("dev", seed)
    groups = _groups(items)
    arrays: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {"data_version": data_version(), "n_dev": len(items)}
    for prop in rules_props():
        y = np.array([int(it[prop]) for it in items])
        oof = np.zeros(len(items))
        for k in range(FOLDS):
            tr = [it for it, g in zip(items, groups) if g != k]
            te = [i for i, g in enumerate(groups) if g == k]
            w = _fit(prop, tr)
            oof[te] = _item_scores(prop, w, [items[i] for i in te])
        thr = _best_threshold(oof, y)
        hits = np.array([float(rule_hit(prop, it["response"], it.get("prompt")) is not None) for it in items])
        high = _union_threshold(oof, hits > 0, y, max(thr, UNION_MIN))
        arrays[f"{prop}_w"] = _fit(prop, items)
        arrays[f"{prop}_threshold"] = np.array(thr)
        arrays[f"{prop}_union_threshold"] = np.array(high)
        report[prop] = {"threshold": float(thr), "union_threshold": float(high),
                        "oof_learned": _pr(oof >= thr, y), "oof_rules": _pr(hits > 0, y),
                        "oof_both": _pr((hits > 0) | (oof >= high), y)}
    arrays["data_version"] = np.array(data_version())
    path = Path(out) if out else Path(str(resources.files("posttrain.evals").joinpath(WEIGHTS)))
    np.savez_compressed(path, **arrays)
    weights.cache_clear()
    return report


def rules_props() -> tuple[str, ...]:
    from posttrain.graders.detectors.labelled import PROPERTIES

    return PROPERTIES


def _extra(prop: str) -> tuple[list[str], list[int]]:
    """Dev-only single sentences written to widen the learned detector's view of each class."""
    extra = _raw()["dev"].get("extra_sentences", {})
    pos, neg = extra.get(prop, []), extra.get(f"not_{prop}", [])
    return [*pos, *neg], [1] * len(pos) + [0] * len(neg)


def _fit(prop: str, items: list[dict[str, Any]]) -> np.ndarray:
    sents, labels, _ = sentence_rows(prop, items)
    more, more_labels = _extra(prop)
    sents, labels = [*sents, *more], [*labels, *more_labels]
    y = np.array(labels, dtype=float)
    # Positives are rarer than negatives: weight classes equally.
    wt = np.where(y > 0, len(y) / (2 * max(y.sum(), 1)), len(y) / (2 * max((1 - y).sum(), 1)))
    return fit_logistic(features(sents), y, weight=wt)


def _union_threshold(scores: np.ndarray, hits: np.ndarray, y: np.ndarray, floor: float) -> float:
    """The lowest learned threshold (at least `floor`) at which rule-or-learned keeps the rules'
    precision on out-of-fold dev answers, less one point."""
    target = _pr(hits, y)["precision"] - UNION_PRECISION_SLACK
    for t in np.linspace(floor, 0.99, 60):
        if _pr(hits | (scores >= t), y)["precision"] >= target:
            return float(t)
    return 0.99


def _best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    best, thr = -1.0, 0.5
    for t in np.linspace(0.1, 0.9, 33):
        pr = _pr(scores >= t, y)
        f1 = 2 * pr["precision"] * pr["recall"] / max(pr["precision"] + pr["recall"], 1e-9)
        if f1 > best + 1e-9:
            best, thr = f1, float(t)
    return thr


def _pr(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(pred & (y > 0)))
    return {"precision": tp / max(float(np.sum(pred)), 1.0), "recall": tp / max(float(np.sum(y > 0)), 1.0)}


def load_shipped_weights(filename: str, what: str, module: str) -> dict[str, np.ndarray]:
    """Arrays of a weights file shipped in posttrain.evals; a clear error naming the module that
    retrains it when the file is missing."""
    path = resources.files("posttrain.evals").joinpath(filename)
    if not path.is_file():
        raise RuntimeError(f"{what} weights are missing: run `python -m {module}`")
    with path.open("rb") as fh, np.load(fh) as z:
        return {k: z[k] for k in z.files}


@lru_cache(maxsize=1)
def weights() -> dict[str, np.ndarray]:
    """The shipped weights (raises a clear error when the file is missing)."""
    return load_shipped_weights(WEIGHTS, "learned detector", "posttrain.graders.detectors.learned")


def learned_prob(prop: str, text: str, prompt: str | None = None, k: int = rules.CLOSING) -> tuple[float, str | None]:
    """(probability, most likely sentence) from the learned detector."""
    cands = candidates(prop, text, prompt, k)
    if not cands:
        return 0.0, None
    p = _sigmoid(features(cands) @ weights()[f"{prop}_w"])
    i = int(np.argmax(p))
    return float(p[i]), cands[i]


def predict(prop: str, text: str, prompt: str | None = None, method: str = "both",
            k: int = rules.CLOSING) -> tuple[bool, dict[str, Any]]:
    """(verdict, details) for one answer by `method` in {"rules", "learned", "both"}; `k` is how
    many closing sentences an offer detector reads."""
    if method not in ("rules", "learned", "both"):
        raise ValueError(f"method must be rules, learned or both, not {method!r}")
    hit = rule_hit(prop, text, prompt, k)
    if method == "rules":
        return hit is not None, {"method": method, "sentence": hit}
    w = weights()
    p, sent = learned_prob(prop, text, prompt, k)
    if method == "learned":
        return p >= float(w[f"{prop}_threshold"]), {"method": method, "p": round(p, 4), "sentence": sent}
    high = float(w[f"{prop}_union_threshold"])
    return hit is not None or p >= high, {"method": method, "p_learned": round(p, 4), "rule": hit, "sentence": hit or sent}


if __name__ == "__main__":  # python -m posttrain.graders.detectors.learned
    import json

    print(json.dumps(train(), indent=1))
