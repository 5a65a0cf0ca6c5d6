"""Drafts: a button's long request kept server-side, for its author only, for a day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.store import Store, create_store
from bot.store.drafts import Draft, DraftGone, Drafts, NotYourDraft


class Now:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path}/drafts.db")
    yield store
    store.close()


def test_a_draft_round_trips_for_its_author_only(store: Store) -> None:
    drafts = Drafts(store)
    why = "because " * 400  # 3,200 characters: far more than a button's value holds
    draft_id = drafts.save("assign", {"w": why}, "UADMIN001")

    assert len(draft_id) <= 32 and draft_id != drafts.save("assign", {"w": why}, "UADMIN001")
    assert drafts.load(draft_id, kind="assign", user="UADMIN001") == {"w": why}
    with pytest.raises(NotYourDraft, match="Only the person who asked"):
        drafts.load(draft_id, kind="assign", user="UAPPROV01")
    with pytest.raises(DraftGone):
        drafts.load(draft_id, kind="something-else", user="UADMIN001")
    with pytest.raises(DraftGone):
        drafts.load("d_unknown", kind="assign", user="UADMIN001")
    with pytest.raises(DraftGone):
        drafts.load('{"p": "a json value from an older message"}', kind="assign", user="UADMIN001")


def test_drafts_older_than_a_day_are_not_read_and_are_purged(store: Store) -> None:
    now = Now()
    drafts = Drafts(store, now=now)
    old = drafts.save("assign", {"n": 1}, "UADMIN001")
    now.at += timedelta(hours=23)
    recent = drafts.save("assign", {"n": 2}, "UADMIN001")
    now.at += timedelta(hours=2)

    with pytest.raises(DraftGone, match="expired"):
        drafts.load(old, kind="assign", user="UADMIN001")
    assert drafts.load(recent, kind="assign", user="UADMIN001") == {"n": 2}
    drafts.save("assign", {"n": 3}, "UADMIN001")  # each save deletes what is over a day old
    with store.session() as session:
        assert set(session.exec(select(Draft.id)).all()) >= {recent} and session.get(Draft, old) is None
    now.at += timedelta(days=2)
    assert drafts.purge() == 2
