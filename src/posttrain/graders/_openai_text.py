"""Text similarity metrics of OpenAI's `text_similarity` grader, each in [0, 1].

Tokens are lowercased runs of letters and digits. References for the formulas:
- fuzzy_match: difflib's ratio (2*matches / total length) of the lowercased, whitespace-collapsed
  texts. OpenAI uses rapidfuzz's WRatio, which is not installed here: scores differ a little on
  reordered or partial matches; exact and near-exact matches agree.
- bleu: sentence BLEU-4 (Papineni et al. 2002), uniform weights, brevity penalty, add-one
  smoothing of the 2-4-gram precisions (Lin & Och 2004) so a short answer is not scored 0.
- gleu: Google-BLEU (Wu et al. 2016): min(precision, recall) over all 1-4-grams.
- meteor: METEOR with exact unigram matches (Banerjee & Lavie 2005; alpha 0.9, beta 3, gamma 0.5
  as in nltk); no stemming or WordNet synonyms.
- rouge_n: ROUGE-N F1 over n-grams; rouge_l: ROUGE-L F1 over the longest common subsequence.
- cosine: cosine similarity of the packaged MiniLM sentence embeddings (all-MiniLM-L6-v2).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from difflib import SequenceMatcher

METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "cosine", "rouge_1", "rouge_2", "rouge_3", "rouge_4",
           "rouge_5", "rouge_l")


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def fuzzy_match(a: str, b: str) -> float:
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    return SequenceMatcher(None, norm(a), norm(b)).ratio()


def bleu(hyp: str, ref: str, max_n: int = 4) -> float:
    h, r = tokens(hyp), tokens(ref)
    if not h or not r:
        return float(h == r)
    logs = 0.0
    for n in range(1, max_n + 1):
        hn, rn = _ngrams(h, n), _ngrams(r, n)
        match, total = sum((hn & rn).values()), max(sum(hn.values()), 0)
        if n > 1:  # add-one smoothing
            match, total = match + 1, total + 1
        if match == 0 or total == 0:
            return 0.0
        logs += math.log(match / total) / max_n
    bp = 1.0 if len(h) > len(r) else math.exp(1 - len(r) / len(h))
    return bp * math.exp(logs)


def gleu(hyp: str, ref: str, max_n: int = 4) -> float:
    h, r = tokens(hyp), tokens(ref)
    hn, rn = Counter(), Counter()
    for n in range(1, max_n + 1):
        hn += _ngrams(h, n)
        rn += _ngrams(r, n)
    match = sum((hn & rn).values())
    th, tr = sum(hn.values()), sum(rn.values())
    if th == 0 or tr == 0:
        return float(th == tr)
    return min(match / th, match / tr)


def meteor(hyp: str, ref: str, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5) -> float:
    h, r = tokens(hyp), tokens(ref)
    if not h or not r:
        return float(h == r)
    used = [False] * len(r)
    align = []  # (hyp index, ref index), greedy left-to-right exact matches
    for i, t in enumerate(h):
        for j, u in enumerate(r):
            if not used[j] and t == u:
                used[j] = True
                align.append((i, j))
                break
    m = len(align)
    if m == 0:
        return 0.0
    p, rec = m / len(h), m / len(r)
    fmean = p * rec / (alpha * p + (1 - alpha) * rec)
    chunks = 1 + sum(1 for (a, b), (c, d) in zip(align, align[1:]) if not (c == a + 1 and d == b + 1))
    return fmean * (1 - gamma * (chunks / m) ** beta)


def rouge_n(hyp: str, ref: str, n: int) -> float:
    hn, rn = _ngrams(tokens(hyp), n), _ngrams(tokens(ref), n)
    match, th, tr = sum((hn & rn).values()), sum(hn.values()), sum(rn.values())
    if th == 0 or tr == 0 or match == 0:
        return 0.0
    p, r = match / th, match / tr
    return 2 * p * r / (p + r)


def rouge_l(hyp: str, ref: str) -> float:
    h, r = tokens(hyp), tokens(ref)
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for t in h:
        cur = [0]
        for j, u in enumerate(r):
            cur.append(prev[j] + 1 if t == u else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def cosine(a: str, b: str) -> float:
    from posttrain.graders.detectors.embed import embed

    va, vb = embed([a, b])
    return max(0.0, min(1.0, float((va * vb).sum())))


def similarity(metric: str, hyp: str, ref: str) -> float:
    """The `evaluation_metric` score of `hyp` against `ref`."""
    if metric.startswith("rouge_") and metric != "rouge_l":
        return rouge_n(hyp, ref, int(metric[-1]))
    fn = {"fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu, "meteor": meteor, "rouge_l": rouge_l,
          "cosine": cosine}.get(metric)
    if fn is None:
        raise ValueError(f"unknown evaluation_metric {metric!r}; one of {', '.join(METRICS)}")
    return fn(hyp, ref)
