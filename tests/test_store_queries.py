"""The serve-side store queries on SQLite and PostgreSQL, without HTTP: transcript sync,
conversation lookup by transcript hash, feedback inserts and reads, personalization rows."""

from __future__ import annotations

from datetime import datetime, timezone

from posttrain.ids import new_id
from posttrain.store import chat, feedback, personal
from posttrain.store.users import add_user


def _completion(user_id, conv, text, request_id=None, prompt=None):
    return {
        "id": new_id("chatcmpl-"), "request_id": request_id or new_id(), "choice_index": 0,
        "conversation_id": conv, "user_id": user_id, "model": "m", "params": {}, "prompt": prompt or [],
        "text": text, "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1,
        "latency_ms": 1.0, "custom_instructions": None, "memory": [], "created_at": datetime.now(timezone.utc),
    }


def _exchange(store, user_id, conv, is_new, turns, answer):
    comp = _completion(user_id, conv, answer, prompt=turns)
    transcript = [{"id": new_id(), **m} for m in turns]
    transcript.append({"id": new_id(), "role": "assistant", "content": answer, "completion_id": comp["id"]})
    ex = chat.Exchange(user_id=user_id, conversation_id=conv, is_new=is_new, title="t", transcript=transcript,
                       completions=[comp], now=datetime.now(timezone.utc))
    store.write(lambda s: chat.record_exchange(s, ex))
    return comp["id"]


def test_transcript_sync_keeps_the_common_prefix_and_every_completion(store):
    alice, _ = add_user(store, "alice")
    conv = new_id()
    u1 = {"role": "user", "content": "q1"}
    c1 = _exchange(store, alice.id, conv, True, [u1], "a1")
    c2 = _exchange(store, alice.id, conv, False, [u1, {"role": "assistant", "content": "a1"},
                                                  {"role": "user", "content": "q2"}], "a2")
    with store.session() as s:
        full = chat.get_conversation(s, alice.id, conv)
        assert chat.find_conversation_by_transcript(s, alice.id, chat.transcript_hash(
            [m for m in full["messages"]])) == conv
    assert [m["content"] for m in full["messages"]] == ["q1", "a1", "q2", "a2"]
    assert full["messages"][1]["completion_id"] == c1  # the kept prefix keeps its completion link
    c3 = _exchange(store, alice.id, conv, False, [u1], "a1 again")  # regenerate the first answer
    with store.session() as s:
        again = chat.get_conversation(s, alice.id, conv)
    assert [(m["content"], m.get("completion_id")) for m in again["messages"]] == [("q1", None), ("a1 again", c3)]
    assert [c["id"] for c in again["completions"]] == [c1, c2, c3]


