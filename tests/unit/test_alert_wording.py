"""Words that match the action: a block, a wipe (the app's work data is removed) and a warning each have their
own card and DM; a card flags Defender data over a day old; `/mam status` says where the index came from."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.store.index import EXPORT, PAGED, IndexRun, LicenceRun
from bot.store.watch import OPEN, RESOLVED, Episode
from commands.alerts import alert_card, alert_text, blocked_dm, portals_for, stale_note, unblocked_dm
from commands.status import index_text, licences_text
from tests.scenario.conftest import block_text
from workflows.status import Status

NOW = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def episode(action: str, *, state: str = OPEN, seen: timedelta = timedelta(hours=2), **extra: object) -> Episode:
    return Episode(id=7, device_id="d1", policy_id="p1", open_key="d1|p1", state=state, device_name="Pixel 8",
                   device_model="Google Pixel 8", policy_name="Android BYOD", maximum="low", action=action,
                   level="high", users=json.dumps([{"id": "u1", "name": "Ana", "mail": "ana@contoso.example"}]),
                   apps=json.dumps(["com.microsoft.office.outlook"]), opened_at=NOW, last_seen_at=NOW,
                   defender_last_seen=datetime.now(UTC) - seen, resolution="back within the limit (x)", **extra)


def test_block_wipe_and_warn_each_have_their_own_card() -> None:
    portals = portals_for("global")
    block = block_text(alert_card(episode("block"), portals))
    wipe = block_text(alert_card(episode("wipe"), portals))
    warn = block_text(alert_card(episode("warn"), portals))
    assert "App blocked: Pixel 8" in block and "can't open Outlook" in block
    assert "App data wiped: Pixel 8" in wipe and "had the work data removed from Outlook" in wipe
    assert "App warning: Pixel 8" in warn and "sees a warning (and can go on)" in warn
    assert "blocked" not in warn.lower().replace("app blocked", "")
    assert alert_text(episode("wipe")).startswith("Wiped:") and alert_text(episode("warn")).startswith("Warned:")
    assert alert_text(episode("blockWhenSettingIsSupported")).startswith("Blocked:")


def test_block_wipe_and_warn_each_have_their_own_dm() -> None:
    block, wipe, warn = (str(blocked_dm(episode(a))) for a in ("block", "wipe", "warn"))
    assert "is blocked" in block and "lets you in at its next check" in block
    assert "removes the work data" in wipe and "personal data is not touched" in wipe and "blocked" not in wipe
    assert "sign in to the app again" in wipe
    assert "warning" in warn and "you can still use it" in warn and "blocked" not in warn
    assert "sign in to the app again to get your work data back" in str(unblocked_dm(episode("wipe",
                                                                                             state=RESOLVED)))
    assert "no longer warns you" in str(unblocked_dm(episode("warn", state=RESOLVED)))


def test_a_card_flags_defender_data_older_than_a_day() -> None:
    assert stale_note(episode("block", seen=timedelta(hours=20))) is None
    note = stale_note(episode("block", seen=timedelta(days=3, hours=1)))
    assert note is not None and "3 days ago" in str(note) and "out of date" in str(note)
    assert "out of date" in block_text(alert_card(episode("block", seen=timedelta(days=3)), portals_for("global")))


def status(**kwargs: object) -> Status:
    return Status(leader=None, leader_until=None, jobs=[], last_sweep=None, active_blocks=0, pending_onboarding=0,
                  nudges_sent_7d=0, open_requests=0, outbox_pending=0, **kwargs)  # type: ignore[arg-type]


def test_status_says_which_read_built_the_index_and_why() -> None:
    assert "not built yet" in str(index_text(status()))
    export = IndexRun(id=1, started_at=NOW, finished_at=NOW, source=EXPORT, ok=True, kept=240,
                      no_device_id=3, duplicate_policies=json.dumps(["BYOD <!channel>"]))
    text = str(index_text(status(index=export)))
    assert "240 registrations from Intune's report export" in text and "3 registrations without an Entra" in text
    assert "&lt;!channel&gt;" in text  # a policy name is outside text: escaped
    paged = IndexRun(id=2, started_at=NOW, finished_at=NOW, source=PAGED, ok=True, kept=240,
                     fallback_reason="the app lacks DeviceManagementApps.ReadWrite.All")
    assert "paged registrations read (fallback: the app lacks DeviceManagementApps.ReadWrite.All)" in str(
        index_text(status(index=paged)))


def test_status_says_licences_were_not_checked_until_they_were() -> None:
    assert "not checked yet" in str(licences_text(status()))
    run = LicenceRun(id=1, started_at=NOW, finished_at=NOW, ok=True, intune_users=90, defender_users=80)
    text = str(licences_text(status(licences=run, unlicensed=4)))
    assert "90 users with Intune" in text and "4 users waiting without one (not nudged)" in text


def test_an_index_three_intervals_old_is_a_warning_on_the_status_card() -> None:
    from workflows.status import stale_index

    every = timedelta(minutes=60)
    fresh = IndexRun(id=1, started_at=NOW, finished_at=NOW - timedelta(hours=2), source=EXPORT, ok=True)
    old = IndexRun(id=1, started_at=NOW, finished_at=NOW - timedelta(hours=5), source=EXPORT, ok=True)
    assert stale_index(None, NOW, every) == "" and stale_index(fresh, NOW, every) == ""
    assert "registrations index: 5 h old" in stale_index(old, NOW, every)
