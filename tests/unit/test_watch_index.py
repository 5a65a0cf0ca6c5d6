"""The sweep on the registrations index: the first sweep builds it from Intune's report export (the cold
cycle), later ones read only Defender and the policies (warm); a refused export falls back to the paged
read and says so; users without a licence are neither nudged nor called blocked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.sandbox import SandboxConfig
from bot.sandbox.cast import CAST_USERS, ISAIAH, NESTOR
from bot.settings import DEFENDER_PLANS, INTUNE_PLANS
from bot.store.index import EXPORT, PAGED
from bot.store.watch import PENDING, UNLICENSED, OnboardingCase
from tests.unit.test_threat_sweep import T0, World, make_world
from workflows.entra_users import EntraUsers
from workflows.index_store import current_run
from workflows.licences import refresh_licences
from workflows.onboarding import WatchSettings
from workflows.registrations_index import refresh_index
from workflows.tenant_reader import IndexedReader, MicrosoftReader
from workflows.threat_sweep import SweepResult, run_threat_sweep

EXPORT_ROUTE = "POST /beta/deviceManagement/reports/exportJobs"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0))


def indexed_sweep(world: World, at: Any = T0, **settings: Any) -> tuple[SweepResult, IndexedReader]:
    graph, defender = world.clients.graph, world.clients.defender
    live = MicrosoftReader(graph, defender)

    def refresh(policies: list[Any]) -> Any:
        return refresh_index(source=graph, store=world.store, policies=policies, now=at, sleep=lambda s: None,
                             users=EntraUsers(world.store, graph, at))

    reader = IndexedReader(live, world.store, refresh)
    result = run_threat_sweep(reader=reader, store=world.store, notifier=world.notifier,
                              settings=WatchSettings(**settings), alert_channel="C0ALERTS", now=at)
    return result, reader


def test_the_first_sweep_builds_the_index_and_blocks_the_same_as_a_live_read(world: World) -> None:
    world.policy("low")
    live = world.sweep()
    live_blocks = world.blocked_devices()

    result, reader = indexed_sweep(world, T0 + timedelta(minutes=5))

    assert result.ok and result.source == EXPORT and reader.built is not None  # the cold cycle
    assert world.blocked_devices() == live_blocks and result.active_blocks == live.active_blocks
    assert result.pending_onboarding == live.pending_onboarding


def test_a_warm_sweep_reads_no_registrations(world: World) -> None:
    world.policy("low")
    indexed_sweep(world)
    paths: list[str] = []
    world.clients._http.event_hooks["request"].append(lambda request: paths.append(request.url.path))

    result, reader = indexed_sweep(world, T0 + timedelta(minutes=5))

    assert reader.built is None and result.source == EXPORT  # the index was there: no export, no paging
    assert paths and not [p for p in paths if "managedAppRegistrations" in p or "exportJobs" in p]
    assert [p for p in paths if p.endswith("/api/machines")]  # Defender, read every sweep


def test_a_refused_export_falls_back_to_the_paged_read_and_says_why(tmp_path: Path) -> None:
    world = next(make_world(tmp_path, SandboxConfig(now=T0, clock=lambda: T0, forbid={EXPORT_ROUTE})))
    world.policy("low")

    result, _ = indexed_sweep(world)

    run = current_run(world.store)
    assert result.ok and result.source == PAGED and run is not None
    assert "ReadWrite" in run.fallback_reason
    assert result.active_blocks > 0


def test_users_without_a_licence_are_kept_apart_and_never_nudged(world: World) -> None:
    world.policy("low")
    licences = refresh_licences(reader=world.clients.graph, store=world.store, intune_plans=INTUNE_PLANS,
                                defender_plans=DEFENDER_PLANS, now=T0)
    assert licences.ok

    result = world.sweep(WatchSettings(nudge_unregistered=True))

    with world.store.session() as session:
        cases = {c.user_id: c for c in session.exec(select(OnboardingCase))}
    unlicensed = {CAST_USERS[i].id.lower() for i in (ISAIAH, NESTOR)}
    # Isaiah (no Intune licence) waits for Defender on his phone: kept apart, never pending, so never nudged
    assert cases[CAST_USERS[ISAIAH].id.lower()].state == UNLICENSED
    assert not [c for c in cases.values() if c.state == PENDING and c.user_id in unlicensed]
    assert result.unlicensed == sum(1 for c in cases.values() if c.state == UNLICENSED) >= 1
    assert "without a licence" in result.summary()

    licensed = refresh_licences(reader=_Reader(CAST_USERS[ISAIAH].id), store=world.store, intune_plans=INTUNE_PLANS,
                            defender_plans=DEFENDER_PLANS, now=T0)
    assert licensed.ok
    world.sweep(WatchSettings(nudge_unregistered=True), at=T0 + timedelta(minutes=5))
    with world.store.session() as session:
        again = session.get(OnboardingCase, CAST_USERS[ISAIAH].id.lower())
    assert again is not None and again.state == PENDING and again.round == 1  # licensed now: nudged like anyone


class _Reader:
    """Only this user holds the plans, as far as this reader says."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def iter_user_ids_with_plan(self, service_plan_id: str) -> list[str]:
        return [self.user_id]


def test_someone_licensed_since_the_last_listing_is_reread_before_being_called_unlicensed(world: World) -> None:
    world.policy("low")
    isaiah = CAST_USERS[ISAIAH].id
    licences = refresh_licences(reader=world.clients.graph, store=world.store, intune_plans=INTUNE_PLANS,
                                defender_plans=DEFENDER_PLANS, now=T0)
    assert licences.ok  # the listing: Isaiah holds no Intune plan
    world.tenant.set_licence(isaiah, "INTUNE_A", status="Enabled")  # licensed after the listing
    settings = WatchSettings(intune_plans=INTUNE_PLANS, defender_plans=DEFENDER_PLANS)

    result = world.sweep(settings)

    with world.store.session() as session:
        case = session.get(OnboardingCase, isaiah.lower())
    assert case is not None and case.state == PENDING and result.unlicensed == 0  # re-read: licensed, nudged
