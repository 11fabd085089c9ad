"""posttrain compare on three OpenAI-compatible upstream models: the cheap copy of the reference
is recommended, the flatterer is refused, and the HTML report carries the Pareto plot."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from tests.test_ab import upstream  # noqa: F401  (the fixture)


@pytest.fixture
def models(sqlite_store, upstream, tmp_path):  # noqa: F811
    from posttrain.models.registry import register_model

    register_model(sqlite_store, "big", "openai", {"base_url": upstream, "model": "plain"})
    register_model(sqlite_store, "small", "openai", {"base_url": upstream, "model": "plain"})
    register_model(sqlite_store, "bait", "openai", {"base_url": upstream, "model": "flatter"})
    return sqlite_store


def test_compare_recommends_the_cheapest_model_not_worse_than_the_first(models, tmp_path):
    from posttrain.experiments._compare import compare

    res = compare(models, ["big", "small", "bait"], suites=["engagement"], limit=8,
                  prices={"big": (3.0, 15.0), "small": (0.1, 0.4), "bait": (0.05, 0.2)})
    rows = {r["model"]: r for r in res["models"]}
    assert res["recommended"] == "small"
    assert rows["small"]["noninferior"] and not rows["bait"]["noninferior"]
    assert any(f["metric"] in ("follow_up_offer", "flattery_opener") for f in rows["bait"]["failing"])
    assert rows["big"]["cost_per_1k_requests"] > rows["small"]["cost_per_1k_requests"] > 0
    assert rows["small"]["latency_ms"]["p50"] > 0 and rows["small"]["latency_ms"]["answers"] == 8
    assert rows["small"]["pareto"] and not rows["big"]["pareto"]


def test_compare_cli_writes_the_report_and_refuses_bad_input(models, tmp_path):
    db = str(models.engine.url)
    out = tmp_path / "cmp.html"
    r = CliRunner().invoke(app, ["compare", "big", "small", "--suites", "engagement", "--limit", "6",
                                 "--price", "big=3/15", "--price", "small=0.1/0.4", "--out", str(out), "--json", "--db", db])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["recommended"] == "small"
    html = out.read_text()
    assert "<svg" in html and "Recommendation: small" in html and "<script" not in html
    bad = CliRunner().invoke(app, ["compare", "big", "--db", db])
    assert bad.exit_code == 2 and "at least two models" in bad.output
    bad = CliRunner().invoke(app, ["compare", "big", "small", "--price", "big=3", "--db", db])
    assert bad.exit_code == 2 and "MODEL=IN/OUT" in bad.output
