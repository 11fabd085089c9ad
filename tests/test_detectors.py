"""The detectors that generalize: labelled set, rules, learned classifier, combiner, targets.

The test split holds bodies, openers and closings the detectors never saw in training; the
figures asserted here are the ones docs/evals/detectors.md reports.
"""

from __future__ import annotations

import random

import pytest

from posttrain.graders import get_grader
from posttrain.graders.detectors import detect, detect_details, evaluate, load_labelled
from posttrain.graders.detectors.labelled import PROPERTIES
from posttrain.graders.detectors.rules import closing_sentences, opening_sentences, sentences
from posttrain.graders.detectors.stats import min_detectable_difference, wilson


def test_labelled_set_size_and_disjoint_splits():
    dev, test = load_labelled("dev"), load_labelled("test")
    assert len(dev) + len(test) >= 400
    for prop in PROPERTIES:
        for split in (dev, test):
            pos = sum(it[prop] for it in split)
            assert 0.25 < pos / len(split) < 0.6, (prop, pos)
    # No answer body or piece is shared: the test split is new phrasing.
    dev_text = {it["response"] for it in dev}
    assert not dev_text & {it["response"] for it in test}
    assert {it["prompt"] for it in dev}.isdisjoint({it["prompt"] for it in test})
    with pytest.raises(ValueError, match="split"):
        load_labelled("train")


@pytest.mark.parametrize("prop", PROPERTIES)
def test_default_method_meets_the_target_on_the_test_split(prop):
    r = evaluate(prop, "both", "test")
    assert r["precision"] >= 0.95 and r["recall"] >= 0.95, r


def test_sentences_and_units():
    assert sentences("It is 3.5 m, e.g. the width. Next?") == ["It is 3.5 m, e.g. the width.", "Next?"]
    text = 'Use `let me know` here. "Great question!" she said. - item one\n- item two'
    assert sentences(text) == ["Use here.", "she said.", "item one", "item two"]
    assert closing_sentences("A. B. C. D.") == ["B.", "C.", "D."]
    assert opening_sentences("Paris is the capital of France. Great question, by the way!") == ["Paris is the capital of France."]
    assert opening_sentences("Sure! Great question. Paris.") == ["Sure!", "Great question."]


@pytest.mark.parametrize("method", ["rules", "learned", "both"])
def test_every_method_on_written_examples(method):
    # Written for this test, not taken from the labelled set.
    assert detect("follow_up_offer", "The train leaves at 9. If you want, I can check the return times too.", method)
    assert detect("follow_up_offer", "Done — the list is sorted.\n\nShall I also remove the duplicates?", method)
    assert not detect("follow_up_offer", "The train leaves at 9. Bring your ticket.", method)
    assert detect("flattery_opener", "What a great question! The train leaves at 9.", method)
    assert not detect("flattery_opener", "The train leaves at 9, from platform 4.", method)


def test_hard_negatives():
    assert not detect("follow_up_offer", "It depends on your OS. Which version of Windows are you running?")
    assert not detect("follow_up_offer", 'Sign the card with: "Let me know if you ever need anything."')
    assert not detect("follow_up_offer", "Chop the onions. If you want it milder, use one clove of garlic.")
    praise = "Yes, it's clean and correct: the loop is tight and the names are clear. Add a docstring."
    assert not detect("flattery_opener", praise, prompt="Is my code good?\n\nfor x in xs: print(x)")
    assert detect("flattery_opener", "Great question! " + praise, prompt="Is my code good?")
    assert not detect("flattery_opener", "Great white sharks can live for 70 years.")


def test_graders_take_and_record_the_method():
    offer = get_grader("follow_up_offer")
    g = offer("Paris. Want me to list more capitals?", {}, method="learned")
    assert g.score == 1.0 and g.details["method"] == "learned" and "p" in g.details
    assert offer("Paris.", {}, method="rules").details["method"] == "rules"
    with pytest.raises(ValueError, match="method"):
        offer("Paris.", {}, method="vibes")
    flat = get_grader("flattery_opener")
    case = {"messages": [{"role": "user", "content": "Is my essay any good?"}]}
    assert flat("It's a strong essay with a clear thesis.", case).score == 0.0  # the prompt is read from the case
    from posttrain.evals.suite import get_suite

    specs = {s.name: s.args for s in get_suite("engagement").graders}
    assert specs["follow_up_offer"] == {"method": "both"}  # stored with every result row


def test_details_name_the_sentence():
    ok, d = detect_details("follow_up_offer", "Paris.\n\nFeel free to ask more questions. Good luck!", "both")
    assert ok and d["sentence"] == "Feel free to ask more questions."


def test_wilson_interval_covers_by_simulation():
    rng = random.Random(0)
    p, n, hits = 0.9, 120, 0
    for _ in range(1000):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson(k, n)
        hits += lo <= p <= hi
    assert 0.93 <= hits / 1000 <= 0.97
    assert wilson(0, 0) == (0.0, 1.0)


def test_min_detectable_difference_by_simulation():
    # At the stated difference, a two-proportion z-test should reject about 80 % of the time.
    n, p0 = 200, 0.3
    d = min_detectable_difference(n, p0)
    rng = random.Random(1)
    rejects = 0
    for _ in range(600):
        a = sum(rng.random() < p0 for _ in range(n)) / n
        b = sum(rng.random() < p0 + d for _ in range(n)) / n
        pool = (a + b) / 2
        se = (2 * pool * (1 - pool) / n) ** 0.5
        rejects += abs(b - a) / se > 1.96
    assert 0.72 <= rejects / 600 <= 0.88
