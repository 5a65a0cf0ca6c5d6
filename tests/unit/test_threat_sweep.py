"""The threat sweep against crafted sandbox tenants: what blocks, what waits for Defender, and that
every episode is announced once across sweeps, restarts and leaders."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.clock import as_utc
from bot.microsoft import MicrosoftClients, build_clients
from bot.outbox import Outbox
from bot.sandbox import SEED_POLICY_ID, SandboxConfig, SandboxTenant
from bot.sandbox.config import ConnectorConfig
from bot.sandbox.seed import CAST_ANDROID, CAST_GROUPS, CAST_PENDING, CAST_USERS
from bot.settings import load_settings
from bot.store import Store, create_store
from bot.store.watch import OPEN, RESOLVED, Episode, OnboardingCase, active_blocks, last_sweep
from commands.adapters import SlackAlerts
from commands.alerts import portals_for
from workflows.onboarding import WatchSettings
from workflows.threat_sweep import SweepResult, acknowledge, run_threat_sweep, snooze

T0 = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
GROUPS = {g.name: g.id for g in CAST_GROUPS}
DEVICES = {d.key: d for d in (*CAST_ANDROID, *CAST_PENDING)}
USERS = {u.nick.split(".")[0]: u for u in CAST_USERS}
LEVELS = {"None": 1, "Informational": 1, "Low": 2, "Medium": 3, "High": 4}
MAXIMUMS = {"secured": 1, "low": 2, "medium": 3, "high": 4}
# Cast Android devices with registrations, whose owners the seeded policy reaches: "All Android Users"
# less "Executives" (Megan). Every Defender level is among them.
WATCHED = ("adele-pixel8", "alex-s23", "lee-pixel7a", "nestor-motog84", "johanna-pixel8pro", "johanna-tabs9",
           "grady-oneplus11")


@dataclass
class Recorder:
    """An AlertNotifier that remembers what it was asked to say."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def opened(self, episode: Episode, channel: str) -> None:
        self.calls.append(("opened", episode))

    def changed(self, episode: Episode) -> None:
        self.calls.append(("changed", episode))

    def resolved(self, episode: Episode) -> None:
        self.calls.append(("resolved", episode))

    def snooze_over(self, episode: Episode) -> None:
        self.calls.append(("snooze_over", episode))

    def digest(self, key: str, channel: str, kind: str, episodes: list[Episode], run: Any) -> None:
        self.calls.append(("digest-" + kind, episodes))

    def user_blocked(self, key: str, slack_user: str, episode: Episode) -> None:
        self.calls.append(("dm-blocked", (slack_user, episode)))

    def user_unblocked(self, key: str, slack_user: str, episode: Episode) -> None:
        self.calls.append(("dm-unblocked", (slack_user, episode)))

    def enforcement(self, row: Any, channel: str) -> None:
        self.calls.append(("enforcement-" + row.state, row))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]

    def take(self) -> list[str]:
        kinds = self.kinds()
        self.calls.clear()
        return kinds


