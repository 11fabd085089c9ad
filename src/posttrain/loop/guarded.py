"""The guarded recipe's data: the users' own preference pairs, judged again by the reward mix.

The naive candidate learns the pick each user made. The guarded one is trained on the same
prompts and the same two answers, but the pair's winner is the answer the reward mix scores
higher (correctness and instruction following up, flattery and bait down, the flagged reward
model capped and down-weighted). Pairs the mix cannot separate are dropped: no signal says which
answer is better, and keeping the user's pick there would bring back the bias the mix is meant
to hold off. Same data, same trainer, same settings; only the judge differs.

Every signal is attributed the way GRPO's are (`posttrain.train.attribution`): within each pair,
its share of the variance of the total score, per chunk of pairs (a "step"), with the same
dominance alarm, so the gate reads the same lineage either way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["judge_pairs"]


def _text(answer: Any) -> str:
    """An answer in the TRL layouts: a string or a list of assistant messages."""
    if isinstance(answer, str):
        return answer
    return "".join(m.get("content") or "" for m in answer if m.get("role") == "assistant")


def judge_pairs(rows: list[dict[str, Any]], mix: Any, cases: list[dict[str, Any]], *, chunk: int = 4,
                threshold: float = 0.6, steps: int = 3, eps: float = 1e-6) -> dict[str, Any]:
    """Judge each pair {"prompt", "chosen", "rejected"} with `mix` (a posttrain.train RewardMix);
    `cases[i]` holds row i's reference columns (answer keys, IFEval instructions).

    Returns {"rows": the re-judged pairs (winner as chosen), "kept", "flipped", "agreed",
    "dropped", "attribution": {"signals", "steps"}, "alarms"}."""
    from posttrain.train.attribution import Attribution

    if len(cases) != len(rows):
        raise ValueError(f"cases: {len(cases)} for {len(rows)} rows")
    attribution = Attribution(mix, threshold, steps, warn=False)
    out: list[dict[str, Any]] = []
    flipped = agreed = dropped = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        prompts = [r["prompt"] for r in part for _ in (0, 1)]
        texts = [_text(r[side]) for r in part for side in ("chosen", "rejected")]
        refs = [cases[start + k] for k, _ in enumerate(part) for _ in (0, 1)]
        contribs = []
        for signal in mix.signals:
            values = signal.values(prompts, texts, refs)  # capped, as GRPO's reward functions see them
            attribution.add(signal.name, prompts, values)
            contribs.append([signal.weight * v for v in values])
        attribution.close_step(start // chunk + 1)
        for k, row in enumerate(part):
            score_chosen = sum(c[2 * k] for c in contribs)
            score_rejected = sum(c[2 * k + 1] for c in contribs)
            if abs(score_chosen - score_rejected) <= eps:
                dropped += 1
                continue
            if score_chosen > score_rejected:
                agreed += 1
                out.append({**row, "judged_by": "reward mix"})
            else:
                flipped += 1
                out.append({**row, "chosen": row["rejected"], "rejected": row["chosen"], "judged_by": "reward mix"})
    summary = attribution.summary()
    return {"rows": out, "kept": len(out), "agreed": agreed, "flipped": flipped, "dropped": dropped,
            "attribution": summary, "alarms": attribution.alarms}