def test_lookups_are_scoped_to_the_owner(store):
    alice, _ = add_user(store, "alice")
    bob, _ = add_user(store, "bob")
    conv = new_id()
    _exchange(store, alice.id, conv, True, [{"role": "user", "content": "q"}], "a")
    h = chat.transcript_hash([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    with store.session() as s:
        assert chat.find_conversation_by_transcript(s, alice.id, h) == conv
        assert chat.find_conversation_by_transcript(s, bob.id, h) is None
        assert chat.owns_conversation(s, alice.id, conv) and not chat.owns_conversation(s, bob.id, conv)
        assert chat.get_conversation(s, bob.id, conv) is None
        assert [c["id"] for c in chat.list_conversations(s, alice.id)] == [conv]
        assert chat.list_conversations(s, bob.id) == []


def test_feedback_insert_is_idempotent_per_user_and_pairs_show_on_both_answers(store):
    alice, _ = add_user(store, "alice")
    conv = new_id()
    a = _exchange(store, alice.id, conv, True, [{"role": "user", "content": "q"}], "a")
    b = _exchange(store, alice.id, conv, False, [{"role": "user", "content": "q"}], "b")

    def row(**kw):
        base = {"id": new_id(), "user_id": alice.id, "completion_id": a, "kind": "pairwise", "value": "b",
                "reasons": [], "comment": None, "other_completion_id": b, "positions": None,
                "edited_text": None, "signal": None, "idempotency_key": "k", "created_at": datetime.now(timezone.utc)}
        return {**base, **kw}

    first = row()
    assert store.write(lambda s: feedback.insert_event(s, first)) is None
    replay = store.write(lambda s: feedback.insert_event(s, row(value="a")))
    assert replay["id"] == first["id"] and replay["value"] == "b"
    assert store.write(lambda s: feedback.insert_event(s, row(idempotency_key=None))) is None
    with store.session() as s:
        by_completion = feedback.events_for_completions(s, [a, b])
        assert feedback.count_events(s) == 2
        assert len(feedback.events_for_user(s, alice.id)) == 2
    assert [e["id"] for e in by_completion[a]] == [e["id"] for e in by_completion[b]]


def test_personalization_rows(store):
    alice, _ = add_user(store, "alice")
    with store.session() as s:
        assert personal.personalization(s, alice.id) == (None, [])
    store.write(lambda s: personal.add_instructions(s, alice.id, "Be kind."))
    m = store.write(lambda s: personal.add_memory(s, alice.id, "Likes tea."))
    store.write(lambda s: personal.add_memory(s, alice.id, "Has a cat."))
    with store.session() as s:
        assert personal.personalization(s, alice.id) == ("Be kind.", ["Likes tea.", "Has a cat."])
    assert store.write(lambda s: personal.delete_memory(s, alice.id, m["id"])) is True
    assert store.write(lambda s: personal.delete_memory(s, alice.id, m["id"])) is False
    store.write(lambda s: personal.add_instructions(s, alice.id, ""))
    with store.session() as s:
        assert personal.personalization(s, alice.id) == (None, ["Has a cat."])


def test_insert_events_batches_rows_and_resolves_repeated_keys_within_the_batch(store):
    alice, _ = add_user(store, "alice")
    cid = _exchange(store, alice.id, new_id(), True, [{"role": "user", "content": "q"}], "a")

    def row(key):
        return {"id": new_id(), "user_id": alice.id, "completion_id": cid, "kind": "implicit", "value": None,
                "reasons": [], "comment": None, "other_completion_id": None, "positions": None,
                "edited_text": None, "signal": "copy", "idempotency_key": key, "created_at": datetime.now(timezone.utc)}

    rows = [row("a"), row(None), row("a"), row("b"), row(None)]
    results = store.write(lambda s: feedback.insert_events(s, rows))
    assert [r is None for r in results] == [True, True, False, True, True]
    assert results[2]["id"] == rows[0]["id"]
    again = store.write(lambda s: feedback.insert_events(s, [row("b")]))
    assert again[0]["id"] == rows[3]["id"]
    with store.session() as s:
        assert feedback.count_events(s) == 4


def _rows(store, user_id):
    """Everything a user's exchanges stored, ids included, in a comparable form."""
    from sqlalchemy import select

    from posttrain.store.schema import Completion, Conversation, Message

    with store.session() as s:
        convs = sorted(tuple(r) for r in s.execute(select(
            Conversation.id, Conversation.title, Conversation.transcript_hash).where(Conversation.user_id == user_id)))
        ids = [c[0] for c in convs]
        msgs = sorted(tuple(r) for r in s.execute(select(
            Message.id, Message.conversation_id, Message.position, Message.role, Message.content,
            Message.completion_id).where(Message.conversation_id.in_(ids))))
        comps = sorted(tuple(r) for r in s.execute(select(
            Completion.id, Completion.conversation_id, Completion.text).where(Completion.user_id == user_id)))
    return convs, msgs, comps


def test_exchanges_recorded_as_one_batch_store_what_recording_them_one_by_one_stores(store):
    """record_exchanges (the server's group of concurrent requests): new conversations become
    multi-row inserts, and a continued conversation sees the rows before it in the batch, here a
    conversation started in the same batch, continued, then regenerated."""
    def batch(user_id, tag):
        n = iter(range(1000))
        ident = lambda: f"{tag}{next(n):05d}"  # noqa: E731  (the same ids but for the tag)
        conv, other = ident(), ident()
        u1, a1 = {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}
        out = []
        for c, is_new, turns, answer in [
            (conv, True, [u1], "a1"), (other, True, [{"role": "user", "content": "elsewhere"}], "b"),
            (conv, False, [u1, a1, {"role": "user", "content": "q2"}], "a2"),
            (conv, False, [u1], "a1"),  # regenerated, with the text of the first answer
        ]:
            comp = {**_completion(user_id, c, answer, prompt=turns), "id": ident()}
            transcript = [{"id": ident(), **m} for m in turns]
            transcript.append({"id": ident(), "role": "assistant", "content": answer, "completion_id": comp["id"]})
            out.append(chat.Exchange(user_id=user_id, conversation_id=c, is_new=is_new, title="t",
                                     transcript=transcript, completions=[comp], now=datetime.now(timezone.utc)))
        return out

    def stored(user_id, tag):
        return tuple(sorted(tuple(str(x).replace(tag, "") for x in row) for row in table)
                     for table in _rows(store, user_id))

    alice, _ = add_user(store, "alice")
    together = batch(alice.id, "A")
    store.write(lambda s: chat.record_exchanges(s, together))
    bob, _ = add_user(store, "bob")
    for ex in batch(bob.id, "B"):
        store.write(lambda s, ex=ex: chat.record_exchange(s, ex))
    assert stored(alice.id, "A") == stored(bob.id, "B")
    convs, msgs, comps = stored(alice.id, "A")
    assert len(convs) == 2 and len(comps) == 4
    first = together[0].conversation_id.replace("A", "")
    assert sorted((m[2], m[4]) for m in msgs if m[1] == first) == [("0", "q1"), ("1", "a1")]
