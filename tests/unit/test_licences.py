"""Licences (workflows.licences): the refresh's union per product, its wholesale replace, a failed read that keeps
the table, and the gaps it answers (none until a refresh has succeeded)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot.microsoft.errors import MicrosoftError, PermissionDenied, ServiceUnavailable
from bot.store import Store, create_store
from bot.store.index import LicenceRun, UserLicence
from workflows.licences import (
    Gap,
    GroupLicences,
    gap_text,
    group_licences,
    last_licence_run,
    licence_gaps,
    licence_job_summary,
    refresh_licences,
)

T0 = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
INTUNE_A, INTUNE_EDU = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "da24caf9-af8e-485c-b7c8-e73336da2693"
WINDEFATP, MDE_LITE = "871d91ec-ec1a-452b-a83f-bd76c7d770ef", "292cc034-7b7c-4950-aaf5-943befd3f1d4"
INTUNE, DEFENDER = (INTUNE_A, INTUNE_EDU), (WINDEFATP, MDE_LITE)


def uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


class FakeReader:
    """Users with each plan enabled, as Graph's `assignedPlans` filter answers; one request per plan read."""

    def __init__(self, holders: Mapping[str, Iterable[str]], fail: MicrosoftError | None = None,
                 fail_on: str | None = None) -> None:
        self.holders = {plan: list(users) for plan, users in holders.items()}
        self.fail, self.fail_on = fail, fail_on
        self.asked: list[str] = []
        self.requests = 0

    def iter_user_ids_with_plan(self, service_plan_id: str) -> Iterator[str]:
        self.asked.append(service_plan_id)
        self.requests += 1
        users = self.holders.get(service_plan_id, [])
        if self.fail is not None and service_plan_id == self.fail_on:
            yield from users[:1]  # a page came, then the next failed
            raise self.fail
        yield from users


class FakeMembers:
    def __init__(self, members: Iterable[str]) -> None:
        self.members = list(members)
        self.read = 0

    def iter_group_member_ids(self, group_id: str) -> Iterator[str]:
        for member in self.members:
            self.read += 1
            yield member


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = create_store(f"sqlite:///{tmp_path}/licences.db")
    yield store
    store.close()


def refresh(store: Store, reader: FakeReader, now: datetime = T0) -> LicenceRun:
    return refresh_licences(reader=reader, store=store, intune_plans=INTUNE, defender_plans=DEFENDER, now=now,
                            requests=lambda: reader.requests)


def _id(run: LicenceRun | None) -> int | None:
    return None if run is None else run.id


def table(store: Store) -> dict[str, tuple[bool, bool]]:
    with store.session() as session:
        return {r.user_id: (r.intune, r.defender) for r in session.exec(select(UserLicence))}


# ---- refresh ---------------------------------------------------------------------------------------


def test_refresh_unions_the_plans_of_each_product(store: Store) -> None:
    a, b, c, d, e = (uid(n) for n in range(1, 6))
    reader = FakeReader({
        INTUNE_A: [a.upper(), b], INTUNE_EDU: [b, c],  # b holds both Intune plans: one user, once
        WINDEFATP: [a, d], MDE_LITE: [a, " " + c + " "],
        "00000000-0000-0000-0000-00000000beef": [e],  # a plan nobody configured: never asked for
    })
    run = refresh(store, reader)

    assert run.ok and run.error == "" and run.id is not None
    assert (run.intune_users, run.defender_users, run.requests) == (3, 3, 4)
    assert reader.asked == [*INTUNE, *DEFENDER]
    assert table(store) == {a: (True, True), b: (True, False), c: (True, True), d: (False, True)}
    assert run.started_at == T0 and run.finished_at is not None and run.finished_at >= T0
    assert _id(last_licence_run(store)) == run.id
    assert "3 users with an Intune plan, 3 users with a Defender for Endpoint plan (4 requests" in (
        licence_job_summary(run))


def test_disabled_plans_are_the_readers_business(store: Store) -> None:
    """The refresh trusts the reader: a user Graph doesn't list as holding a plan enabled holds nothing."""
    a, b = uid(1), uid(2)
    reader = FakeReader({INTUNE_A: [a], WINDEFATP: [a]})  # b's plans are Suspended or Deleted: Graph omits them
    refresh(store, reader)
    assert table(store) == {a: (True, True)}
    assert licence_gaps(store, [a, b]) == {b: Gap.NEITHER}


