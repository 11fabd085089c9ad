"""The leaderboard against references: a per-battle scipy fit on real human votes, the same
bootstrap refitted with scipy, and simulations with known answers."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from posttrain.arena import QualityRules, fit, from_records, read_votes
from posttrain.arena._bt import rank_from_intervals
from posttrain.arena._fit import _canonical, unique_outcomes, unordered_outcomes

WINNER = {1: "model_a", 2: "model_b", 3: "tie"}


def vicuna_votes(shared: Path) -> list[dict]:
    """PRD's Vicuna80 human ratings; A was displayed first (left)."""
    votes = []
    for f in sorted((shared / "prd-vicuna80-human-pairwise" / "ratings-human").glob("*.jsonl")):
        a, b = f.name.removesuffix("-human-reviewer_threeclass.jsonl").split("-vs-")
        a, b = a.removeprefix("answer_"), b.removeprefix("answer_")
        for line in f.read_text().splitlines():
            r = json.loads(line)
            votes.append({"model_a": a, "model_b": b, "winner": WINNER[r["score"]],
                          "positions": {"left": "model_a", "right": "model_b"}})
    return votes


def reference_fit(a, b, y, w, m):
    """Per-battle BT likelihood (ties as y = 1/2, FastChat's ratings in log10 units), scipy L-BFGS-B
    run far tighter than FastChat's gtol 1e-6."""
    from scipy.optimize import minimize
    from scipy.special import expit

    alpha = math.log(10.0)

    def loss(r):
        p = expit(alpha * (r[a] - r[b]))
        ll = (w * (y * np.log(p) + (1 - y) * np.log1p(-p))).sum()
        g = np.zeros(m)
        s = alpha * w * (y - p)
        np.add.at(g, a, s)
        np.add.at(g, b, -s)
        return -ll / w.sum(), -g / w.sum()

    res = minimize(loss, np.zeros(m), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    r = res.x - res.x.mean()
    return 400 * r + 1000


@pytest.fixture(scope="module")
def vicuna(request):
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.exists():
        pytest.skip("shared data not found")
    return vicuna_votes(SHARED_DATA)


def test_ratings_match_a_tight_scipy_fit_on_the_per_battle_likelihood(vicuna):
    res = fit(vicuna, rounds=10)
    v = from_records(vicuna)
    y = v.outcome
    ref = reference_fit(v.a, v.b, y, np.ones(len(v)), len(v.models))
    ours = {m["model"]: m["rating"] for m in res["models"]}
    diff = max(abs(ours[name] - ref[i]) for i, name in enumerate(v.models))
    assert diff < 0.1, diff
    assert res["converged"] and abs(np.mean(list(ours.values())) - 1000) < 0.05
    assert len(res["models"]) == 9 and res["votes"] == 7040


def test_bootstrap_intervals_match_the_same_resamples_fitted_by_scipy(vicuna):
    rounds = 20
    res = fit(vicuna, rounds=rounds, seed=3)
    v = _canonical(from_records(vicuna))
    # FastChat's scheme, a multinomial over the outcomes (with a/b orientation merged: the
    # likelihood does not see it, and merged multinomial categories stay multinomial).
    a, b, y, cnt = unordered_outcomes(*unique_outcomes(v, np.ones(len(v))))
    rng = np.random.default_rng(3)
    draws = rng.multinomial(int(cnt.sum()), cnt / cnt.sum(), size=rounds).astype(float)
    boot = np.array([reference_fit(a, b, y, d, len(v.models)) for d in draws])
    lo, hi = np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)
    for row in res["models"]:
        i = v.models.index(row["model"])
        assert abs(row["ci_low"] - lo[i]) < 0.1 and abs(row["ci_high"] - hi[i]) < 0.1, (row, lo[i], hi[i])


def test_sandwich_intervals_are_close_to_the_bootstrap(vicuna):
    boot = {m["model"]: m for m in fit(vicuna, rounds=200)["models"]}
    sand = {m["model"]: m for m in fit(vicuna, ci="sandwich")["models"]}
    for name, s in sand.items():
        wb, ws = boot[name]["ci_high"] - boot[name]["ci_low"], s["ci_high"] - s["ci_low"]
        assert 0.7 < ws / wb < 1.4, (name, wb, ws)
        assert s["rating"] == boot[name]["rating"]


def test_ratings_do_not_depend_on_the_order_of_the_votes(vicuna):
    shuffled = list(vicuna)
    random.Random(7).shuffle(shuffled)
    r1, r2 = fit(vicuna, rounds=30), fit(shuffled, rounds=30)
    assert r1["models"] == r2["models"]
    assert r1["fragility"] == r2["fragility"] and r1["position"] == r2["position"]


