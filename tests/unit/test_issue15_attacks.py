"""Attacks on issue 15 ("the watch tells the truth at 100,000 devices"): enforcement gating every block claim,
the registrations index from Intune's report export, licences, `/mam me` and the Microsoft calls behind them.

Tests marked xfail(strict=True) show a problem found by the review; the others are attacks that held.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlmodel import select

from bot.microsoft import build_clients
from bot.microsoft.errors import PermissionDenied, ServiceUnavailable
from bot.microsoft.models import User
from bot.mrkdwn import Mrkdwn
from bot.sandbox import SandboxConfig
from bot.sandbox.config import ConnectorConfig
from bot.sandbox.control import Rule
from bot.settings import load_settings
from bot.store import Store, create_store
from bot.store.index import OFF, ON, UNKNOWN, Enforcement, IndexRow, IndexRun, LicenceRun, UserLicence
from bot.store.watch import OPEN, Episode, SweepRun
from commands.alerts import digest_card, digest_text, enforcement_notice
from commands.me import ME_RECHECK
from commands.status import index_text
from tests.unit.test_registrations_index import (
    ADELE,
    DEV_A,
    DIRECTORY,
    HEADER,
    REPORT,
    FakeGraph,
    make_zip,
)
from tests.unit.test_registrations_index import refresh as refresh_with
from tests.unit.test_threat_sweep import T0, World, aad, make_world
from workflows import index_store, threat_sweep
from workflows.connectors import PORTALS
from workflows.enforcement import Reading, current_enforcement, notice_key, record
from workflows.entra_users import EntraUsers
from workflows.index_store import current_run, iter_registrations
from workflows.licences import refresh_licences
from workflows.me import Identity, identify
from workflows.onboarding import WatchSettings
from workflows.registrations_index import refresh_index
from workflows.report_csv import SELECT, ReportError, report_rows
from workflows.tenant_reader import IndexedReader, MicrosoftReader
from workflows.threat_sweep import SweepResult, run_threat_sweep

CONNECTORS = "GET /beta/deviceManagement/mobileThreatDefenseConnectors"
# The columns of MAMAppProtectionStatus as Microsoft lists them (and the sandbox serves them).
MICROSOFT_COLUMNS = ("User", "Email", "App", "AppVersion", "SdkVersion", "AppInstanceId", "DeviceName",
                     "DeviceHealth", "DeviceType", "DeviceManufacturer", "DeviceModel", "AndroidPatchVersion",
                     "AADDeviceID", "MDMDeviceID", "Platform", "PlatformVersion", "ManagementType",
                     "AppProtectionStatus", "Policy", "LastSync", "ComplianceState")
HOSTILE = "<!channel> & <@U1> \u202egnp.exe"
BIDI = "\u202e"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = create_store(f"sqlite:///{tmp_path / 'attack.db'}")
    yield made
    made.close()


def toggle(world: World, on: bool) -> None:
    world.tenant.set_connector(androidMobileApplicationManagementEnabled=on)


def episodes(store: Store) -> list[Episode]:
    with store.session() as session:
        return list(session.exec(select(Episode)))


def open_ids(store: Store) -> set[int | None]:
    return {e.id for e in episodes(store) if e.state == OPEN}


def fail_connector(world: World, status: int) -> None:
    world.tenant._fail.append(Rule.parse(CONNECTORS, [status] * 50))


def indexed_sweep(world: World, at: Any = T0, reader_class: type[IndexedReader] = IndexedReader,
                  **settings: Any) -> SweepResult:
    graph, defender = world.clients.graph, world.clients.defender

    def refresh(policies: list[Any]) -> Any:
        return refresh_index(source=graph, store=world.store, policies=policies, now=at, sleep=lambda s: None,
                             users=EntraUsers(world.store, graph, at))

    reader = reader_class(MicrosoftReader(graph, defender), world.store, refresh)
    return run_threat_sweep(reader=reader, store=world.store, notifier=world.notifier,
                            settings=WatchSettings(**settings), alert_channel="C0ALERTS", now=at)


def text_of(blocks: list[Any]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# ==== 1. Truthfulness ==================================================================================


@pytest.mark.parametrize("state", ["available", "unavailable", "unresponsive", "notSetUp", "error",
                                   "unknownFutureValue"])
def test_a_connector_not_enabled_claims_no_block(tmp_path: Path, state: str) -> None:
    world = next(make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0, connector=ConnectorConfig(
        partner_state=state, android_mam_enabled=True))))  # type: ignore[arg-type]
    world.policy("low")
    result = world.sweep(WatchSettings(dm_blocked_users=True))
    assert result.ok and result.enforcement == OFF and result.active_blocks == 0
    assert episodes(world.store) == []
    assert world.notifier.kinds() == ["enforcement-off"]


def test_no_connector_at_all_claims_no_block(tmp_path: Path) -> None:
    world = next(make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0, connector=None)))
    world.policy("low")
    result = world.sweep()
    assert result.enforcement == OFF and episodes(world.store) == []


@pytest.mark.parametrize("status", [500, 403])
def test_a_failed_connector_read_changes_nothing(world: World, status: int) -> None:
    world.policy("low")
    world.sweep()
    before = open_ids(world.store)
    state = current_enforcement(world.store)
    assert before and state.state == ON
    world.notifier.take()

    fail_connector(world, status)
    result = world.sweep(at=T0 + timedelta(minutes=5))

    assert not result.ok and result.errors
    assert open_ids(world.store) == before  # nothing resolved, nothing opened
    after = current_enforcement(world.store)
    assert (after.state, after.version) == (state.state, state.version)  # not recorded as off, nor as on
    assert world.notifier.take() == []


@pytest.mark.parametrize("status", [500, 403])
def test_a_failed_connector_read_while_off_keeps_it_off_and_says_nothing(world: World, status: int) -> None:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    world.notifier.take()
    fail_connector(world, status)
    toggle(world, True)
    world.sweep(at=T0 + timedelta(minutes=5))
    assert current_enforcement(world.store).state == OFF
    assert world.notifier.take() == [] and episodes(world.store) == []


def test_the_first_sweep_after_a_restart_while_off_posts_no_second_notice(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    first = [notice_key(row) for kind, row in world.notifier.calls if kind.startswith("enforcement")]
    world.notifier.take()
    restarted = world.open_store()  # a new process: only the database carries over
    try:
        result = world.sweep(store=restarted, at=T0 + timedelta(minutes=5))
    finally:
        restarted.close()
    again = [(kind, notice_key(row)) for kind, row in world.notifier.calls]
    # the notice is queued again under the same outbox key: a no-op for the outbox, so nothing is posted twice
    assert result.enforcement == OFF and again == [("enforcement-off", first[0])]


def test_without_an_alert_channel_the_notice_is_skipped_and_nothing_breaks(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    result = run_threat_sweep(graph=world.clients.graph, defender=world.clients.defender, store=world.store,
                              notifier=world.notifier, settings=WatchSettings(), alert_channel=None, now=T0)
    assert result.ok and result.enforcement == OFF and world.notifier.take() == []
    toggle(world, True)
    result = run_threat_sweep(graph=world.clients.graph, defender=world.clients.defender, store=world.store,
                              notifier=world.notifier, settings=WatchSettings(), alert_channel=None,
                              now=T0 + timedelta(minutes=5))
    assert result.ok and result.enforcement == ON and world.notifier.take() == []  # no card, digest or edit


def test_a_channel_configured_during_a_stretch_off_gets_the_notice(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    run_threat_sweep(graph=world.clients.graph, defender=world.clients.defender, store=world.store,
                     notifier=world.notifier, settings=WatchSettings(), alert_channel=None, now=T0)
    world.sweep(at=T0 + timedelta(minutes=5))  # restarted with MAM_ALERT_CHANNEL set; still off
    assert "enforcement-off" in world.notifier.kinds()


def test_back_on_is_one_digest_and_resolutions_stay_below_the_threshold(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    world.notifier.take()
    toggle(world, True)
    result = world.sweep(WatchSettings(dm_blocked_users=False), at=T0 + timedelta(minutes=5))
    kinds = world.notifier.take()
    assert result.new_episodes > 1
    assert kinds.count("digest-resumed") == 1 and "opened" not in kinds and "resolved" not in kinds
    assert kinds.count("enforcement-on") == 1


def test_back_on_with_many_blocks_gone_meanwhile_is_one_resolved_digest(world: World) -> None:
    settings = WatchSettings(digest_threshold=1)
    world.policy("low")
    world.sweep(settings)
    assert len(open_ids(world.store)) > 1
    toggle(world, False)
    world.sweep(settings, at=T0 + timedelta(minutes=5))
    world.policy("high")  # meanwhile nothing is above the policy's maximum any more
    toggle(world, True)
    world.notifier.take()
    result = world.sweep(settings, at=T0 + timedelta(minutes=10))
    kinds = world.notifier.take()
    assert result.resolved_episodes > 1 and open_ids(world.store) == set()
    assert kinds.count("digest-resolved") == 1 and "resolved" not in kinds and "opened" not in kinds


def test_the_resumed_digest_announces_blocks_not_resolutions() -> None:
    episode = Episode(id=1, device_id="d", policy_id="p", state=OPEN, level="high", maximum="low", action="block",
                      policy_name="P", users="[]", apps="[]")
    text = digest_text("resumed", [episode, episode])
    card = text_of(digest_card("resumed", [episode, episode], SweepRun(id=3, started_at=T0), PORTALS["global"]))
    assert "resolved" not in text and "resolved" not in card and ":white_check_mark:" not in card


class _DiesOnce:
    """`people` raising once: the process dying (or the database failing) after record() committed the turn."""

    def __init__(self) -> None:
        self.armed = True
        self.real = threat_sweep.people

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise RuntimeError("killed after record()")
        return self.real(*args, **kwargs)


def _back_on_after_a_death(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    world.notifier.take()
    toggle(world, True)
    monkeypatch.setattr(threat_sweep, "people", _DiesOnce())
    with pytest.raises(RuntimeError):
        world.sweep(at=T0 + timedelta(minutes=5))
    assert current_enforcement(world.store).state == ON  # the turn was recorded before the death
    world.sweep(at=T0 + timedelta(minutes=10))
    return world.notifier.take()


def test_back_on_is_still_one_digest_when_the_sweep_that_saw_it_died(world: World,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _back_on_after_a_death(world, monkeypatch)
    assert "opened" not in kinds and kinds.count("digest-resumed") == 1


def test_the_notice_is_edited_back_on_even_when_the_sweep_that_saw_it_died(world: World,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _back_on_after_a_death(world, monkeypatch)
    assert "enforcement-on" in kinds


def test_warn_only_policies_are_not_said_to_block_while_off(world: World) -> None:
    world.policy("low", "warn")
    toggle(world, False)
    result = world.sweep()
    assert result.suppressed == 0  # devices whose app would be blocked: a warning blocks nothing
    row = current_enforcement(world.store)
    _text, blocks = enforcement_notice(row)
    assert "would be blocked" not in text_of(blocks) and "would be blocked" not in result.summary()


def test_two_sweeps_recording_off_at_once_post_one_notice(store: Store) -> None:
    seen = Reading(OFF, reason="toggle off")
    first = record(store, seen, at=T0, channel="C1")
    second = record(store, seen, at=T0, channel="C1")
    assert first.went_off and not second.went_off and not second.notice_due


@dataclass
class _RacingStore(Store):
    """A second sweep that looked for the enforcement row before the first one inserted it."""

    def session(self) -> Any:
        @contextmanager
        def stale() -> Iterator[Any]:
            with Store.session(self) as session:
                real = session.get

                def get(model: Any, ident: Any, **kw: Any) -> Any:
                    return None if model is Enforcement else real(model, ident, **kw)

                session.get = get  # type: ignore[method-assign, assignment]
                yield session

        return stale()


def test_two_first_ever_sweeps_racing_to_create_the_enforcement_row(store: Store) -> None:
    first = record(store, Reading(OFF, reason="toggle off"), at=T0, channel="C1")
    assert first.went_off
    racing = _RacingStore(store.engine)
    second = record(racing, Reading(OFF, reason="toggle off"), at=T0, channel="C1")
    assert not second.went_off


# ==== 2. Security: hostile report text, secrets, the zip ==================================================


def _hostile_report() -> bytes:
    long_name = "A" * 5000
    rows = [
        ["Outlook policy", "adele.vance@contoso.com", HOSTILE, HOSTILE, DEV_A, HOSTILE, HOSTILE, HOSTILE, "Android",
         "Unmanaged", ""],
        [HOSTILE, "adele.vance@contoso.com", "Adele", long_name, DEV_A, long_name, "g", "m", "Android", "", ""],
        ["Baseline", "adele.vance@contoso.com", "Adele", "Outlook", DEV_A, "Pixel", "g", "m", "Android", "", ""],
        ["baseline", "adele.vance@contoso.com", "Adele", f"App {BIDI}x", DEV_A, "Pixel", "g", "m", "Android", "", ""],
    ]
    return make_zip(HEADER, rows)


def test_hostile_report_names_reach_status_inert_and_cut(store: Store) -> None:
    run = refresh_with(store, FakeGraph(report=_hostile_report()))
    assert run.ok and run.source == "export"
    assert run.listed("unknown_apps") and run.listed("unknown_policies") and run.listed("duplicate_policies")
    shown = index_text(SimpleNamespace(index=run))  # type: ignore[arg-type]
    assert isinstance(shown, Mrkdwn)
    assert "<!channel>" not in shown and "<@U1>" not in shown and BIDI not in shown
    assert "&lt;!channel&gt;" in shown and len(shown) < 1000
    with store.session() as session:
        rows = list(session.exec(select(IndexRow)))
    assert all(len(r.device_name) <= 256 and len(r.app_name) <= 256 for r in rows)


def test_hostile_report_names_reach_me_inert(store: Store) -> None:
    from commands.me import me_blocks
    from workflows.me import my_view

    refresh_with(store, FakeGraph(report=_hostile_report()))
    with store.session() as session:
        session.add(Enforcement(state=ON))
        session.commit()
    view = my_view(store, Identity(ADELE.lower(), "Adele", "adele.vance@contoso.com"))
    assert view.devices
    blocks = me_blocks(view, T0, card="abc")
    body = text_of(blocks)
    assert "<!channel>" not in body and "<@U1>" not in body and BIDI not in body
    for block in blocks:
        text = block.get("text", {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        assert len(text) <= 3000


def test_the_runs_lists_of_unknown_names_are_bounded(store: Store) -> None:
    rows = [["Outlook policy", "adele.vance@contoso.com", "Adele", f"{n:05d}" + "x" * 3000, DEV_A, "Pixel", "g",
             "m", "Android", "", ""] for n in range(200)]
    run = refresh_with(store, FakeGraph(report=make_zip(HEADER, rows)))
    listed = run.listed("unknown_apps")
    assert len(listed) <= 100 and all(len(name) <= 256 for name in listed)


def _signed_world(tmp_path: Path, **config: Any) -> World:
    return next(make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0, **config)))


def _signatures(world: World) -> list[str]:
    return [job.signature for job in world.tenant.exports._jobs.values()]


def test_the_signed_link_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    world = _signed_world(tmp_path)
    world.policy("low")
    with caplog.at_level(logging.DEBUG):
        result = indexed_sweep(world)
    assert result.ok and result.source == "export"
    secrets = _signatures(world)
    assert secrets
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not [s for s in secrets if s in logged]


def test_a_failed_download_says_why_without_the_signature(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    world = _signed_world(tmp_path, fail={"GET /sandbox-downloads": [500] * 10})
    world.policy("low")
    with caplog.at_level(logging.DEBUG):
        result = indexed_sweep(world)
    run = current_run(world.store)
    assert result.ok and run is not None and run.source == "paged"
    assert "couldn't be downloaded" in run.fallback_reason
    secrets = _signatures(world)
    assert secrets
    for where in (caplog.text, run.fallback_reason, run.error, result.summary()):
        assert not [s for s in secrets if s in where]


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8-sig")


GOOD_CSV = _csv(HEADER, [list(r) for r in REPORT])


@pytest.mark.parametrize("members", [
    {"a.csv": GOOD_CSV, "b.csv": GOOD_CSV},  # two reports: which one?
    {"report.txt": GOOD_CSV},  # no CSV member
    {"report.csv/": b""},  # a folder named like one
    {},  # an empty zip
], ids=["two-csv", "not-csv", "folder", "empty"])
def test_a_zip_without_exactly_one_csv_falls_back(store: Store, members: dict[str, bytes]) -> None:
    run = refresh_with(store, FakeGraph(report=_zip(members)))
    assert run.ok and run.source == "paged" and "one CSV" in run.fallback_reason


def test_a_zip_with_one_csv_and_a_readme_is_read(store: Store) -> None:
    run = refresh_with(store, FakeGraph(report=_zip({"readme.txt": b"hello", "r.csv": GOOD_CSV})))
    assert run.ok and run.source == "export" and run.kept == 7


def _forged_size(data: bytes, size: int) -> bytes:
    forged = bytearray(data)
    central = forged.find(b"PK\x01\x02")
    local = forged.find(b"PK\x03\x04")
    struct.pack_into("<I", forged, central + 24, size)
    struct.pack_into("<I", forged, local + 22, size)
    return bytes(forged)


def test_a_zip_bomb_member_is_refused_before_it_is_read() -> None:
    bomb = _forged_size(_zip({"r.csv": GOOD_CSV}), 0xFFFFFFF0)  # says 4 GB uncompressed
    with pytest.raises(ReportError), report_rows(io.BytesIO(bomb)) as rows:
        for _ in rows:
            pass


@pytest.mark.parametrize("content", [
    pytest.param(_csv(HEADER, [["Outlook policy", "adele.vance@contoso.com", "Adele", "Outlook", DEV_A,
                                "x" * 1_000_000, "g", "m", "Android", "", ""]]), id="1MB-field"),
    pytest.param("\n".join([",".join(HEADER), "Outlook policy,adele@contoso.com,Ad\xe9le,Outlook," + DEV_A
                            + ",Pixel,g,m,Android,,"]).encode("latin-1"), id="latin-1"),
    pytest.param(b"\xff\xfe" + ",".join(HEADER).encode("utf-16-le"), id="utf-16"),
])
def test_unreadable_csv_falls_back_to_the_paged_read(store: Store, content: bytes) -> None:
    run = refresh_with(store, FakeGraph(report=_zip({"r.csv": content})))
    assert run.ok and run.source == "paged" and "couldn't be read" in run.fallback_reason


def test_nul_bytes_in_the_report_are_stored_and_never_shown(store: Store) -> None:
    rows = [["Outlook policy", "adele.vance@contoso.com", "Adele", "Outlook", DEV_A, "Pix\x00el", "g", "m",
             "Android", "", ""]]
    run = refresh_with(store, FakeGraph(report=make_zip(HEADER, rows)))
    assert run.ok and run.source == "export" and run.kept == 1


def test_nul_bytes_in_the_report_on_postgres_fall_back_or_are_dropped() -> None:
    from tests.databases import postgres_database

    with postgres_database() as url:
        pg = create_store(url)
        try:
            rows = [["Outlook policy", "adele.vance@contoso.com", "Adele", "Outlook", DEV_A, "Pix\x00el", "g", "m",
                     "Android", "", ""]]
            run = refresh_with(pg, FakeGraph(report=make_zip(HEADER, rows)))
            assert run.ok
        finally:
            pg.close()


def test_an_empty_export_does_not_replace_a_full_index(world: World) -> None:
    world.policy("low")
    indexed_sweep(world)
    before = open_ids(world.store)
    assert before
    world.notifier.take()
    # Intune's export answers with the header only (a glitch on its side); the tenant hasn't changed
    # ... and the paged read that would confirm it fails: the index in use stays
    empty = refresh_index(source=FakeGraph(report=make_zip(HEADER, []), pages_fail_after=0), store=world.store,
                          policies=[], now=T0 + timedelta(minutes=1), sleep=lambda s: None)
    assert not empty.ok and "confirming with the paged read" in empty.fallback_reason
    result = indexed_sweep(world, T0 + timedelta(minutes=5), dm_blocked_users=True)
    assert result.resolved_episodes == 0 and open_ids(world.store) == before


def test_a_header_only_export_on_a_first_refresh_is_an_empty_index(store: Store) -> None:
    run = refresh_with(store, FakeGraph(report=make_zip(HEADER, [])))
    assert run.ok and run.source == "export" and run.kept == 0 and list(iter_registrations(store)) == []


# ---- /mam me: who is asking --------------------------------------------------------------------------------


def _Directory(users: list[User]) -> FakeGraph:
    return FakeGraph(users=users)


def test_a_slack_email_two_entra_users_answer_to_identifies_nobody(store: Store) -> None:
    directory = _Directory([User(id="A" * 8, displayName="A", mail="ana@contoso.com", userPrincipalName="a@x"),
                            User(id="B" * 8, displayName="B", mail=None, userPrincipalName="ANA@contoso.com")])
    who = identify("Ana@Contoso.com", EntraUsers(store, directory, T0))
    assert not isinstance(who, Identity) and who.why == "ambiguous"


@pytest.mark.parametrize("email", ["", "   ", "not-an-email", "a@b.c\u202e", "x" * 400 + "@contoso.com"])
def test_odd_slack_emails_identify_nobody(store: Store, email: str) -> None:
    directory = _Directory(list(DIRECTORY))
    assert not isinstance(identify(email, EntraUsers(store, directory, T0)), Identity)


def test_me_does_not_show_a_previous_owner_of_the_mail(store: Store) -> None:
    old = User(id="11111111-0000-0000-0000-000000000000", displayName="Old", mail="ana@contoso.com",
               userPrincipalName="old@contoso.com")
    new = User(id="22222222-0000-0000-0000-000000000000", displayName="New", mail="ana@contoso.com",
               userPrincipalName="new@contoso.com")
    directory = _Directory([old])
    first = identify("ana@contoso.com", EntraUsers(store, directory, T0))
    assert isinstance(first, Identity) and first.user_id == old.id
    directory.users = [new]  # the mail now belongs to someone else (old left; the address was reused)
    # as `/mam me` asks: trusting an answer for minutes, not the index's days
    later = identify("ana@contoso.com", EntraUsers(store, directory, T0 + timedelta(days=2), recheck=ME_RECHECK))
    assert isinstance(later, Identity) and later.user_id == new.id


# ==== 3. Survival ===================================================================================


def test_a_refresh_killed_half_way_keeps_the_previous_index(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = refresh_with(store, FakeGraph(report=make_zip(HEADER, REPORT)))
    monkeypatch.setattr(index_store, "INSERT_CHUNK", 2)
    seen: list[int | None] = []
    real = index_store.Writer.flush
    calls = {"n": 0}

    def dying_flush(self: Any) -> None:
        calls["n"] += 1
        run = current_run(store)
        seen.append(run.id if run else None)  # what a reader sees while the refresh writes
        if calls["n"] == 2:
            raise RuntimeError("killed half-way")
        real(self)

    monkeypatch.setattr(index_store.Writer, "flush", dying_flush)
    with pytest.raises(RuntimeError):
        refresh_with(store, FakeGraph(report=make_zip(HEADER, REPORT)), at=T0 + timedelta(hours=1))
    assert set(seen) == {first.id}
    assert current_run(store) == first and len(list(iter_registrations(store))) == first.kept
    with store.session() as session:
        generations = set(session.exec(select(IndexRow.generation)))
        failed = session.exec(select(IndexRun).where(IndexRun.id != first.id)).one()
    assert generations == {first.id} and not failed.ok and "killed half-way" in failed.error


def test_two_refreshes_at_once_each_write_their_own_generation(store: Store) -> None:
    inner: list[IndexRun] = []

    class Nested(FakeGraph):
        def download(self, url: str, into: Any) -> int:
            if not inner:  # while this refresh downloads, another replica refreshes from start to end
                inner.append(refresh_with(store, FakeGraph(report=make_zip(HEADER, REPORT)),
                                          at=T0 + timedelta(minutes=1)))
            return super().download(url, into)

    outer = refresh_with(store, Nested(report=make_zip(HEADER, REPORT)))
    assert outer.ok and inner[0].ok and outer.kept == inner[0].kept == 7
    current = current_run(store)
    assert current is not None and current.id == max(outer.id or 0, inner[0].id or 0)
    assert len(list(iter_registrations(store))) == 7
    with store.session() as session:
        for run in (outer, inner[0]):
            rows = session.exec(select(IndexRow).where(IndexRow.generation == run.id)).all()
            assert len(rows) == 7


def test_a_sweep_whose_index_is_dropped_while_it_reads_changes_nothing(world: World,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    world.policy("low")
    indexed_sweep(world)
    before = open_ids(world.store)
    assert before
    world.notifier.take()
    monkeypatch.setattr(index_store, "READ_CHUNK", 2)

    class Dropping(IndexedReader):
        def registrations(self) -> Iterator[Any]:
            rows = super().registrations()
            yield next(rows)
            assert self.run is not None  # two refreshes finished meanwhile: this generation is deleted
            index_store.drop_generation(self.store, self.run.id or 0)
            yield from rows

    result = indexed_sweep(world, T0 + timedelta(minutes=5), reader_class=Dropping)
    assert not result.ok and "replaced while the bot read it" in " ".join(result.errors)
    assert open_ids(world.store) == before and world.notifier.take() == []


class _Plans:
    def __init__(self, fail_on: str | None, error: Exception) -> None:
        self.fail_on, self.error = fail_on, error

    def iter_user_ids_with_plan(self, plan: str) -> Iterator[str]:
        yield "u1"
        if plan == self.fail_on:
            raise self.error
        yield "u2"


INTUNE = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5"
DEFENDER = "bfc1bbd9-981b-4f71-9b82-17c35fd0e2a4"


@pytest.mark.parametrize("error", [ServiceUnavailable("Graph had a problem (503)", status=503),
                                   PermissionDenied("refused", permission="User.Read.All", where="x", status=403)])
def test_a_licence_refresh_failing_half_way_keeps_the_previous_table(store: Store, error: Exception) -> None:
    good = refresh_licences(reader=_Plans(None, error), store=store, intune_plans=[INTUNE], defender_plans=[DEFENDER],
                            now=T0)
    assert good.ok
    failed = refresh_licences(reader=_Plans(DEFENDER, error), store=store, intune_plans=[INTUNE],
                              defender_plans=[DEFENDER], now=T0 + timedelta(days=1))
    assert not failed.ok
    with store.session() as session:
        held = {(r.user_id, r.intune, r.defender) for r in session.exec(select(UserLicence))}
        runs = session.exec(select(LicenceRun)).all()
    assert held == {("u1", True, True), ("u2", True, True)} and len(runs) == 2


class _LicensedLater:
    """The tenant's real plan holders, less one user whose licence was assigned after this read."""

    def __init__(self, graph: Any, later: str) -> None:
        self.graph, self.later = graph, later.lower()

    def iter_user_ids_with_plan(self, plan: str) -> list[str]:
        return [u for u in self.graph.iter_user_ids_with_plan(plan) if u.lower() != self.later]


