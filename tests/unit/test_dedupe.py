"""The seen-request store (SQLite and PostgreSQL) and each surface's idempotency key."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from bot.dedupe import idempotency_key
from bot.store import create_store
from bot.store.seen import SeenRequests, seen_key
from tests.databases import database_url  # noqa: F401  (fixture)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
        self.mono = 1000.0

    def advance(self, **kwargs: float) -> None:
        delta = timedelta(**kwargs)
        self.now += delta
        self.mono += delta.total_seconds()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database_url: str):  # noqa: F811
    store = create_store(database_url)
    yield store
    store.close()


def rows(store) -> set[str]:
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT key FROM seen_requests"))}


def test_a_key_is_new_once_within_the_window(store, clock):
    seen = SeenRequests(store.engine, now=lambda: clock.now, monotonic=lambda: clock.mono)
    assert seen.claim("a", "b") == {"a", "b"}
    assert seen.claim("a") == set()
    assert seen.claim("b", "c") == {"c"}
    assert seen.claim("c", "c") == set()  # a key twice in one claim is one key
    clock.advance(minutes=9, seconds=59)
    assert seen.claim("a") == set()
    clock.advance(seconds=2)  # ten minutes after `a` was first seen: new again, purged or not
    assert seen.claim("a", "b") == {"a", "b"}
    assert seen.claim("a", "b") == set()


def test_purge_removes_only_old_keys_and_runs_now_and_then(store, clock):
    purges: list[Any] = []
    seen = SeenRequests(store.engine, now=lambda: clock.now, monotonic=lambda: clock.mono,
                        purge_every=60, background=purges.append)
    seen.claim("old")
    clock.advance(minutes=11)
    seen.claim("new")  # more than a minute since the last purge: one purge is handed to the runner
    assert len(purges) == 1
    seen.claim("newer")
    assert len(purges) == 1  # not on every request
    seen.flush()  # SQLite's keys reach the table from a writer thread; PostgreSQL's are already there
    purges[0]()
    assert rows(store) == {"new", "newer"}
    clock.advance(seconds=61)
    seen.claim("newest")
    assert len(purges) == 2


def test_keys_outlive_a_restart(store, clock):
    first = SeenRequests(store.engine, now=lambda: clock.now)
    assert first.claim("signed-once") == {"signed-once"}
    first.close()  # on SQLite, what memory held is written out
    clock.advance(minutes=4)
    again = SeenRequests(store.engine, now=lambda: clock.now)
    assert again.claim("signed-once", "other") == {"other"}
    clock.advance(minutes=7)  # past the window of the first claim
    assert again.claim("signed-once") == {"signed-once"}
    again.close()


def test_the_table_has_the_keys_soon_without_a_flush(store):
    seen = SeenRequests(store.engine)
    seen.claim("k1", "k2")
    deadline = time.monotonic() + 5
    while rows(store) != {"k1", "k2"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rows(store) == {"k1", "k2"}
    seen.close()


def test_forget_lets_a_key_through_again(store, clock):
    seen = SeenRequests(store.engine, now=lambda: clock.now)
    assert seen.claim("form") == {"form"}
    seen.forget("form")
    assert seen.claim("form") == {"form"}


def test_concurrent_claims_of_one_key_have_one_winner(store):
    seen = SeenRequests(store.engine)
    winners: list[set[str]] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        winners.append(seen.claim("same", f"own-{threading.get_ident()}"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum("same" in w for w in winners) == 1
    assert all(len(w - {"same"}) == 1 for w in winners)


def test_seen_keys_have_a_fixed_length_whatever_slack_sends():
    assert len(seen_key("click", "x" * 5000)) == len(seen_key("click", "")) <= 80
    assert seen_key("click", "a", "bc") != seen_key("click", "ab", "c")


# ---- idempotency keys -----------------------------------------------------------------------------------


def click(*, action_ts: str = "1700000000.000001", trigger_id: str = "t1", message_ts: str | None = "1.2",
          view_id: str | None = None, action_id: str = "cr_approve") -> dict[str, Any]:
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts} if message_ts else \
        {"type": "view", "view_id": view_id}
    body: dict[str, Any] = {"type": "block_actions", "trigger_id": trigger_id, "container": container,
                            "actions": [{"action_id": action_id, "action_ts": action_ts, "value": "1"}]}
    if view_id:
        body["view"] = {"id": view_id}
    return body


def form(values: dict[str, Any], *, view_id: str = "V1", view_hash: str = "h1", trigger_id: str = "t1") -> dict:
    return {"type": "view_submission", "trigger_id": trigger_id,
            "view": {"id": view_id, "hash": view_hash, "state": {"values": values}}}


def test_a_command_is_its_trigger_id():
    first = idempotency_key({"command": "/mam", "text": "help", "trigger_id": "t1"})
    assert first == idempotency_key({"command": "/mam", "text": "help", "trigger_id": "t1"})
    assert first != idempotency_key({"command": "/mam", "text": "help", "trigger_id": "t2"})


def test_a_click_is_where_what_and_when():
    key = idempotency_key(click())
    assert key is not None
    assert idempotency_key(click(trigger_id="t2")) == key  # a double click: another trigger, same action_ts
    assert idempotency_key(click(action_ts="1700000000.000002")) != key
    assert idempotency_key(click(message_ts="1.3")) != key
    assert idempotency_key(click(action_id="cr_reject")) != key
    in_modal = idempotency_key(click(message_ts=None, view_id="V9"))
    assert in_modal is not None and in_modal != key
    assert idempotency_key(click(message_ts=None, view_id="V8")) != in_modal


def test_a_form_is_its_view_hash_and_values():
    values = {"justification": {"value": {"type": "plain_text_input", "value": "because"}}}
    key = idempotency_key(form(values))
    assert idempotency_key(form(values, trigger_id="t2")) == key
    changed = {"justification": {"value": {"type": "plain_text_input", "value": "because (CHG1)"}}}
    assert idempotency_key(form(changed)) != key  # corrected after `errors`: a new submission
    assert idempotency_key(form(values, view_hash="h2")) != key
    assert idempotency_key(form(values, view_id="V2")) != key


def test_an_event_is_its_event_id():
    key = idempotency_key({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_home_opened"}})
    assert key == idempotency_key({"type": "event_callback", "event_id": "Ev1", "event": {}})
    assert key != idempotency_key({"type": "event_callback", "event_id": "Ev2", "event": {}})


@pytest.mark.parametrize("body", [
    {"type": "block_suggestion", "action_id": "pick_group", "value": "Sal"},
    {"type": "view_closed", "view": {"id": "V1", "hash": "h"}},
    {"type": "url_verification", "challenge": "x"},
    {"ssl_check": "1"},
    {"command": "/mam", "text": "help"},  # no trigger_id: nothing to tell copies apart by
    {"type": "block_actions", "actions": "not a list", "container": {"message_ts": "1"}},
    {"type": "view_submission", "view": "not a view"},
])
def test_what_is_never_deduplicated(body: dict[str, Any]):
    assert idempotency_key(body) is None
