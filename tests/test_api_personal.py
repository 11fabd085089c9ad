"""/v1/me, consent, custom instructions and memory on SQLite and PostgreSQL, and how they reach
the model and the completion log."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from posttrain.feedback.personalization import MEMORY_HEADER
from posttrain.serve.app import DEFAULT_SYSTEM_PROMPT
from posttrain.serve.testing import make_env
from posttrain.store import CustomInstructions, Memory
from posttrain.store import chat as chat_queries
from posttrain.store import users as user_queries


@pytest.fixture
def env(store, tiny_model_dir):
    return make_env(store, tiny_model_dir)


def _ask(client, content="hi", system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    r = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 2})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_me_and_consent(env, store):
    with env.client("alice") as c:
        me = c.get("/v1/me").json()
        assert me == {"id": env.users["alice"].id, "name": "alice", "is_admin": False, "consent": True}
        r = c.put("/v1/me/consent", json={"consent": False})
        assert r.status_code == 200 and r.json()["consent"] is False
        assert c.get("/v1/me").json()["consent"] is False
        bad = c.put("/v1/me/consent", json={"consent": "maybe"})
        assert bad.status_code == 422 and bad.json()["error"]["message"] == "consent: must be true or false"
    with store.session() as s:
        assert user_queries.get_user(s, env.users["alice"].id).consent is False
        assert user_queries.get_user(s, env.users["bob"].id).consent is True


def test_instructions_are_versioned_and_an_empty_text_clears_them(env, store):
    with env.client("alice") as c:
        assert c.get("/v1/me/instructions").json() == {"text": ""}
        assert c.put("/v1/me/instructions", json={"text": "Answer in French."}).json() == {"text": "Answer in French."}
        c.put("/v1/me/instructions", json={"text": "Be brief."})
        assert c.get("/v1/me/instructions").json() == {"text": "Be brief."}
        with env.client("bob") as bob:
            assert bob.get("/v1/me/instructions").json() == {"text": ""}
        c.put("/v1/me/instructions", json={"text": ""})
        assert c.get("/v1/me/instructions").json() == {"text": ""}
    with store.session() as s:
        texts = s.scalars(select(CustomInstructions.text).order_by(CustomInstructions.id)).all()
    assert texts == ["Answer in French.", "Be brief.", ""]  # old versions stay for lineage


def test_memory_add_list_and_soft_delete_is_per_user(env, store):
    with env.client("alice") as c, env.client("bob") as bob:
        m1 = c.post("/v1/me/memory", json={"text": "  I live in Lyon. "})
        assert m1.status_code == 201 and m1.json()["text"] == "I live in Lyon."
        m2 = c.post("/v1/me/memory", json={"text": "I am vegetarian."}).json()
        assert [m["text"] for m in c.get("/v1/me/memory").json()] == ["I live in Lyon.", "I am vegetarian."]
        assert bob.get("/v1/me/memory").json() == []
        assert bob.delete(f"/v1/me/memory/{m2['id']}").status_code == 404  # not bob's
        assert c.delete(f"/v1/me/memory/{m2['id']}").status_code == 204
        assert c.delete(f"/v1/me/memory/{m2['id']}").status_code == 404  # already gone
        assert [m["id"] for m in c.get("/v1/me/memory").json()] == [m1.json()["id"]]
        blank = c.post("/v1/me/memory", json={"text": "   "})
        assert blank.status_code == 422 and blank.json()["error"]["message"] == "text: must not be blank"
    with store.session() as s:
        rows = s.scalars(select(Memory).order_by(Memory.id)).all()
    assert len(rows) == 2 and rows[0].deleted_at is None and rows[1].deleted_at is not None


def test_personalization_reaches_the_model_and_is_recorded_on_each_completion(env, store):
    with env.client("alice") as c, env.client("bob") as bob:
        plain = _ask(c)
        c.put("/v1/me/instructions", json={"text": "Answer like a pirate."})
        m1 = c.post("/v1/me/memory", json={"text": "My dog is Rex."}).json()
        c.post("/v1/me/memory", json={"text": "I like tea."})
        personal = _ask(c, system="You are terse.")
        c.delete(f"/v1/me/memory/{m1['id']}")
        after_delete = _ask(c)
        bobs = _ask(bob)
    with store.session() as s:
        rows = {k: chat_queries.get_completion(s, v) for k, v in
                {"plain": plain, "personal": personal, "after": after_delete, "bob": bobs}.items()}
    assert rows["plain"]["custom_instructions"] is None and rows["plain"]["memory"] == []
    p = rows["personal"]
    assert p["custom_instructions"] == "Answer like a pirate."
    assert p["memory"] == ["My dog is Rex.", "I like tea."]
    # One system message: personalization first, the client's own system prompt after it.
    assert p["prompt"] == [
        {"role": "system", "content": f"Answer like a pirate.\n\n{MEMORY_HEADER}\n- My dog is Rex.\n- I like tea.\n\nYou are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert rows["after"]["memory"] == ["I like tea."]
    assert "Rex" not in rows["after"]["prompt"][0]["content"]
    assert rows["bob"]["custom_instructions"] is None and rows["bob"]["prompt"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "hi"}]


def test_admin_endpoint_needs_an_admin_key(env):
    with env.client("alice") as alice, env.client("admin") as admin, env.client() as anon:
        denied = alice.get("/v1/admin/users")
        assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
        assert anon.get("/v1/admin/users").status_code == 401
        users = admin.get("/v1/admin/users").json()
    assert [u["name"] for u in users] == ["alice", "bob", "admin"]
    assert all("key_hash" not in u for u in users) and users[2]["is_admin"] is True