def test_rank_counts_models_whose_lower_bound_is_above_this_upper_bound():
    low = np.array([10.0, 8.0, 1.0, 0.0])
    high = np.array([12.0, 11.0, 9.0, 2.0])
    assert rank_from_intervals(low, high).tolist() == [1, 1, 2, 3]  # 1.0 is not above 2.0


def test_anchor_pins_a_model_and_keeps_differences(vicuna):
    plain = {m["model"]: m["rating"] for m in fit(vicuna, rounds=5)["models"]}
    pinned = fit(vicuna, rounds=5, anchor="gpt4=1200")
    got = {m["model"]: m["rating"] for m in pinned["models"]}
    assert got["gpt4"] == 1200.0
    assert abs((got["bard"] - got["gpt4"]) - (plain["bard"] - plain["gpt4"])) < 0.02
    with pytest.raises(ValueError, match="anchor"):
        fit(vicuna, anchor="nobody=1000")


def simulate(strengths: dict[str, float], n: int, seed: int, left_bonus: float = 0.0, tie: float = 0.1) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(strengths)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        a_left = rng.random() < 0.5
        d = strengths[a] - strengths[b] + (left_bonus if a_left else -left_bonus)
        u = rng.random()
        winner = "tie" if u < tie else ("model_a" if rng.random() < 1 / (1 + math.exp(-d)) else "model_b")
        out.append({"model_a": a, "model_b": b, "winner": winner,
                    "positions": {"left": "model_a" if a_left else "model_b", "right": "model_b" if a_left else "model_a"}})
    return out


def test_position_bias_is_found_when_present_and_not_when_absent():
    strengths = {"x": 0.5, "y": 0.0, "z": -0.5, "w": 0.2}
    biased = fit(simulate(strengths, 6000, 1, left_bonus=0.4, tie=0.0), rounds=5)["position"]  # ties would attenuate it
    fair = fit(simulate(strengths, 6000, 2), rounds=5)["position"]
    expected = 0.4 * 400 / math.log(10)
    assert biased["significant"] and biased["ci_low"] < expected < biased["ci_high"]
    assert fair["ci_low"] < 0 < fair["ci_high"] and not fair["significant"]


def test_style_control_separates_length_from_quality():
    """Two equally good models; one writes longer answers and voters like length."""
    rng = np.random.default_rng(5)
    votes = []
    for _ in range(4000):
        a, b = ("long", "short") if rng.random() < 0.5 else ("short", "long")
        la = int(rng.integers(200, 400)) if a == "long" else int(rng.integers(20, 200))
        lb = int(rng.integers(200, 400)) if b == "long" else int(rng.integers(20, 200))
        d = 3.0 * (la - lb) / (la + lb + 1)  # the voters' taste for length is all there is
        winner = "model_a" if rng.random() < 1 / (1 + math.exp(-d)) else "model_b"
        votes.append({"model_a": a, "model_b": b, "winner": winner,
                      "style_a": {"length": la, "headers": 0, "lists": 0, "bold": 0},
                      "style_b": {"length": lb, "headers": 0, "lists": 0, "bold": 0}})
    res = fit(votes, rounds=5, style=True)
    plain = {m["model"]: m["rating"] for m in res["models"]}
    styled = {m["model"]: m for m in res["style"]["models"]}
    assert plain["long"] - plain["short"] > 150
    assert abs(styled["long"]["rating"] - styled["short"]["rating"]) < 40
    assert res["style"]["coefficients"]["length"]["ci_low"] > 0
    assert "lambda=0.5" in res["style"]["regularization"]
    assert styled["long"]["rating_without_style"] == plain["long"]


def test_an_adversarial_user_is_flagged_and_their_votes_removed():
    strengths = {"a": 2.0, "b": 0.7, "c": -0.7, "d": -2.0}
    votes = simulate(strengths, 3000, 3)
    for k, v in enumerate(votes):
        v["user"] = f"u{k % 30}"
    names = list(strengths)
    rng = np.random.default_rng(4)
    for _ in range(100):  # always votes for the weaker model
        i, j = sorted(rng.choice(4, 2, replace=False))
        votes.append({"model_a": names[i], "model_b": names[j], "winner": "model_b", "user": "troll"})
    res = fit(votes, rounds=5)
    anomalous = res["removed"]["anomalous_users"]
    assert anomalous["users"] == ["troll"] and anomalous["votes"] == 100  # and no honest user
    assert res["removed"]["total"] >= 100


