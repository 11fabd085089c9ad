"""The Review view in a real browser: an admin decides pending gates on the web page.

Two gates of the tiny model against an identical copy are run first (numbers pass, review
pending); `posttrain serve` then runs as a subprocess on that store, and Debian's chromium,
driven by Playwright, signs in at /review as an admin. One gate is approved (ties on every pair),
the other gets a "feels off" flag with a comment; the decisions in the database must then be
passed and blocked, with the comment in the blocked one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from gate_helpers import SMALL_POLICY, write_policy
from posttrain.loop.server import Server as ServeProcess
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, _env, _posttrain, wait_for

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install it with `make browser`")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    from posttrain.gate import run_gate
    from posttrain.models.registry import register_model
    from posttrain.store import Store

    root = tmp_path_factory.mktemp("review")
    home, db = root / "home", f"sqlite:///{root / 'store.db'}"
    store = Store.open(db)
    for name in ("t1", "t2"):
        register_model(store, name, "local", {"path": str(tiny_model_dir)})
    # Small and quick: 8 + 10 cases, margins wide enough for that many to have power.
    policy = write_policy(root, SMALL_POLICY.replace("conversations = 4", "conversations = 0")
                          .replace("limit = 24", "limit = 10").replace("margin = 0.3", "margin = 0.5")
                          .replace("margin = 0.4", "margin = 0.5")
                          .replace("[suites.engagement]", "[suites.engagement]\nlimit = 8"))
    decisions = [run_gate(store, "t2", "t1", policy=policy)["decision_id"] for _ in range(2)]
    key = subprocess.run([_posttrain(), "users", "add", "rita", "--admin", "--db", db], capture_output=True,
                         text=True, env=_env(home), timeout=60, check=True).stdout.strip()
    plain = subprocess.run([_posttrain(), "users", "add", "paul", "--db", db], capture_output=True,
                           text=True, env=_env(home), timeout=60, check=True).stdout.strip()
    serve = ServeProcess(db, home, root / "server.log", model="t1", env=_env(home))
    try:
        url = serve.start(timeout=60).url
        yield {"url": url, "store": store, "key": key, "plain": plain, "decisions": decisions}
    finally:
        serve.close()
        store.close()


def test_review_needs_an_admin_key(served):
    r = httpx.get(served["url"] + "/v1/gate/reviews", headers={"Authorization": f"Bearer {served['plain']}"})
    assert r.status_code == 403
    bad = httpx.post(served["url"] + f"/v1/gate/reviews/{served['decisions'][0]}/verdicts",
                     headers={"Authorization": f"Bearer {served['key']}"}, json={"verdicts": [{"item": 0}]})
    assert bad.status_code == 400 and "choice" in bad.json()["error"]["message"]


def test_admin_decides_pending_gates_in_the_browser(served):
    from playwright.sync_api import expect, sync_playwright

    from posttrain.gate import gate_status

    approve, flag = served["decisions"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                and not m.text.startswith("Failed to load resource") else None)
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)

        page.goto(served["url"] + "/review")
        page.get_by_test_id("api-key-input").fill(served["plain"])
        page.get_by_test_id("sign-in").click()
        expect(page.get_by_test_id("signin-error")).to_contain_text("admin key")

        page.get_by_test_id("api-key-input").fill(served["key"])
        page.get_by_test_id("sign-in").click()
        expect(page.locator("body[data-ready=true]")).to_have_count(1)
        expect(page.get_by_test_id("pending-item")).to_have_count(2)

        # Approve the first: a tie on every pair.
        page.locator(f"[data-testid=pending-item][data-id='{approve}']").click()
        expect(page.locator(f"[data-testid=decision][data-id='{approve}']")).to_be_visible()
        expect(page.get_by_test_id("pair")).to_have_count(3)
        page.get_by_test_id("submit-review").click()
        expect(page.get_by_test_id("error")).to_contain_text("pick left, right or tie")
        for i in range(3):
            page.get_by_test_id(f"tie-{i}").check()
        page.get_by_test_id("submit-review").click()
        expect(page.get_by_test_id("submit-status")).to_contain_text("now passed")
        expect(page.get_by_test_id("decision-title")).to_contain_text("(passed)")
        expect(page.get_by_test_id("pending-item")).to_have_count(1)

        # The second: one pair feels off, with a comment.
        page.locator(f"[data-testid=pending-item][data-id='{flag}']").click()
        expect(page.locator(f"[data-testid=decision][data-id='{flag}']")).to_be_visible()
        expect(page.get_by_test_id("decision-title")).to_contain_text("pending")
        for i, side in enumerate(("left", "right", "tie")):
            page.get_by_test_id(f"{side}-{i}").check()
        page.get_by_test_id("feels-off-1").check()
        page.get_by_test_id("comment-1").fill("both answers are word salad; the right one pretends to know")
        page.get_by_test_id("submit-review").click()
        expect(page.get_by_test_id("submit-status")).to_contain_text("now blocked")
        expect(page.get_by_test_id("no-pending")).to_be_visible()
        browser.close()
    assert not problems, problems

    store = served["store"]
    ok = wait_for(lambda: (r := gate_status(store, approve))["status"] != "pending" and r, what="approval stored")
    assert ok["status"] == "passed" and ok["passed"] and ok["review"]["reviewers"] == ["rita"]
    assert ok["review"]["preferences"]["tie"] == 3
    blocked = gate_status(store, flag)
    assert blocked["status"] == "blocked" and not blocked["passed"]
    assert any("pretends to know" in b["reason"] for b in blocked["blocking"])