def test_a_user_licensed_after_the_last_licence_read_is_not_called_unlicensed(world: World) -> None:
    from bot.sandbox.cast import ALEX, CAST_USERS
    from bot.settings import DEFENDER_PLANS, INTUNE_PLANS
    from bot.store.watch import PENDING, OnboardingCase

    alex = CAST_USERS[ALEX].id.lower()
    holders = set(world.clients.graph.iter_user_ids_with_plan(INTUNE_PLANS[0]))
    assert alex in {h.lower() for h in holders}  # Microsoft says Alex holds the plans now
    world.policy("low")
    world.tenant.set_onboarded(aad("alex-s23"), "CanBeOnboarded")  # Alex's phone waits for Defender
    ran = refresh_licences(reader=_LicensedLater(world.clients.graph, alex), store=world.store,
                           intune_plans=INTUNE_PLANS, defender_plans=DEFENDER_PLANS, now=T0 - timedelta(hours=3))
    assert ran.ok
    world.sweep()
    with world.store.session() as session:
        case = session.get(OnboardingCase, alex)
    assert case is not None and case.state == PENDING


# ==== 4. Microsoft's API ============================================================================


def _recording(world_tmp: Path) -> tuple[Any, list[httpx.Request], Any]:
    from bot.sandbox import SandboxTenant

    tenant = SandboxTenant(SandboxConfig(now=T0, clock=lambda: T0,
                                         connector=ConnectorConfig(android_mam_enabled=True)))
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return tenant.handle(request)

    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None, database_url="sqlite://")
    clients = build_clients(settings, transport=httpx.MockTransport(handle))
    return clients, seen, tenant