def test_caps_and_repeated_prompts_are_down_weighted_and_reported():
    votes = simulate({"a": 0.5, "b": 0.0, "c": -0.5}, 900, 6)
    for k, v in enumerate(votes):
        v["user"] = "heavy" if k < 300 else f"u{k % 50}"
        v["tstamp"] = 1_700_000_000 + (0 if k < 300 else k * 3600)
        v["prompt"] = "hi" if k % 3 == 0 else f"p{k}"
    res = fit(votes, rounds=5, rules=QualityRules(max_votes_per_day=100, max_prompt_repeats=50, max_user_share=0.1))
    r = res["removed"]
    assert r["per_day_cap"]["votes"] == pytest.approx(200, abs=0.5)  # heavy's 300 on one day -> 100
    assert r["repeated_prompts"]["votes"] > 150  # 300 votes on "hi" count as 50 (some already capped)
    assert r["user_share_cap"]["votes"] > 5  # heavy keeps ~100 of a model's ~470 votes: above 10 %
    parts = r["per_day_cap"]["votes"] + r["user_share_cap"]["votes"] + r["repeated_prompts"]["votes"]
    assert r["total"] == pytest.approx(parts, abs=0.3) and r["anomalous_users"]["votes"] == 0


def test_fragility_is_small_for_a_close_top_and_large_for_a_clear_one():
    close = fit(simulate({"a": 0.02, "b": 0.0, "c": -1.0}, 3000, 8), rounds=5)["fragility"]
    clear = fit(simulate({"a": 1.5, "b": 0.0, "c": -1.0}, 3000, 8), rounds=5)["fragility"]
    assert close["votes"] is not None and clear["votes"] is not None
    assert close["votes"] * 5 < clear["votes"]


def test_fragility_equals_the_brute_force_minimum_on_a_small_table():
    import itertools

    from posttrain.arena._bt import fit_counts
    from posttrain.arena._extras import fragility

    wins = np.array([[0, 6, 5], [4, 0, 6], [2, 3, 0]], dtype=float)
    theta, _ = fit_counts(wins)
    got = fragility(wins, theta, ["a", "b", "c"])
    cells = [(i, j) for i in range(3) for j in range(3) if i != j]
    best = None
    for k in range(1, 12):
        for combo in itertools.product(*(range(int(wins[c]) + 1) for c in cells)):
            if sum(combo) != k:
                continue
            w2 = wins.copy()
            for c, r in zip(cells, combo):
                w2[c] -= r
            if np.argmax(fit_counts(w2)[0]) != np.argmax(theta):
                best = k
                break
        if best:
            break
    assert got["votes"] == best, (got, best)


def test_share_and_provisional_flags():
    votes = simulate({"a": 0.0, "b": 0.0, "c": 0.0}, 600, 9)
    votes += [{"model_a": "new", "model_b": "a", "winner": "model_a"}] * 10
    res = {m["model"]: m for m in fit(votes, rounds=5)["models"]}
    assert res["new"]["provisional"] and not res["a"]["provisional"]
    assert res["new"]["votes"] == 10 and res["new"]["share"] == pytest.approx(10 / 610, abs=1e-4)


def test_file_reader_fast_path_equals_the_plain_reader(tmp_path):
    votes = simulate({"a": 0.5, "b": 0.0, "c": -0.5}, 500, 10)
    plain = [{k: v[k] for k in ("model_a", "model_b", "winner")} for v in votes]
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in plain))
    fast = read_votes(path)
    slow = from_records(plain)
    assert fit(fast, rounds=10)["models"] == fit(slow, rounds=10)["models"]


def test_bad_votes_name_the_line(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "model_b": "y", "winner": "left"}\n')
    with pytest.raises(ValueError, match=r"v.jsonl:2: winner"):
        read_votes(path)


def test_cli_json_shape_and_one_line_errors(tmp_path):
    from typer.testing import CliRunner

    from posttrain.cli import app

    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in simulate({"a": 0.5, "b": 0.0, "c": -0.5}, 300, 11)))
    r = CliRunner().invoke(app, ["arena", "fit", "--votes", str(path), "--rounds", "20", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) >= {"models", "style", "position", "removed", "timings"}
    assert set(out["models"][0]) == {"model", "rating", "ci_low", "ci_high", "rank", "votes", "share", "provisional"}
    assert set(out["timings"]) == {"read_s", "fit_s", "bootstrap_s"}
    human = CliRunner().invoke(app, ["arena", "fit", "--votes", str(path), "--rounds", "5", "--ci", "sandwich"])
    assert human.exit_code == 0 and "RANK" in human.output and "sandwich" in human.output
    for args, msg in ((["--ci", "normal"], "--ci"), (["--anchor", "zz=1"], "anchor"), (["--rounds", "0"], "--rounds")):
        bad = CliRunner().invoke(app, ["arena", "fit", "--votes", str(path), *args])
        assert bad.exit_code == 2 and msg in bad.output and len(bad.output.strip().splitlines()) == 1
