"""One pass over the tenant: which (device, policy) pairs block or warn, and who waits for Defender.

The sweep (workflows.threat_sweep) reads the Android app protection policies, indexes every Android
device Defender lists (Entra device id → level, a packed int each), then streams the registrations
(from the index, workflows.index_store) and keeps only what matters: the (device, policy)
pairs that block or warn, and the users still waiting for Defender (onboarding). Memory is bounded
by the device index, not by the registrations. Nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from workflows.applicability import (
    DeviceIndex,
    Key,
    Level,
    MachineInfo,
    PolicyRule,
    Registration,
    Verdict,
    applicable,
    decide,
    guid_key,
    key_text,
)
from workflows.onboarding import (
    PendingUser,
    WatchSettings,
)
from workflows.tenant_reader import TenantReader


def open_key(device: str, rule: PolicyRule) -> str:
    """One open episode per (device, policy); a warning is another story than a block (a policy switched
    from block to warn resolves the block, and the warning starts afresh with its own words)."""
    return f"{device}|{rule.id}|warn" if rule.action == "warn" else f"{device}|{rule.id}"


@dataclass
class Block:
    """One blocking (device, policy) pair as the sweep found it."""

    device_id: str
    rule: PolicyRule
    level: Level
    machine: MachineInfo | None
    users: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    device_name: str = ""
    device_model: str = ""

    @property
    def open_key(self) -> str:
        return open_key(self.device_id, self.rule)


@dataclass
class Scan:
    rules: dict[str, PolicyRule]  # every Android policy, watching or not, by id
    index: DeviceIndex
    watch_users: Set[str] = frozenset()  # users with an open onboarding case
    blocks: dict[str, Block] = field(default_factory=dict)  # by open key
    pending: dict[str, PendingUser] = field(default_factory=dict)  # by Entra user id
    onboarded: set[str] = field(default_factory=set)  # watched users seen with an onboarded device
    registrations: int = 0
    android_registrations: int = 0
    warned: int = 0
    unmatched: int = 0


def scan_tenant(reader: TenantReader, settings: WatchSettings, watch_users: Set[str] = frozenset()) -> Scan:
    """Read the tenant once and return what blocks and who waits for Defender. Raises on a failed read."""
    rules = {p.id: PolicyRule.from_policy(p) for p in reader.android_policies()}
    watching = [r for r in rules.values() if r.watches_threats]
    scan = Scan(rules=rules, index=DeviceIndex(), watch_users=watch_users)
    if not watching:
        return scan  # nothing can block or need Defender: skip the two big reads
    for machine in reader.android_machines():
        scan.index.add(machine)
    members: dict[str, set[Key]] | None = None
    registered: set[Key] = set()
    for reg in reader.registrations():
        scan.registrations += 1
        if not reg.android:
            continue
        scan.android_registrations += 1
        if settings.nudge_unregistered and (user_key := guid_key(reg.user_id)) is not None:
            registered.add(user_key)
        if reg.applied is None and members is None:
            members = load_members(reader, watching)
        _take(scan, reg, applicable(reg, watching, members or {}))
    if settings.nudge_unregistered:
        members = members if members is not None else load_members(reader, watching)
        _add_unregistered(scan, watching, members, registered)
    return scan


def load_members(reader: TenantReader, rules: Iterable[PolicyRule]) -> dict[str, set[Key]]:
    """Each assigned group's transitive user members, streamed once per group (never once per user)."""
    members: dict[str, set[Key]] = {}
    for rule in rules:
        for group in rule.groups:
            if group not in members:
                members[group] = {k for k in map(guid_key, reader.group_member_ids(group)) if k is not None}
    return members


def _take(scan: Scan, reg: Registration, rules: list[PolicyRule]) -> None:
    if not rules:
        return
    if reg.device_id is None:
        scan.unmatched += 1  # no Entra device id: nothing to join Defender on
        return
    user = (reg.user_id or "").lower()
    level = scan.index.level(reg.device_id)
    if level is None:
        if not user:
            return  # nobody to nudge
        pending = scan.pending.setdefault(user, PendingUser())
        pending.devices[reg.device_id.lower()] = (reg.device_name or "", _model(reg))
        if reg.package:
            pending.apps.add(reg.package)
        pending.policies.update(r.name for r in rules)
        return
    if user in scan.watch_users:
        scan.onboarded.add(user)
    for rule in rules:
        verdict = decide(level, rule.maximum, rule.action)
        if verdict is Verdict.WARNED:
            scan.warned += 1  # an episode too: the card and the DM say "warns", never "blocked"
        if verdict not in (Verdict.BLOCKED, Verdict.WARNED):
            continue
        device = key_text(guid_key(reg.device_id) or reg.device_id)
        block = scan.blocks.get(open_key(device, rule))
        if block is None:
            block = Block(device, rule, level, scan.index.details(reg.device_id),
                          device_name=reg.device_name or "", device_model=_model(reg))
            scan.blocks[block.open_key] = block
        if reg.user_id:
            block.users.add(reg.user_id.lower())
        if reg.package:
            block.apps.add(reg.package)


def _add_unregistered(scan: Scan, rules: list[PolicyRule], members: Mapping[str, Set[Key]],
                      registered: Set[Key]) -> None:
    """Assigned users with no Android registration yet (all-users assignments can't be listed this way)."""
    for rule in rules:
        excluded: set[Key] = set().union(*(members.get(g, set()) for g in rule.exclude_groups))
        for group in rule.include_groups:
            for user in members.get(group, ()):
                if user in registered or user in excluded:
                    continue
                pending = scan.pending.setdefault(key_text(user), PendingUser(kind="unregistered"))
                pending.policies.add(rule.name)


def _model(reg: Registration) -> str:
    return " ".join(p for p in (reg.manufacturer, reg.device_model) if p)

