"""Detector quality and speed, each method side by side with the rules (the phrase-list reference).

For follow-up offers and flattering openers (the labelled test split) and the are-you-sure
reading (the labelled second answers), every method runs over the same answers:
- precision and recall with Wilson 95 % intervals;
- speed in answers/s, cold (embedding cache cleared, encoder already loaded) and one by one as a
  grader sees answers, and batched (all sentences embedded in one call first, `detectors.warm`).
Ratios are against `rules`.

Run by hand:  .venv/bin/python benchmarks/bench_detectors.py [--json]
The load average is printed: on a shared machine every speed figure drops.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _speed(fn, items) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from posttrain.graders.detectors import detect, evaluate, load_labelled, warm
    from posttrain.graders.detectors import second
    from posttrain.graders.detectors.embed import clear_cache, embed

    embed(["load the encoder once"])
    items = load_labelled("test")
    rows = []
    for prop in ("follow_up_offer", "flattery_opener"):
        for method in ("rules", "learned", "both"):
            clear_cache()
            one = _speed(lambda it: detect(prop, it["response"], method, it["prompt"]), items)
            clear_cache()
            t0 = time.perf_counter()
            warm([it["response"] for it in items], [it["prompt"] for it in items])
            for it in items:
                detect(prop, it["response"], method, it["prompt"])
            batched = len(items) / (time.perf_counter() - t0)
            r = evaluate(prop, method, "test")
            rows.append({"detector": prop, "method": method, "n": r["n"], "precision": r["precision"],
                         "precision_ci": r["precision_ci"], "recall": r["recall"], "recall_ci": r["recall_ci"],
                         "answers_per_s": one, "answers_per_s_batched": batched})
    sec = second.load_second("test")
    for what in ("answer", "flip", "apology"):
        for method in ("rules", "learned", "both"):
            clear_cache()
            if what == "apology":
                speed = _speed(lambda it: second.apologizes(it["second"], method), sec)
            else:
                speed = _speed(lambda it: second.reads_correct(it["second"], it["case"], method), sec)
            r = second.evaluate(what, method, "test")
            rows.append({"detector": what, "method": method, "n": r["n"], "precision": r["precision"],
                         "precision_ci": r["precision_ci"], "recall": r["recall"], "recall_ci": r["recall_ci"],
                         "answers_per_s": speed, "answers_per_s_batched": None})
    ref = {(r["detector"]): r for r in rows if r["method"] == "rules"}
    for r in rows:
        r["speed_vs_rules"] = r["answers_per_s"] / ref[r["detector"]]["answers_per_s"]
    out = {"load_average": os.getloadavg(), "rows": rows}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"load average {out['load_average'][0]:.1f}")
    print(f"{'detector':<16} {'method':<8} {'n':>4} {'precision [95% CI]':>22} {'recall [95% CI]':>22} "
          f"{'ans/s':>9} {'batched':>9} {'vs rules':>9}")
    for r in rows:
        p = f"{r['precision']:.3f} [{r['precision_ci'][0]:.2f},{r['precision_ci'][1]:.2f}]"
        rc = f"{r['recall']:.3f} [{r['recall_ci'][0]:.2f},{r['recall_ci'][1]:.2f}]"
        b = f"{r['answers_per_s_batched']:.0f}" if r["answers_per_s_batched"] else "-"
        print(f"{r['detector']:<16} {r['method']:<8} {r['n']:>4} {p:>22} {rc:>22} {r['answers_per_s']:>9.0f} {b:>9} "
              f"{r['speed_vs_rules']:>8.3f}x")


if __name__ == "__main__":
    main()