@dataclass
class World:
    tenant: SandboxTenant
    clients: MicrosoftClients
    path: Path
    store: Store
    notifier: Recorder = field(default_factory=Recorder)

    def sweep(self, settings: WatchSettings | None = None, *, store: Store | None = None, notifier: Any = None,
              at: datetime = T0, **kwargs: Any) -> SweepResult:
        return run_threat_sweep(graph=self.clients.graph, defender=self.clients.defender, store=store or self.store,
                                notifier=notifier or self.notifier, settings=settings or WatchSettings(),
                                alert_channel="C0ALERTS", now=at, **kwargs)

    def policy(self, maximum: str = "low", action: str = "block", **assignment: str) -> str:
        """Make the seeded policy watch threats; it is assigned to All Android Users less Executives."""
        self.tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": maximum,
                                                           "mobileThreatDefenseRemediationAction": action}, True)
        return SEED_POLICY_ID

    def blocked_devices(self) -> set[str]:
        return {e.device_id for e in active_blocks(self.store)}

    def open_store(self) -> Store:
        return create_store(f"sqlite:///{self.path}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, SandboxConfig(now=T0))


def make_world(tmp_path: Path, config: SandboxConfig) -> Iterator[World]:
    if config.connector == ConnectorConfig():  # the watch needs Intune to evaluate Defender's signal
        config = config.replace(connector=ConnectorConfig(android_mam_enabled=True))
    tenant = SandboxTenant(config)
    settings = load_settings(mam_cloud="sandbox", mam_graph_url=None, mam_defender_url=None,
                             database_url="sqlite://")
    clients = build_clients(settings, transport=tenant.transport())
    path = tmp_path / "watch.db"
    store = create_store(f"sqlite:///{path}")
    yield World(tenant, clients, path, store)
    clients.close()
    store.close()


def aad(key: str) -> str:
    device_id = DEVICES[key].aad_device_id
    assert device_id is not None
    return device_id


def test_every_level_under_every_maximum_and_action(world: World) -> None:
    """One tenant, the policy changed between sweeps: each sweep's blocks are exactly the table's."""
    for maximum, action in product(MAXIMUMS, ("block", "wipe", "warn", "blockWhenSettingIsSupported")):
        world.policy(maximum, action)
        result = world.sweep()
        above = {aad(k) for k in WATCHED if LEVELS[DEVICES[k].risk] > MAXIMUMS[maximum]}
        blocking = action != "warn"
        # a warn is an episode too (its card and DM say "warns"), with the policy's action on it
        assert world.blocked_devices() == above, (maximum, action)
        assert {e.action for e in active_blocks(world.store)} <= {action}, (maximum, action)
        warned = sum(1 for r in world.tenant.registrations if r.get("azureADDeviceId") in above)
        assert result.warned == (0 if blocking else warned), (maximum, action)
        assert result.pending_onboarding == 1  # Isaiah: his phone isn't in Defender
        assert result.unmatched == 1  # Diego's registration has no azureADDeviceId


def test_a_policy_without_a_maximum_blocks_nothing_and_reads_nothing_big(world: World) -> None:
    result = world.sweep()  # the seeded policy is notConfigured
    assert result.ok and result.active_blocks == 0 and result.pending_onboarding == 0
    assert world.tenant.stats.count(route="managedAppRegistrations") == 0
    assert world.tenant.stats.count(route="/api/machines") == 0


def test_a_blocked_card_names_the_user_device_apps_and_levels(world: World) -> None:
    world.policy("low")
    world.sweep()
    alex = next(e for e in active_blocks(world.store) if e.device_id == aad("alex-s23"))
    assert alex.user_list == [{"id": USERS["alex"].id, "name": "Alex Wilber", "mail": USERS["alex"].mail}]
    assert alex.app_list == ["com.microsoft.office.outlook", "com.microsoft.teams"]
    assert (alex.level, alex.maximum, alex.action, alex.risk_score) == ("high", "low", "block", "High")
    assert alex.device_name == "Galaxy S23" and alex.device_model == "samsung SM-S911B"
    assert alex.machine_id == DEVICES["alex-s23"].machine_id
    assert alex.card_key == f"alert:{aad('alex-s23')}:{SEED_POLICY_ID}:{alex.id}:post"


def test_devices_not_onboarded_go_to_the_nudges_not_to_alerts(world: World) -> None:
    world.policy("low")
    world.tenant.set_onboarded(aad("alex-s23"), "CanBeOnboarded")  # listed by Defender, risk High, not onboarded
    result = world.sweep()
    assert aad("alex-s23") not in world.blocked_devices()
    assert result.pending_onboarding == 2
    with world.store.session() as session:
        cases = {c.user_id: c for c in session.exec(select(OnboardingCase))}
    assert set(cases) == {USERS["alex"].id, USERS["isaiah"].id}
    assert cases[USERS["isaiah"].id].device_list[0]["name"] == "Galaxy S22"


def test_windows_machines_and_ios_registrations_are_ignored(world: World) -> None:
    world.policy("secured")
    result = world.sweep()
    # Adele's Windows laptop is High in Defender; her Android phone is clean: she is not blocked.
    assert aad("adele-pixel8") not in world.blocked_devices()
    assert result.devices_scanned == len([m for m in world.tenant.machines if m["osPlatform"] == "Android"])
    assert result.android_registrations == result.registrations_scanned - 1  # Megan's iPhone


def test_group_membership_decides_when_graph_gives_no_applied_policies(world: World) -> None:
    world.policy("low")
    world.sweep(WatchSettings(applied_policies=False))
    by_groups = world.blocked_devices()
    assert world.tenant.stats.count(route="groups/{id}/{relation}") == 2  # each assigned group once
    fresh = world.open_store()
    with fresh.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM watch_episodes")
    world.sweep(WatchSettings(applied_policies=True))
    assert world.blocked_devices() == by_groups == {aad(k) for k in ("alex-s23", "johanna-tabs9", "grady-oneplus11")}
    # Megan (Medium) is in Executives, which the policy excludes.


def test_two_sweeps_a_restart_and_a_new_leader_announce_each_episode_once(world: World) -> None:
    world.policy("low")
    world.sweep()
    assert world.notifier.take() == ["opened"] * 3
    world.sweep(at=T0 + timedelta(minutes=15))
    assert world.notifier.take() == []
    restarted, leader = world.open_store(), Recorder()
    world.sweep(store=restarted, notifier=leader, at=T0 + timedelta(minutes=30), worker="replica-2")
    assert leader.calls == [] and len(active_blocks(restarted)) == 3
    with restarted.session() as session:
        assert len(list(session.exec(select(Episode)))) == 3


def test_two_leaders_racing_open_each_episode_once(world: World) -> None:
    world.policy("low")
    stores = [world.open_store(), world.open_store()]
    outboxes = [Outbox(s, WebClient(token="xoxb-test")) for s in stores]
    start = threading.Barrier(2)
    results: list[SweepResult] = []

    def leader(n: int) -> None:
        start.wait()
        results.append(world.sweep(store=stores[n], notifier=SlackAlerts(outboxes[n], portals_for("global"))))

    threads = [threading.Thread(target=leader, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.new_episodes for r in results) in ([0, 3], [1, 2], [3, 0], [2, 1]) or \
        sum(r.new_episodes for r in results) == 3
    cards = [m for m in (outboxes[0].get(e.card_key or "") for e in active_blocks(world.store)) if m]
    assert len(cards) == 3 and len({c.key for c in cards}) == 3


def test_a_level_change_updates_the_card_and_going_back_resolves_it(world: World) -> None:
    world.policy("low")
    world.sweep()
    world.notifier.take()
    world.tenant.set_risk(aad("johanna-tabs9"), "High")
    world.tenant.set_risk(aad("alex-s23"), "Low")
    world.sweep(at=T0 + timedelta(hours=3, minutes=20))
    calls = dict(world.notifier.calls)
    assert sorted(world.notifier.kinds()) == ["changed", "resolved"]
    changed, resolved = calls["changed"], calls["resolved"]
    assert (changed.device_id, changed.level, changed.version) == (aad("johanna-tabs9"), "high", 1)
    assert resolved.device_id == aad("alex-s23") and resolved.state == RESOLVED
    assert resolved.resolution == "back within the limit (device low, allowed up to low)"
    assert resolved.resolved_at - resolved.opened_at == timedelta(hours=3, minutes=20)


def test_a_policy_that_stops_blocking_resolves_its_episodes(world: World) -> None:
    world.policy("low")
    world.sweep()
    world.policy("low", "warn")
    result = world.sweep(at=T0 + timedelta(hours=1))
    assert result.resolved_episodes == 3 and result.warned > 0
    assert {e.resolution for _, e in world.notifier.calls if _ == "resolved"} == {
        "the policy no longer blocks (maximum low, action warn)"}


@pytest.mark.parametrize("threshold", [2, 3])
def test_more_new_or_resolved_episodes_than_the_threshold_make_one_digest(world: World, threshold: int) -> None:
    world.policy("low")
    settings = WatchSettings(digest_threshold=threshold)
    world.sweep(settings)
    burst = threshold < 3
    assert world.notifier.take() == (["digest-new"] if burst else ["opened"] * 3)
    for key in ("alex-s23", "johanna-tabs9", "grady-oneplus11"):
        world.tenant.set_risk(aad(key), "None")
    world.sweep(settings, at=T0 + timedelta(hours=1))
    assert world.notifier.take() == (["digest-resolved"] if burst else ["resolved"] * 3)
    assert all(e.state == RESOLVED for e in _episodes(world.store))


def test_a_failed_read_resolves_nothing(tmp_path: Path) -> None:
    failing = SandboxConfig(now=T0, fail={"GET /beta/deviceAppManagement/managedAppRegistrations": [200, 500]})
    world = next(make_world(tmp_path, failing))
    world.policy("low")
    world.sweep()
    result = world.sweep(at=T0 + timedelta(hours=1))
    assert not result.ok and "Microsoft Graph had a problem" in result.errors[0]
    assert len(active_blocks(world.store)) == 3 and world.notifier.kinds() == ["opened"] * 3
    sweep = last_sweep(world.store)
    assert sweep is not None and not sweep.ok and sweep.error


def test_acknowledge_records_who_first_and_snooze_resurfaces_once(world: World) -> None:
    world.policy("low")
    world.sweep()
    episode = next(e for e in active_blocks(world.store) if e.device_id == aad("alex-s23"))
    assert episode.id is not None
    acked = acknowledge(world.store, episode.id, "UAPPROV01", T0)
    again = acknowledge(world.store, episode.id, "UADMIN001", T0)
    assert acked is not None and again is not None and again.acknowledged_by == "UAPPROV01"
    other = next(e for e in active_blocks(world.store) if e.device_id == aad("grady-oneplus11"))
    assert other.id is not None
    snoozed = snooze(world.store, other.id, "UADMIN001", 4, T0)
    assert snoozed is not None and as_utc(snoozed.snoozed_until) == T0 + timedelta(hours=4)
    world.notifier.take()
    world.sweep(at=T0 + timedelta(hours=3))
    assert world.notifier.take() == []
    world.sweep(at=T0 + timedelta(hours=5))
    assert world.notifier.take() == ["snooze_over"]
    world.sweep(at=T0 + timedelta(hours=6))
    assert world.notifier.take() == []


def test_affected_users_get_a_dm_when_the_setting_is_on(world: World) -> None:
    class Directory:
        def lookup_email(self, email: str) -> str | None:
            return {USERS["alex"].mail: "UALEX0001"}.get(email)

    world.policy("low")
    world.sweep(WatchSettings(dm_blocked_users=True), directory=Directory(), sleep=lambda _: None)
    dms = [who for kind, (who, _) in ((k, v) for k, v in world.notifier.calls if k.startswith("dm-"))]
    assert dms == ["UALEX0001"]
    world.tenant.set_risk(aad("alex-s23"), "None")
    world.notifier.take()
    world.sweep(WatchSettings(dm_blocked_users=True), directory=Directory(), at=T0 + timedelta(hours=2),
                sleep=lambda _: None)
    kind, (who, episode) = world.notifier.calls[-1]
    assert (kind, who, episode.device_id) == ("dm-unblocked", "UALEX0001", aad("alex-s23"))


def test_onboarding_in_defender_closes_the_case_as_onboarded(world: World) -> None:
    world.policy("low")
    world.sweep()
    world.tenant.set_onboarded(aad("isaiah-s22"))
    world.sweep(at=T0 + timedelta(hours=1))
    with world.store.session() as session:
        case = session.get(OnboardingCase, USERS["isaiah"].id)
    assert case is not None and case.state == "onboarded"


def _episodes(store: Store) -> list[Episode]:
    with store.session() as session:
        return list(session.exec(select(Episode)))


def test_open_state_constant_is_what_the_table_uses(world: World) -> None:
    world.policy("low")
    world.sweep()
    assert {e.state for e in _episodes(world.store)} == {OPEN}


def test_cards_and_the_csv_make_outside_text_inert() -> None:
    from commands.alerts import alert_card, episodes_csv

    episode = Episode(id=7, device_id="d", policy_id="p", device_name="<!channel>", device_model="=HYPERLINK(1)",
                      policy_name="P & Q", level="high", maximum="low", action="block", opened_at=T0,
                      last_seen_at=T0, users='[{"id": "u", "name": "<@U123>", "mail": "x@y"}]', apps='["a"]')
    blocks = alert_card(episode, portals_for("global"))
    text = "\n".join(str(t["text"]) for t in _texts(blocks) if t["type"] == "mrkdwn")  # plain_text is inert
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<@U123>" not in text and "P &amp; Q" in text
    rows = episodes_csv([episode], portals_for("global")).decode().splitlines()
    assert ",'=HYPERLINK(1)," in rows[1]


def _texts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text"):
            yield node
        for value in node.values():
            yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


def test_assigned_users_without_a_registration_are_nudged_only_when_asked(tmp_path: Path) -> None:
    # Two users beyond the cast: members of "All Android Users", no device, no app yet.
    world = next(make_world(tmp_path, SandboxConfig(now=T0, users=12)))
    world.policy("low")
    assert world.sweep().pending_onboarding == 1  # only Isaiah
    result = world.sweep(WatchSettings(nudge_unregistered=True), at=T0 + timedelta(hours=1))
    assert result.pending_onboarding == 3
    with world.store.session() as session:
        kinds = sorted(c.kind for c in session.exec(select(OnboardingCase)))
    assert kinds == ["registered", "unregistered", "unregistered"]


def test_a_tenant_with_nothing_to_watch_says_why(world: World) -> None:
    result = world.sweep()  # the seeded policy sets no maximum threat level yet
    assert result.ok and result.devices_scanned == 0
    assert result.summary().startswith("nothing to watch: no Android app protection policy sets a maximum")
    assert "(1 policy read)" in result.summary() and "`/mam policy new`" in result.summary()
    world.policy("low")
    assert "nothing to watch" not in world.sweep().summary()