def test_plan_ids_are_asked_once_whatever_their_case(store: Store) -> None:
    reader = FakeReader({INTUNE_A: [uid(1)], WINDEFATP: [uid(1)]})
    refresh_licences(reader=reader, store=store, intune_plans=[INTUNE_A.upper(), INTUNE_A], defender_plans=[WINDEFATP],
                     now=T0)
    assert reader.asked == [INTUNE_A, WINDEFATP]


def test_refresh_replaces_the_table_wholesale(store: Store) -> None:
    a, b, c, d = (uid(n) for n in range(1, 5))
    refresh(store, FakeReader({INTUNE_A: [a, b], WINDEFATP: [a, c]}))
    second = refresh(store, FakeReader({INTUNE_EDU: [b], MDE_LITE: [d]}), T0 + timedelta(days=1))

    assert table(store) == {b: (True, False), d: (False, True)}
    with store.session() as session:
        assert {r.checked_at.replace(tzinfo=UTC) for r in session.exec(select(UserLicence))} == {
            T0 + timedelta(days=1)}
    assert _id(last_licence_run(store)) == second.id


def test_a_large_refresh_inserts_in_chunks_of_2000(store: Store) -> None:
    users = [uid(n) for n in range(4500)]
    inserts: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO USER_LICENCES"):
            inserts.append(len(parameters) if executemany else 1)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        run = refresh(store, FakeReader({INTUNE_A: users, WINDEFATP: users[::2]}))
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert inserts == [2000, 2000, 500]
    assert (run.intune_users, run.defender_users) == (4500, 2250)
    assert len(table(store)) == 4500


def test_a_refused_read_keeps_the_table_and_names_the_permission(store: Store) -> None:
    a, b = uid(1), uid(2)
    first = refresh(store, FakeReader({INTUNE_A: [a], WINDEFATP: [a]}))
    denied = PermissionDenied(
        "Microsoft Graph refused when the bot tried to find the users licensed for a service plan: the app "
        "registration needs the application permission User.Read.All. Grant it in the Entra admin center.",
        permission="User.Read.All", where="Entra", status=403, request_id="req-1")
    reader = FakeReader({INTUNE_A: [a, b], WINDEFATP: [b]}, fail=denied, fail_on=WINDEFATP)
    run = refresh(store, reader, T0 + timedelta(days=1))

    assert not run.ok and run.id is not None
    assert run.error.startswith("Licences were not read: ") and "User.Read.All" in run.error
    assert "request-id req-1" in run.error
    assert run.requests == 3  # both Intune plans, then the Defender plan that failed
    assert table(store) == {a: (True, True)}  # b's half-read licences never land
    assert _id(last_licence_run(store)) == first.id
    assert licence_job_summary(run) == run.error


def test_a_403_without_the_permission_in_its_words_gets_it_added(store: Store) -> None:
    reader = FakeReader({INTUNE_A: [uid(1)]}, fail=MicrosoftError("Forbidden", status=403), fail_on=INTUNE_A)
    run = refresh(store, reader)
    assert not run.ok and "Forbidden" in run.error and "User.Read.All" in run.error
    assert last_licence_run(store) is None


def test_other_microsoft_errors_are_told_as_they_are(store: Store) -> None:
    down = ServiceUnavailable("Microsoft Graph had a problem (503) and the bot couldn't find the users licensed "
                              "for a service plan; try again in a few minutes", status=503)
    run = refresh(store, FakeReader({}, fail=down, fail_on=MDE_LITE))
    assert not run.ok and "try again in a few minutes" in run.error and "User.Read.All" not in run.error


def test_no_plans_configured_is_a_failed_run(store: Store) -> None:
    reader = FakeReader({INTUNE_A: [uid(1)]})
    run = refresh_licences(reader=reader, store=store, intune_plans=[INTUNE_A], defender_plans=[], now=T0)
    assert not run.ok and "MAM_DEFENDER_PLAN_IDS" in run.error and reader.asked == []


