"""The watch tells the truth about enforcement: with Intune not evaluating Defender's signal on Android
(the connector's toggle off, or its heartbeat stale), nobody is told they are blocked; when it comes
back, what was true all along is one digest; nudges that promise a setup screen are held meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox import SandboxConfig
from bot.sandbox.config import ConnectorConfig
from bot.store.index import OFF, ON
from bot.store.watch import OPEN, Episode, OnboardingCase
from tests.unit.test_threat_sweep import T0, World, make_world
from workflows.connectors import PORTALS
from workflows.enforcement import current_enforcement, notice_key, notice_post_key, reading, record
from workflows.onboarding import WatchSettings, run_onboarding_nudges

MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, SandboxConfig(now=T0))


def toggle(world: World, on: bool) -> None:
    world.tenant.set_connector(androidMobileApplicationManagementEnabled=on)


def episodes(world: World) -> list[Episode]:
    with world.store.session() as session:
        from sqlmodel import select

        return list(session.exec(select(Episode)))


def test_toggle_off_claims_no_block_anywhere_and_says_why(world: World) -> None:
    world.policy("low")
    toggle(world, False)

    result = world.sweep(WatchSettings(dm_blocked_users=True))

    assert result.ok and result.enforcement == OFF
    assert result.active_blocks == 0 and result.suppressed > 0  # counted, never claimed
    assert episodes(world) == []
    assert world.notifier.kinds() == ["enforcement-off"]  # the notice, and no card, digest or DM
    row = current_enforcement(world.store)
    assert row.state == OFF and "Android app protection evaluation" in row.reason and row.fix
    assert "threat-level enforcement is OFF" in result.summary()


def test_the_notice_is_posted_once_and_edited_in_place(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    first = current_enforcement(world.store)
    assert notice_key(first) == notice_post_key(first)  # the first version posts

    world.notifier.take()
    world.sweep(at=T0 + timedelta(minutes=5))
    # nothing changed: the notice is queued again under the same outbox key, which the outbox ignores
    assert [notice_key(row) for _, row in world.notifier.calls] == [notice_key(first)]

    toggle(world, True)
    world.sweep(at=T0 + timedelta(minutes=10))
    back = current_enforcement(world.store)
    assert back.state == ON and back.notice_round == first.notice_round
    assert notice_key(back) != notice_post_key(back)  # an edit of the same message
    assert "enforcement-on" in world.notifier.kinds()


def test_back_on_is_one_digest_not_a_card_per_device(world: World) -> None:
    world.policy("low")
    toggle(world, False)
    world.sweep()
    world.notifier.take()

    toggle(world, True)
    result = world.sweep(at=T0 + timedelta(minutes=5))

    kinds = world.notifier.kinds()
    assert result.new_episodes > 1
    assert kinds.count("digest-resumed") == 1 and "opened" not in kinds
    assert all(e.digest_key for e in episodes(world))


def test_open_episodes_are_frozen_while_off_and_carry_on_after(world: World) -> None:
    world.policy("low")
    world.sweep()
    before = {e.id for e in episodes(world) if e.state == OPEN}
    assert before
    world.notifier.take()

    toggle(world, False)
    world.sweep(at=T0 + timedelta(minutes=5))
    assert {e.id for e in episodes(world) if e.state == OPEN} == before  # not resolved by a blind sweep
    assert world.notifier.take() == ["enforcement-off"]

    toggle(world, True)
    world.sweep(at=T0 + timedelta(minutes=10))
    assert {e.id for e in episodes(world) if e.state == OPEN} == before  # the same episodes, no new cards
    assert "opened" not in world.notifier.kinds()


def test_a_stale_heartbeat_is_enforcement_off(tmp_path: Path) -> None:
    stale = ConnectorConfig(android_mam_enabled=True, heartbeat_age=timedelta(days=9))
    world = next(make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0, connector=stale)))
    world.policy("low")

    result = world.sweep()

    assert result.enforcement == OFF and result.active_blocks == 0
    assert "unresponsiveness threshold" in current_enforcement(world.store).reason


def test_reading_is_on_only_when_every_deciding_check_passes() -> None:
    from bot.microsoft.models import MtdConnector

    portals = PORTALS["global"]
    healthy = MtdConnector.model_validate({
        "id": "x", "partnerState": "enabled", "lastHeartbeatDateTime": T0 - timedelta(hours=1),
        "partnerUnresponsivenessThresholdInDays": 7, "androidMobileApplicationManagementEnabled": True})
    assert reading(healthy, now=T0, portals=portals).state == ON
    assert reading(healthy.model_copy(update={"partnerState": "available"}), now=T0, portals=portals).state == OFF
    off = reading(healthy.model_copy(update={"androidMobileApplicationManagementEnabled": False}), now=T0,
                  portals=portals)
    assert off.state == OFF and off.link.startswith("https://intune.microsoft.com")
    assert reading(None, now=T0, portals=portals).state == OFF  # no connector at all


def test_two_sweeps_recording_the_same_change_announce_it_once(world: World) -> None:
    from workflows.enforcement import Reading

    seen = Reading(OFF, reason="toggle off")
    first = record(world.store, seen, at=T0, channel="C1")
    second = record(world.store, seen, at=T0, channel="C1")
    assert first.went_off and first.notice_due
    assert not second.notice_due  # the same reading again: nothing to announce


def test_nudges_are_held_while_enforcement_is_off(world: World) -> None:
    world.policy("low")
    world.sweep(at=MONDAY_NOON)
    with world.store.session() as session:
        from sqlmodel import select

        pending = [c for c in session.exec(select(OnboardingCase)) if c.state == "pending"]
    assert pending

    class Nudger:
        sent: list[str] = []

        def nudge(self, key: str, slack_user: str, case: OnboardingCase, number: int, of: int) -> None:
            self.sent.append(key)

        def thank(self, key: str, slack_user: str, case: OnboardingCase) -> None:
            self.sent.append(key)

    nudger = Nudger()
    result = run_onboarding_nudges(store=world.store, users=world.clients.graph, directory=None, notifier=nudger,
                                   settings=WatchSettings(timezone="UTC"), now=MONDAY_NOON,
                                   hold="threat-level enforcement is off in Intune")
    assert nudger.sent == [] and result.held == len(pending)
    assert "held (threat-level enforcement is off in Intune)" in result.summary()
