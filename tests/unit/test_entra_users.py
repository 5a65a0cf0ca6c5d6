"""EntraUsers: a mail → the Entra user, from the cache, one listing of the directory, or one lookup per mail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.microsoft.errors import MicrosoftError, ServiceUnavailable
from bot.microsoft.models import User
from bot.store import Store, create_store
from bot.store.index import EntraUserLink
from workflows.entra_users import EntraUsers, Resolved

T0 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


@dataclass
class FakeDirectory:
    users: list[User]
    count: int | None = None  # what count_users answers (None: the number of users)
    fail_after: int | None = None  # find_users_by_email fails after this many lookups
    lookups: list[str] = field(default_factory=list)
    listings: int = 0
    counts: int = 0

    def iter_users(self) -> Iterator[User]:
        self.listings += 1
        yield from self.users

    def count_users(self) -> int | None:
        self.counts += 1
        return len(self.users) if self.count is None else self.count

    def find_users_by_email(self, email: str) -> list[User]:
        if self.fail_after is not None and len(self.lookups) >= self.fail_after:
            raise ServiceUnavailable("Microsoft Graph had a problem (503)", status=503)
        self.lookups.append(email)
        wanted = email.lower()
        return [u for u in self.users if wanted in {(u.mail or "").lower(), (u.userPrincipalName or "").lower()}]


def user(n: int, mail: str | None, upn: str | None = None, name: str = "") -> User:
    return User(id=f"0000000{n}-AAAA-BBBB-CCCC-DDDDDDDDDDDD", displayName=name or f"User {n}", mail=mail,
                userPrincipalName=upn or f"user{n}@contoso.onmicrosoft.com")


def uid(n: int) -> str:
    return f"0000000{n}-aaaa-bbbb-cccc-dddddddddddd"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path / 'users.db'}")
    yield store
    store.close()


DIRECTORY = [
    user(1, "Adele.Vance@contoso.com", name="Adele Vance"),
    user(2, None, upn="lee.gu@contoso.com", name="Lee Gu"),
    user(3, "shared@contoso.com", name="Shared One"),
    user(4, "other@contoso.com", upn="SHARED@contoso.com", name="Shared Two"),
]


def test_one_lookup_a_mail_then_the_cache(store: Store) -> None:
    graph = FakeDirectory(DIRECTORY)
    users = EntraUsers(store, graph, T0)
    found = users.resolve_many(["adele.vance@CONTOSO.com", " lee.gu@contoso.com", "nobody@contoso.com", "",
                                "Adele.Vance@contoso.com"])
    assert found == {"adele.vance@contoso.com": uid(1), "lee.gu@contoso.com": uid(2), "nobody@contoso.com": None}
    assert sorted(graph.lookups) == ["adele.vance@contoso.com", "lee.gu@contoso.com", "nobody@contoso.com"]
    assert graph.listings == 0

    # A day later, from the cache, "no one" included; a week later, asked again.
    again = EntraUsers(store, graph, T0 + timedelta(days=1))
    assert again.resolve_many(["ADELE.vance@contoso.com", "nobody@contoso.com"]) == {
        "adele.vance@contoso.com": uid(1), "nobody@contoso.com": None}
    assert len(graph.lookups) == 3
    stale = EntraUsers(store, graph, T0 + timedelta(days=8))
    assert stale.resolve_many(["nobody@contoso.com"]) == {"nobody@contoso.com": None}
    assert len(graph.lookups) == 4

    with store.session() as session:
        links = {link.email: link for link in session.exec(select(EntraUserLink))}
    assert links["adele.vance@contoso.com"].name == "Adele Vance"
    assert links["adele.vance@contoso.com"].matches == 1
    assert links["nobody@contoso.com"].matches == 0 and links["nobody@contoso.com"].user_id is None


def test_a_mail_two_users_answer_to_names_no_one(store: Store) -> None:
    graph = FakeDirectory(DIRECTORY)
    users = EntraUsers(store, graph, T0)
    assert users.resolve_many(["shared@contoso.com"]) == {"shared@contoso.com": None}
    assert users.resolve_one("Shared@Contoso.com") == Resolved(None, 2, "")
    assert graph.lookups == ["shared@contoso.com"]  # the second answer came from the cache


def test_many_unknown_mails_list_the_directory_once(store: Store) -> None:
    filler = [user(5 + n, f"person{n}@contoso.com") for n in range(60)]
    graph = FakeDirectory([*DIRECTORY, *filler])
    mails = [f"person{n}@contoso.com" for n in range(50)] + ["shared@contoso.com", "lee.gu@contoso.com",
                                                              "ghost@contoso.com"]
    users = EntraUsers(store, graph, T0)
    found = users.resolve_many(mails)
    assert graph.listings == 1 and graph.lookups == []
    assert found["person7@contoso.com"] == filler[7].id.lower()
    assert found["lee.gu@contoso.com"] == uid(2)  # matched by userPrincipalName
    assert found["shared@contoso.com"] is None  # one user's mail, another's UPN
    assert found["ghost@contoso.com"] is None
    with store.session() as session:
        shared = session.get(EntraUserLink, "shared@contoso.com")
    assert shared is not None and shared.matches == 2

    # All answered now: no listing, no lookup.
    EntraUsers(store, graph, T0 + timedelta(hours=1)).resolve_many(mails)
    assert graph.listings == 1 and graph.lookups == []


def test_a_huge_directory_is_not_listed_for_a_few_dozen_mails(store: Store) -> None:
    graph = FakeDirectory(DIRECTORY, count=2_000_000)  # 2,003 pages against 45 lookups
    mails = [f"p{n}@contoso.com" for n in range(45)]
    EntraUsers(store, graph, T0).resolve_many(mails)
    assert graph.listings == 0 and len(graph.lookups) == 45


def test_a_failed_lookup_keeps_what_was_found(store: Store) -> None:
    graph = FakeDirectory(DIRECTORY, fail_after=1)
    users = EntraUsers(store, graph, T0)
    with pytest.raises(MicrosoftError):
        users.resolve_many(["adele.vance@contoso.com", "lee.gu@contoso.com"])
    graph.fail_after = None
    assert users.resolve_many(["adele.vance@contoso.com", "lee.gu@contoso.com"]) == {
        "adele.vance@contoso.com": uid(1), "lee.gu@contoso.com": uid(2)}
    assert graph.lookups == ["adele.vance@contoso.com", "lee.gu@contoso.com"]


def test_resolve_one(store: Store) -> None:
    graph = FakeDirectory(DIRECTORY)
    users = EntraUsers(store, graph, T0)
    assert users.resolve_one("Adele.Vance@contoso.com") == Resolved(uid(1), 1, "Adele Vance")
    assert users.resolve_one("nobody@contoso.com") == Resolved(None, 0, "")
    assert users.resolve_one("  ") == Resolved(None, 0, "")
    assert users.resolve_one("adele.vance@contoso.com") == Resolved(uid(1), 1, "Adele Vance")
    assert graph.lookups == ["adele.vance@contoso.com", "nobody@contoso.com"]
    # Older than `recheck`: asked again, and the answer replaces the cached one.
    graph.users[0] = user(9, "Adele.Vance@contoso.com", name="Adele V.")
    later = EntraUsers(store, graph, T0 + timedelta(days=2), recheck=timedelta(days=1))
    assert later.resolve_one("adele.vance@contoso.com") == Resolved(uid(9), 1, "Adele V.")
    assert EntraUsers(store, graph, T0 + timedelta(days=2)).resolve_many(["adele.vance@contoso.com"]) == {
        "adele.vance@contoso.com": uid(9)}