def test_the_newest_ok_run_wins_over_a_newer_failure(store: Store) -> None:
    ok = refresh(store, FakeReader({INTUNE_A: [uid(1)]}))
    refresh(store, FakeReader({}, fail=MicrosoftError("boom", status=500), fail_on=INTUNE_A), T0 + timedelta(hours=1))
    assert _id(last_licence_run(store)) == ok.id


# ---- gaps ------------------------------------------------------------------------------------------


def test_no_gaps_until_a_refresh_succeeded(store: Store) -> None:
    assert licence_gaps(store, [uid(1), uid(2)]) == {}
    refresh(store, FakeReader({}, fail=MicrosoftError("boom", status=500), fail_on=INTUNE_A))
    assert licence_gaps(store, [uid(1), uid(2)]) == {}  # a failed run is no evidence either


def test_gaps_name_what_each_user_lacks(store: Store) -> None:
    both, intune_only, defender_only, unknown = (uid(n) for n in range(1, 5))
    refresh(store, FakeReader({INTUNE_A: [both, intune_only], MDE_LITE: [both, defender_only]}))

    gaps = licence_gaps(store, [both, intune_only.upper(), defender_only, unknown, "", unknown])
    assert gaps == {intune_only: Gap.NO_DEFENDER, defender_only: Gap.NO_INTUNE, unknown: Gap.NEITHER}
    assert gap_text(Gap.NO_INTUNE) == "can't be protected: no Intune licence"
    assert gap_text(Gap.NO_DEFENDER) == "can't be protected: no Defender licence"
    assert gap_text(Gap.NEITHER) == "can't be protected: no Intune or Defender licence"


def test_gaps_query_500_ids_at_a_time(store: Store) -> None:
    users = [uid(n) for n in range(1234)]
    refresh(store, FakeReader({INTUNE_A: users, WINDEFATP: users[:1000]}))
    queries: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "FROM user_licences" in statement:
            queries.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        gaps = licence_gaps(store, users)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(queries) == 3
    assert gaps == {u: Gap.NO_DEFENDER for u in users[1000:]}


# ---- a group's members -----------------------------------------------------------------------------


def test_a_groups_licences_are_not_read_before_a_refresh(store: Store) -> None:
    members = FakeMembers([uid(1)])
    found = group_licences(store, members, "g1")
    assert found == GroupLicences(checked=False) and members.read == 0
    assert found.text() == "Licences not checked yet (`mam-bot jobs run licences`)."


def test_a_groups_members_who_lack_a_licence_are_counted(store: Store) -> None:
    users = [uid(n) for n in range(20)]
    # 0-7 both; 8-16 Intune only (9 lack Defender); 17-18 Defender only; 19 neither
    refresh(store, FakeReader({INTUNE_A: users[:17], WINDEFATP: users[:8] + users[17:19]}))
    found = group_licences(store, FakeMembers(users), "g1")
    assert (found.members, found.more, found.no_intune, found.no_defender, found.neither) == (20, False, 2, 9, 1)
    assert found.text() == ("12 of 20 members lack a licence and can't be protected "
                            "(2 no Intune, 9 no Defender, 1 neither).")
    everyone = group_licences(store, FakeMembers(users[:8]), "g2")
    assert everyone.text() == "All 8 members hold an Intune and a Defender licence."
    assert group_licences(store, FakeMembers([]), "g3").text() == "The group has no user members to check licences for."
    one = group_licences(store, FakeMembers([users[19]]), "g4")
    assert one.text() == "1 of 1 member lacks a licence and can't be protected (1 neither)."


def test_a_large_group_is_read_up_to_the_cap(store: Store) -> None:
    users = [uid(n) for n in range(30)]
    refresh(store, FakeReader({INTUNE_A: users[:25], WINDEFATP: users}))
    members = FakeMembers(users[20:] + users[:20])  # 10 without Intune come first
    found = group_licences(store, members, "g1", cap=12)
    assert (found.members, found.more, found.no_intune) == (12, True, 5)
    assert members.read == 13  # one past the cap says there are more, and the read stops
    assert found.text() == ("At least 5 of 12+ members lack a licence and can't be protected "
                            "(5 no Intune; only the first 12 were checked).")
    clean = group_licences(store, FakeMembers(users[:20]), "g2", cap=12)
    assert clean.text() == "The first 12 members hold an Intune and a Defender licence (the group has more)."