def test_the_export_request_is_microsofts(tmp_path: Path) -> None:
    assert set(SELECT) <= set(MICROSOFT_COLUMNS)  # spelled exactly as Microsoft lists them
    clients, seen, _ = _recording(tmp_path)
    try:
        job = clients.graph.create_export_job("MAMAppProtectionStatus", SELECT)
        clients.graph.get_export_job(job.id)
    finally:
        clients.close()
    post, get = (r for r in seen if "exportJobs" in r.url.path)
    assert post.method == "POST" and post.url.path == "/beta/deviceManagement/reports/exportJobs"
    assert json.loads(post.content) == {"reportName": "MAMAppProtectionStatus", "format": "csv",
                                        "localizationType": "ReplaceLocalizableValues", "select": list(SELECT)}
    assert get.method == "GET"
    assert get.url.raw_path.decode() == f"/beta/deviceManagement/reports/exportJobs('{job.id}')"


def test_the_licence_query_is_microsofts(tmp_path: Path) -> None:
    clients, seen, _ = _recording(tmp_path)
    try:
        list(clients.graph.iter_user_ids_with_plan(INTUNE.upper()))
    finally:
        clients.close()
    pages = [r for r in seen if r.url.path == "/v1.0/users"]
    assert pages
    first = pages[0].url.params
    assert first["$filter"] == (f"assignedPlans/any(a:a/servicePlanId eq {INTUNE} and "
                                "a/capabilityStatus eq 'Enabled')")
    assert first["$count"] == "true" and first["$select"] == "id" and first["$top"] == "999"
    assert all(p.headers.get("ConsistencyLevel") == "eventual" for p in pages)  # every page, next links too


def test_defender_is_asked_for_android_only_and_registrations_expand_intended_policies(tmp_path: Path) -> None:
    clients, seen, _ = _recording(tmp_path)
    try:
        list(clients.defender.iter_android_machines())
        list(clients.graph.iter_registration_items(applied_policies=True))
    finally:
        clients.close()
    machines = [r for r in seen if r.url.path.endswith("/api/machines")]
    assert machines and machines[0].url.params["$filter"] == "osPlatform eq 'Android'"
    registrations = [r for r in seen if r.url.path.endswith("managedAppRegistrations")]
    assert registrations and registrations[0].url.params["$expand"] == "intendedPolicies"


def test_unknown_is_what_nobody_has_read_yet(store: Store) -> None:
    assert current_enforcement(store).state == UNKNOWN
