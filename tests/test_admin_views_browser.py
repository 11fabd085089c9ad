"""The admin views and the comparison report in a real browser (Debian's chromium via Playwright).

A `posttrain serve` subprocess answers with two OpenAI-compatible upstream models served by this
test; chats, thumbs and pairwise votes go in over HTTP, then an admin signs in on /admin and the
leaderboard (with its interval plot), the dashboard (with its statement) and an experiment must
render with the stored figures. The `posttrain compare` HTML report is opened from disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from posttrain.store import Store
from tests.test_ab import serving, upstream  # noqa: F401  (upstream is a fixture)
from tests.test_web_browser import CHROMIUM, browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install it with `make browser`")


@pytest.fixture(scope="module")
def site(tmp_path_factory, upstream):  # noqa: F811
    from posttrain.models.registry import register_model
    from posttrain.store.users import add_user

    root = tmp_path_factory.mktemp("admin")
    db = f"sqlite:///{root / 'store.db'}"
    store = Store.open(db)
    register_model(store, "base", "openai", {"base_url": upstream, "model": "plain"})
    register_model(store, "other", "openai", {"base_url": upstream, "model": "flatter"})
    keys = {n: add_user(store, n, admin=(n == "root"))[1] for n in ("root", "ann", "ben", "cy")}
    try:
        with serving(root, db, "base") as url:
            _seed(url, keys, store)
            yield {"url": url, "keys": keys, "store": store, "root": root}
    finally:
        store.close()


def _seed(url: str, keys: dict[str, str], store: Store) -> None:
    """Chats with both models, pairwise votes with positions and thumbs, and an experiment."""
    q = [{"role": "user", "content": "What is the capital of France?"}]
    for k, name in enumerate(("ann", "ben", "cy") * 4):
        hdr = {"Authorization": f"Bearer {keys[name]}"}
        a = httpx.post(f"{url}/v1/chat/completions", headers=hdr, json={"messages": q}, timeout=30).json()
        b = httpx.post(f"{url}/v1/chat/completions", headers=hdr, json={"messages": q, "model": "other"}, timeout=30).json()
        left, right = (a["id"], b["id"]) if k % 2 else (b["id"], a["id"])
        for fb in ({"completion_id": a["id"], "kind": "pairwise", "value": "a" if k % 3 else "b",
                    "other_completion_id": b["id"], "positions": {"left": left, "right": right}},
                   {"completion_id": b["id"], "kind": "thumbs", "value": -1, "reasons": ["flattering"]},
                   {"completion_id": a["id"], "kind": "thumbs", "value": 1}):
            assert httpx.post(f"{url}/v1/feedback", headers=hdr, json=fb, timeout=30).status_code == 201
    from posttrain.experiments import start

    start(store, "trial", baseline="base", candidate="other", fraction=0.3, check_seconds=3600)


def test_leaderboard_dashboard_and_experiments_render_for_an_admin(site, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{site['url']}/admin")
    page.get_by_test_id("api-key-input").fill(site["keys"]["ann"])
    page.get_by_test_id("sign-in").click()
    page.wait_for_selector("[data-testid=signin-error]:not([hidden])")
    assert "admin key" in page.get_by_test_id("signin-error").text_content()
    page.get_by_test_id("api-key-input").fill(site["keys"]["root"])
    page.get_by_test_id("sign-in").click()
    page.wait_for_selector("body[data-loaded='1']", timeout=30_000)
    assert not page.get_by_test_id("error").is_visible(), page.get_by_test_id("error").text_content()

    rows = page.get_by_test_id("leaderboard-row")
    assert rows.count() == 2
    assert {rows.nth(i).locator("td").nth(1).text_content() for i in range(2)} == {"base", "other"}
    bars = page.get_by_test_id("interval")
    assert bars.count() == 2
    assert all(bars.nth(i).bounding_box()["width"] > 2 for i in range(2))  # the intervals are drawn
    assert "Position bias" in page.locator("#leaderboard-extra").text_content()
    assert page.get_by_test_id("record-item").count() == 2

    assert "nothing in posttrain optimizes them by default" in page.get_by_test_id("statement").text_content()
    stats = page.get_by_test_id("stats-row")
    assert stats.count() == 2
    other = next(stats.nth(i) for i in range(2) if stats.nth(i).locator("td").nth(1).text_content() == "other")
    cells = [other.locator("td").nth(j).text_content() for j in range(13)]
    assert cells[8] == "12" and "flattering 12" in cells[9]  # twelve thumbs-down, all "flattering"
    assert "trial: running" in page.get_by_test_id("experiment").text_content()
    page.screenshot(path="/tmp/posttrain-admin.png", full_page=True)
    assert not problems, problems


def test_comparison_report_renders_with_its_pareto_plot(site, browser):
    from posttrain.experiments._compare import compare, write_report

    res = compare(site["store"], ["base", "other"], suites=["verbosity"], limit=6,
                  prices={"base": (3.0, 15.0), "other": (0.1, 0.4)})
    out = write_report(res, site["root"] / "compare.html")
    page = browser.new_page()
    page.goto(out.as_uri())
    points = page.locator("svg circle.point")
    assert points.count() == 2 and all(points.nth(i).bounding_box()["width"] > 4 for i in range(2))
    assert page.get_by_test_id("recommendation").text_content().startswith(f"Recommendation: {res['recommended']}")
    assert page.locator("table tbody tr").count() == 2
