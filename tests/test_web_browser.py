"""The web page in a real browser against the real server.

`posttrain serve` runs as a subprocess on a free loopback port over a SQLite store in a temporary
folder, with the tiny random-weight model as its default (fast, gibberish answers). Debian's
chromium, driven by Playwright, signs in and uses the page like a person; every check ends in the
database rows the clicks must have produced.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from posttrain.loop.server import Server as ServeProcess
from posttrain.store import Completion, Conversation, CustomInstructions, FeedbackEvent, Memory, Message, Store, User

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = Path("/tmp/posttrain-web.png")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install it with `make browser`"
)


@dataclass
class Server:
    url: str
    db: str
    store: Store
    home: Path

    def add_user(self, name: str) -> str:
        """A user created with the real CLI (`posttrain users add NAME`); returns the API key."""
        out = subprocess.run(
            [_posttrain(), "users", "add", name, "--db", self.db],
            capture_output=True, text=True, env=_env(self.home), timeout=60, check=True,
        )
        return out.stdout.strip()

    def user_id(self, name: str) -> str:
        with self.store.session() as s:
            return s.scalar(select(User.id).where(User.name == name))

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.store.session() as s:
            return list(s.scalars(select(model).where(*where).order_by(model.created_at, model.id)))


def _posttrain() -> str:
    script = Path(sys.executable).with_name("posttrain")
    return str(script) if script.exists() else shutil.which("posttrain") or "posttrain"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTTRAIN_DATABASE_URL"}
    return {**env, "POSTTRAIN_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until check() is truthy (the page acknowledges before the test's next read)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir) -> Iterator[Server]:
    from posttrain.models.registry import register_model

    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    db = f"sqlite:///{root / 'store.db'}"
    store = Store.open(db)
    register_model(store, "tiny", "local", {"path": str(tiny_model_dir)})
    serve = ServeProcess(db, home, root / "server.log", model="tiny", env=_env(home))
    try:
        url = serve.start(timeout=60).url
        srv = Server(url, db, store, home)
        # Load the model now (torch import + weights), so no page step waits on it under load.
        warm = httpx.post(f"{url}/v1/chat/completions", timeout=180,
                          headers={"Authorization": f"Bearer {srv.add_user('warm-up')}"},
                          json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert warm.status_code == 200, warm.text
        yield srv
    finally:
        serve.close()
        store.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    # 4xx answers are logged by chromium as "Failed to load resource"; those are expected in the
    # error tests and shown to the user by the page. Anything else at error level is a bug.
    pg.on("console", lambda m: problems.append(f"console: {m.text}")
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    # Generous: the machine may be shared with other busy processes.
    pg.set_default_timeout(60_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    yield pg
    context.close()
    # A CSP violation, a failed module import or a script error all surface here.
    assert not problems, problems


def sign_in(page, server: Server, key: str) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.get_by_test_id("api-key-input").fill(key)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("app")).to_be_visible()
    expect(page.locator("body[data-ready=true]")).to_have_count(1)


def open_settings(page) -> None:
    if page.get_by_test_id("settings-panel").is_hidden():
        page.get_by_test_id("open-settings").click()


def set_generation(page, max_tokens: int, markdown: bool = False) -> None:
    """Short answers for speed; plain text so the DOM text equals the stored text exactly."""
    open_settings(page)
    page.get_by_test_id("max-tokens").fill(str(max_tokens))
    page.get_by_test_id("max-tokens").press("Tab")
    page.get_by_test_id("markdown-toggle").set_checked(markdown)
    page.get_by_test_id("close-settings").click()


def send(page, text: str) -> None:
    page.get_by_test_id("composer-input").fill(text)
    page.get_by_test_id("composer-input").press("Enter")


def answers(page):
    return page.locator("[data-testid=message][data-role=assistant]")


def answer_id(page, index: int, not_equal: str | None = None) -> str:
    """The completion id of the index-th answer once it is stored (streaming has finished)."""
    loc = answers(page).nth(index)

    def ready() -> str | None:
        value = loc.get_attribute("data-completion-id") if loc.count() else None
        return value if value and value != not_equal else None

    return wait_for(ready, what=f"answer {index} to be stored")


def events(server: Server, user_id: str, **where: Any) -> list[FeedbackEvent]:
    conds = [FeedbackEvent.user_id == user_id] + [getattr(FeedbackEvent, k) == v for k, v in where.items()]
    return server.rows(FeedbackEvent, *conds)


def completion(server: Server, cid: str) -> Completion:
    rows = server.rows(Completion, Completion.id == cid)
    assert rows, f"completion {cid} is not in the database"
    return rows[0]


def test_chat_thumbs_copy_regenerate_edit(server, page):
    from playwright.sync_api import expect

    key = server.add_user("alice")
    uid = server.user_id("alice")
    sign_in(page, server, key)
    expect(page.get_by_test_id("user-name")).to_have_text("alice")
    set_generation(page, max_tokens=12)
    page.get_by_test_id("model-select").select_option("tiny")

    send(page, "Hello there")
    first = answer_id(page, 0)
    row = completion(server, first)
    assert (row.user_id, row.model, row.params["max_new_tokens"], row.params["stream"]) == (uid, "tiny", 12, True)
    assert row.prompt[-1] == {"role": "user", "content": "Hello there"}
    assert answers(page).nth(0).get_by_test_id("message-content").text_content() == row.text
    expect(page.get_by_test_id("conversation-item")).to_have_count(1)

    # Thumbs down with two reasons and a comment.
    msg = answers(page).nth(0)
    msg.get_by_test_id("thumbs-down").click()
    msg.get_by_test_id("reason-wrong").check()
    msg.get_by_test_id("reason-too_long").check()
    msg.get_by_test_id("feedback-comment").fill("It made that up.")
    msg.get_by_test_id("feedback-submit").click()
    expect(msg.get_by_test_id("thumbs-down")).to_have_attribute("aria-pressed", "true")
    [down] = events(server, uid, kind="thumbs")
    assert (down.completion_id, down.value, down.reasons, down.comment) == (first, -1, ["wrong", "too_long"], "It made that up.")
    assert UUID.match(down.idempotency_key)

    # Thumbs up clicked twice is one intent: one event, not two.
    for _ in range(2):
        msg.get_by_test_id("thumbs-up").click()
        expect(msg.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "true")
        expect(msg.get_by_test_id("thumbs-up")).to_be_enabled()
    ups = events(server, uid, kind="thumbs", value=1)
    assert [e.completion_id for e in ups] == [first]
    assert ups[0].idempotency_key != down.idempotency_key

    # Reopening the thumbs-down form is a new opinion: a second event with the amended reasons.
    msg.get_by_test_id("thumbs-down").click()
    msg.get_by_test_id("reason-unsafe").check()
    msg.get_by_test_id("feedback-submit").click()
    expect(msg.get_by_test_id("thumbs-down")).to_have_attribute("aria-pressed", "true")
    downs = events(server, uid, kind="thumbs", value=-1)
    assert [e.reasons for e in downs] == [["wrong", "too_long"], ["wrong", "too_long", "unsafe"]]
    assert len({e.idempotency_key for e in downs}) == 2

    # Copy records an implicit signal.
    msg.get_by_test_id("copy").click()
    expect(msg.get_by_test_id("action-status")).to_have_text("Copied")
    assert [(e.completion_id, e.signal) for e in events(server, uid, kind="implicit")] == [(first, "copy")]

    # A follow-up continues the same conversation and marks the first answer "continue".
    send(page, "Tell me more")
    second = answer_id(page, 1)
    assert completion(server, second).conversation_id == row.conversation_id
    assert completion(server, second).prompt[-3:] == [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": row.text},
        {"role": "user", "content": "Tell me more"},
    ]
    wait_for(lambda: events(server, uid, kind="implicit", signal="continue"), what="continue signal")

    # Regenerate: an implicit signal on the old answer, then a new answer to the same history.
    answers(page).nth(1).get_by_test_id("regenerate").click()
    third = answer_id(page, 1, not_equal=second)
    expect(answers(page)).to_have_count(2)
    [regen] = events(server, uid, kind="implicit", signal="regenerate")
    assert regen.completion_id == second
    new = completion(server, third)
    assert new.conversation_id == row.conversation_id and new.prompt == completion(server, second).prompt

    # Edit: the correction is stored and shown in place of the model's answer.
    msg = answers(page).nth(1)
    msg.get_by_test_id("edit").click()
    expect(msg.get_by_test_id("edit-input")).to_have_value(new.text)
    msg.get_by_test_id("edit-input").fill("Paris is the capital of France.")
    msg.get_by_test_id("edit-save").click()
    edited = answers(page).nth(1)
    expect(edited.get_by_test_id("edited-badge")).to_be_visible()
    expect(edited.get_by_test_id("message-content").first).to_have_text("Paris is the capital of France.")
    [edit] = events(server, uid, kind="edit")
    assert (edit.completion_id, edit.edited_text, edit.value) == (third, "Paris is the capital of France.", None)

    # The next request sends the correction as history.
    send(page, "Thanks")
    fourth = answer_id(page, 2)
    assert {"role": "assistant", "content": "Paris is the capital of France."} in completion(server, fourth).prompt

    # Reopening the conversation from the sidebar shows what the user last saw.
    page.reload()
    page.get_by_test_id("conversation-item").first.click()
    expect(answers(page)).to_have_count(3)
    expect(answers(page).nth(1).get_by_test_id("edited-badge")).to_be_visible()
    assert answers(page).nth(1).get_attribute("data-completion-id") == third
    expect(answers(page).nth(0).get_by_test_id("thumbs-down")).to_have_attribute("aria-pressed", "true")
    answers(page).nth(0).get_by_test_id("thumbs-down").click()  # show the reasons form in the picture
    page.screenshot(path=str(SCREENSHOT))


def test_compare_mode_pairwise_votes(server, page):
    from playwright.sync_api import expect

    key = server.add_user("bob")
    uid = server.user_id("bob")
    sign_in(page, server, key)
    set_generation(page, max_tokens=8)
    page.get_by_test_id("compare-toggle").check()

    # (Math.random pinned: below 0.5 shows answer a on the left.) click, expected value, kept side
    rounds = [(0.25, "right", "b", "right"), (0.75, "left", "b", "left"), (0.25, "tie", "tie", "left")]
    kept = []
    for i, (rnd, click, value, side) in enumerate(rounds):
        page.evaluate(f"Math.random = () => {rnd}")
        send(page, f"Question {i}")
        block = page.get_by_test_id("compare-block")
        expect(block).to_be_visible()
        expect(page.get_by_test_id("send")).to_be_disabled()
        if i == 0:
            page.screenshot(path=str(SCREENSHOT.with_name("posttrain-web-compare.png")))
        left = block.get_by_test_id("compare-left").get_attribute("data-completion-id")
        right = block.get_by_test_id("compare-right").get_attribute("data-completion-id")
        by_id = {c.id: c for c in server.rows(Completion, Completion.id.in_([left, right]))}
        a, b = sorted(by_id.values(), key=lambda c: c.choice_index)
        assert a.request_id == b.request_id and (a.choice_index, b.choice_index) == (0, 1)
        assert (left == a.id) == (rnd < 0.5)
        block.get_by_test_id(f"pick-{click}").click()
        expect(block).to_have_count(0)
        chosen = left if side == "left" else right
        assert answer_id(page, i) == chosen
        assert answers(page).nth(i).get_by_test_id("message-content").text_content() == by_id[chosen].text
        [vote] = [e for e in events(server, uid, kind="pairwise") if e.completion_id == a.id]
        assert (vote.other_completion_id, vote.value, vote.positions) == (b.id, value, {"left": left, "right": right})
        assert UUID.match(vote.idempotency_key)
        kept.append(by_id[chosen])
        if i == 0:
            # The stored transcript still holds choice 0 until the next request; a reload must
            # show the answer the user picked (the page reads it from the vote).
            page.reload()
            expect(page.locator("body[data-ready=true]")).to_have_count(1)
            assert answer_id(page, 0) == chosen
            expect(answers(page).nth(0).get_by_test_id("message-content")).to_have_text(by_id[chosen].text)
            page.get_by_test_id("compare-toggle").check()

    # The chosen answers are the history of the next request.
    page.get_by_test_id("compare-toggle").uncheck()
    send(page, "And finally")
    last = completion(server, answer_id(page, 3))
    history = [m["content"] for m in last.prompt if m["role"] == "assistant"]
    assert history == [c.text for c in kept]
    assert len({c.conversation_id for c in kept} | {last.conversation_id}) == 1
    assert len(events(server, uid, kind="pairwise")) == 3


def test_settings_instructions_memory_consent(server, page):
    from playwright.sync_api import expect

    key = server.add_user("carol")
    uid = server.user_id("carol")
    sign_in(page, server, key)
    set_generation(page, max_tokens=4)
    open_settings(page)

    page.get_by_test_id("instructions-input").fill("Answer in one sentence.")
    page.get_by_test_id("instructions-save").click()
    expect(page.get_by_test_id("instructions-status")).to_have_text("Saved")
    assert [r.text for r in server.rows(CustomInstructions, CustomInstructions.user_id == uid)] == ["Answer in one sentence."]

    for fact in ("I work on recommender systems", "I prefer Python"):
        page.get_by_test_id("memory-input").fill(fact)
        page.get_by_test_id("memory-add").click()
        expect(page.get_by_test_id("memory-item").filter(has_text=fact)).to_be_visible()
    rows = server.rows(Memory, Memory.user_id == uid)
    assert [m.text for m in rows] == ["I work on recommender systems", "I prefer Python"]
    page.get_by_test_id("memory-item").filter(has_text="I prefer Python").get_by_test_id("memory-delete").click()
    expect(page.get_by_test_id("memory-item")).to_have_count(1)
    deleted = wait_for(lambda: [m for m in server.rows(Memory, Memory.user_id == uid) if m.deleted_at], what="soft delete")
    assert [m.text for m in deleted] == ["I prefer Python"]

    expect(page.get_by_test_id("consent-checkbox")).to_be_checked()
    page.get_by_test_id("consent-checkbox").uncheck()
    wait_for(lambda: server.rows(User, User.id == uid, User.consent.is_(False)), what="consent off")

    # What the settings say reaches the model, and is recorded on the completion.
    page.get_by_test_id("close-settings").click()
    send(page, "Hi")
    row = completion(server, answer_id(page, 0))
    assert row.custom_instructions == "Answer in one sentence."
    assert row.memory == ["I work on recommender systems"]
    assert "I work on recommender systems" in row.prompt[0]["content"] and row.prompt[0]["role"] == "system"

    # Reloading keeps the session; signing out forgets the key.
    page.reload()
    expect(page.get_by_test_id("user-name")).to_have_text("carol")
    page.get_by_test_id("open-settings").click()
    expect(page.get_by_test_id("consent-checkbox")).not_to_be_checked()
    expect(page.get_by_test_id("instructions-input")).to_have_value("Answer in one sentence.")
    expect(answers(page)).to_have_count(1)  # the open conversation survives the reload
    page.screenshot(path=str(SCREENSHOT.with_name("posttrain-web-settings.png")))
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("signin")).to_be_visible()
    assert page.evaluate("[sessionStorage.getItem('posttrain.apiKey'), localStorage.getItem('posttrain.apiKey')]") == [None, None]
    page.reload()
    expect(page.get_by_test_id("signin")).to_be_visible()


def test_bad_key_and_api_errors_show_one_line(server, page):
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    page.get_by_test_id("api-key-input").fill("pt-not-a-real-key")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("invalid API key")
    expect(page.get_by_test_id("app")).to_be_hidden()

    # An error from the chat API (an unknown model) shows the server's error.message.
    key = server.add_user("dave")
    sign_in(page, server, key)
    page.evaluate(
        "() => { const o = document.createElement('option'); o.value = 'no-such-model';"
        " o.textContent = 'no-such-model'; document.getElementById('model').append(o); }"
    )
    page.get_by_test_id("model-select").select_option("no-such-model")
    send(page, "Hello?")
    expect(page.get_by_test_id("error")).to_contain_text("model 'no-such-model' not found")
    # Nothing was answered, and the question is back in the composer.
    expect(answers(page)).to_have_count(0)
    expect(page.get_by_test_id("composer-input")).to_have_value("Hello?")
    assert server.rows(Completion, Completion.user_id == server.user_id("dave")) == []


def _insert_conversation(server: Server, user_id: str, title: str, text: str) -> str:
    from posttrain.ids import new_id

    conv_id, cid = new_id(), new_id("chatcmpl-")
    prompt = [{"role": "user", "content": "show me"}]

    def write(s):
        s.add(Conversation(id=conv_id, user_id=user_id, title=title))
        s.flush()
        s.add(Completion(id=cid, request_id=new_id(), choice_index=0, conversation_id=conv_id,
                         user_id=user_id, model="tiny", params={}, prompt=prompt, text=text))
        s.add(Message(id=new_id(), conversation_id=conv_id, position=0, role="user", content="show me"))
        s.add(Message(id=new_id(), conversation_id=conv_id, position=1, role="assistant",
                      content=text, completion_id=cid))

    server.store.write(write)
    return cid


@pytest.mark.parametrize("markdown", [True, False], ids=["markdown", "plain"])
def test_model_output_never_runs_script(server, page, markdown):
    from playwright.sync_api import expect

    name = f"eve-{markdown}"
    key = server.add_user(name)
    cid = _insert_conversation(server, server.user_id(name), XSS, XSS)
    sign_in(page, server, key)
    set_generation(page, max_tokens=4, markdown=markdown)
    item = page.get_by_test_id("conversation-item")
    expect(item).to_have_count(1)
    assert item.get_attribute("title") == XSS  # the sidebar shows the title as text too
    item.click()
    msg = answers(page).first
    expect(msg).to_have_attribute("data-completion-id", cid)
    expect(msg.get_by_test_id("message-content")).to_have_text(XSS)
    # The only images are the page's own icons; no <script> element was created from the text.
    assert page.locator("#messages img:not([src^='/static/']), #messages script, #conversations img").count() == 0
    page.wait_for_timeout(300)  # give an onerror handler time to fire if one had been created
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_markdown_renderer_emits_only_whitelisted_elements(server, page):
    page.goto(server.url + "/")
    cases = [
        "**bold** and *italic* and `code` and __strong__ and _em_",
        "- one\n- two\n\n1. first\n2. second",
        "```html\n<script>alert(1)</script>\n```",
        "[click](javascript:alert(1)) <a href=\"javascript:alert(1)\">x</a>",
        "![img](x) <img src=x onerror=alert(1)> <svg onload=alert(1)>",
        "**<b>not bold</b>** `<i>` snake_case window.__proto__ a*b*c",
    ]
    result = page.evaluate(
        """async (cases) => {
            const md = await import('/static/markdown.js');
            return cases.map((text) => {
                const box = document.createElement('div');
                box.append(md.renderMarkdown(text));
                const tags = [...box.querySelectorAll('*')].map((n) => n.tagName);
                const attrs = [...box.querySelectorAll('*')].flatMap((n) => [...n.attributes].map((a) => a.name));
                return {tags, attrs, text: box.textContent, html: box.innerHTML, allowed: md.ALLOWED_TAGS};
            });
        }""",
        cases,
    )
    for case, out in zip(cases, result):
        assert set(out["tags"]) <= set(out["allowed"]), (case, out["html"])
        assert out["attrs"] == [], (case, out["html"])
    assert result[0]["html"] == (
        "<p><strong>bold</strong> and <em>italic</em> and <code>code</code> and "
        "<strong>strong</strong> and <em>em</em></p>"
    )
    assert result[1]["html"] == "<ul><li>one</li><li>two</li></ul><ol><li>first</li><li>second</li></ol>"
    assert result[2]["html"] == "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>"
    assert "javascript:alert(1)" in result[3]["text"] and "<a href" in result[3]["text"]
    assert "<img src=x onerror=alert(1)>" in result[4]["text"]
    # Identifiers with underscores and a*b*c-style maths stay literal where a reader expects it.
    assert "snake_case window.__proto__" in result[5]["text"]
    assert result[5]["html"].startswith("<p><strong>&lt;b&gt;not bold&lt;/b&gt;</strong> <code>&lt;i&gt;</code>")
    assert result[4]["tags"] == ["P"]
