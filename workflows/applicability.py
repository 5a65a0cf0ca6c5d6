"""Which Android app protection policy applies to which app registration, and does it block the app?

Pure: policies, registrations and Defender machines come in as read from Microsoft; nothing here
calls anyone. The bot *infers* a block the way Intune evaluates it (Defender's level against the
policy's maximum and action); Intune itself decides at the app's next check-in.

Ids are kept compact (`guid_key`: a GUID as a 128-bit int) because a sweep indexes every Android
device and, without `appliedPolicies`, every member of every assigned group.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

from bot.microsoft.models import AndroidPolicy, Machine, ManagedAppRegistration, TargetKind

ANDROID_REGISTRATION = "androidManagedAppRegistration"


class Level(IntEnum):
    """managedAppDeviceThreatLevel in order; a device's Defender risk maps onto the same scale."""

    NOT_CONFIGURED = 0
    SECURED = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4

    @property
    def wire(self) -> str:
        """Graph's spelling (`notConfigured`, `secured`, …)."""
        return "notConfigured" if self is Level.NOT_CONFIGURED else self.name.lower()

    @classmethod
    def from_wire(cls, value: str | None) -> Level:
        """A policy's maximumAllowedDeviceThreatLevel; unknown values never block (notConfigured)."""
        return _POLICY_LEVELS.get((value or "").strip().lower(), Level.NOT_CONFIGURED)


_POLICY_LEVELS = {level.wire.lower(): level for level in Level}

# Defender's riskScore → the level Intune compares with the policy's maximum.
RISK_LEVELS: dict[str, Level] = {
    "none": Level.SECURED,
    "informational": Level.SECURED,
    "low": Level.LOW,
    "medium": Level.MEDIUM,
    "high": Level.HIGH,
}
RISK_NAMES = {Level.SECURED: "None", Level.LOW: "Low", Level.MEDIUM: "Medium", Level.HIGH: "High"}


def level_of_risk(risk_score: str | None) -> Level:
    """Defender reports no score for a device it has nothing against: that is `secured`."""
    return RISK_LEVELS.get((risk_score or "none").strip().lower(), Level.SECURED)


class Action(StrEnum):
    BLOCK = "block"
    WIPE = "wipe"
    WARN = "warn"
    BLOCK_WHEN_SUPPORTED = "blockWhenSettingIsSupported"


BLOCKING_ACTIONS = frozenset({Action.BLOCK.value, Action.WIPE.value, Action.BLOCK_WHEN_SUPPORTED.value})


class Verdict(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    WARNED = "warned"  # `warn`: the app shows a warning and lets the user in
    PENDING_ONBOARDING = "pending_onboarding"  # the app holds the user at its onboarding screen
    NOT_WATCHED = "not_watched"  # the policy has no maximum threat level


def decide(device_level: Level | None, maximum: Level, action: str | None) -> Verdict:
    """The verdict for one device under one policy. `device_level` None: not onboarded in Defender."""
    if maximum is Level.NOT_CONFIGURED:
        return Verdict.NOT_WATCHED
    if device_level is None:
        return Verdict.PENDING_ONBOARDING
    if device_level <= maximum:
        return Verdict.ALLOWED
    if (action or Action.BLOCK.value) in BLOCKING_ACTIONS:
        return Verdict.BLOCKED
    if action == Action.WARN.value:
        return Verdict.WARNED
    # An action added after this code was written: don't claim a block we can't explain.
    return Verdict.ALLOWED


# ---- ids ----------------------------------------------------------------------------------------

Key = int | str


def guid_key(value: str | None) -> Key | None:
    """A GUID as a 128-bit int (small in memory, case-insensitive); anything else as lower-case text."""
    if not value:
        return None
    text = value.strip()
    try:
        return uuid.UUID(text).int
    except ValueError:
        return text.lower() or None


def key_text(key: Key) -> str:
    return str(uuid.UUID(int=key)) if isinstance(key, int) else key


# ---- policies -------------------------------------------------------------------------------------

ALL_APP_GROUPS = frozenset({"allApps"})


@dataclass(frozen=True)
class PolicyRule:
    """What the sweep needs of one Android app protection policy."""

    id: str
    name: str
    maximum: Level
    action: str
    packages: frozenset[str]
    all_apps: bool
    management_levels: frozenset[str]
    include_groups: frozenset[str]
    exclude_groups: frozenset[str]
    all_users: bool

    @classmethod
    def from_policy(cls, policy: AndroidPolicy) -> PolicyRule:
        include: set[str] = set()
        exclude: set[str] = set()
        all_users = False
        for assignment in policy.assignments:
            target = assignment.target
            if target.odata_type == TargetKind.ALL_LICENSED_USERS:
                all_users = True
            elif target.groupId and target.odata_type == TargetKind.EXCLUSION_GROUP:
                exclude.add(target.groupId.lower())
            elif target.groupId and target.odata_type == TargetKind.GROUP:
                include.add(target.groupId.lower())
        packages = frozenset(p.lower() for p in policy.package_ids)
        return cls(
            id=policy.id,
            name=policy.displayName,
            maximum=Level.from_wire(policy.maximumAllowedDeviceThreatLevel),
            action=policy.mobileThreatDefenseRemediationAction or Action.BLOCK.value,
            packages=packages,
            # The service fills `apps` for the "all apps" groups; an empty list there still means all.
            all_apps=(policy.appGroupType or "") in ALL_APP_GROUPS and not packages,
            management_levels=policy.management_levels,
            include_groups=frozenset(include),
            exclude_groups=frozenset(exclude),
            all_users=all_users,
        )

    @property
    def watches_threats(self) -> bool:
        return self.maximum is not Level.NOT_CONFIGURED

    @property
    def blocks(self) -> bool:
        return self.watches_threats and self.action in BLOCKING_ACTIONS

    @property
    def groups(self) -> frozenset[str]:
        return self.include_groups | self.exclude_groups

    def targets_app(self, package: str | None) -> bool:
        return self.all_apps or (package is not None and package.lower() in self.packages)

    def targets_device(self, enrolled: bool) -> bool:
        """`targetedAppManagementLevels`: unmanaged devices, enrolled ones (mdm, Android Enterprise), or all."""
        levels = self.management_levels
        if not levels or "unspecified" in levels:
            return True
        if enrolled:
            return bool(levels - {"unmanaged"})
        return "unmanaged" in levels

    def reaches(self, user: Key | None, members: Mapping[str, Set[Key]]) -> bool:
        """Is the user in scope of the assignments? Exclusions win over inclusions."""
        if user is None:
            return False
        if any(user in members.get(g, ()) for g in self.exclude_groups):
            return False
        return self.all_users or any(user in members.get(g, ()) for g in self.include_groups)


# ---- registrations --------------------------------------------------------------------------------


class Registration(NamedTuple):
    """A managed app registration, reduced to what the sweep reads (one page at a time)."""

    id: str
    user_id: str | None
    device_id: str | None  # azureADDeviceId
    package: str | None
    android: bool
    enrolled: bool  # has a managedDeviceId: an MDM / Android Enterprise device
    device_name: str | None
    device_model: str | None
    manufacturer: str | None
    applied: frozenset[str] | None  # ids of the policies that apply, lower-case; None when Graph didn't say

    @classmethod
    def from_graph(cls, item: Mapping[str, Any]) -> Registration:
        """From the JSON Graph returns: `intendedPolicies` (what applies now) when expanded, else
        `appliedPolicies` (what the app last synced), else None (assignments and groups decide)."""
        odata_type = str(item.get("@odata.type") or "")
        app = item.get("appIdentifier") or {}
        package = app.get("packageId") if isinstance(app, dict) else None
        applied_raw = item.get("intendedPolicies", item.get("appliedPolicies"))
        applied = None
        if isinstance(applied_raw, list):
            applied = frozenset(str(p.get("id", "")).lower() for p in applied_raw if isinstance(p, dict))
        return cls(
            id=str(item.get("id") or ""),
            user_id=item.get("userId") or None,
            device_id=item.get("azureADDeviceId") or None,
            package=package,
            android=odata_type.endswith(ANDROID_REGISTRATION) if odata_type else package is not None,
            enrolled=bool(item.get("managedDeviceId")),
            device_name=item.get("deviceName"),
            device_model=item.get("deviceModel"),
            manufacturer=item.get("deviceManufacturer"),
            applied=applied,
        )

    @classmethod
    def from_model(cls, reg: ManagedAppRegistration) -> Registration:
        return cls(reg.id, reg.userId, reg.azureADDeviceId, reg.packageId, reg.is_android,
                   bool(reg.managedDeviceId), reg.deviceName, reg.deviceModel, reg.deviceManufacturer, None)


def applicable(reg: Registration, rules: Iterable[PolicyRule], members: Mapping[str, Set[Key]]) -> list[PolicyRule]:
    """The policies among `rules` that apply to this registration.

    Graph's `appliedPolicies` is the service's own answer and wins when present; otherwise the
    policy must target the app and the device type, and its assignments must reach the user.
    """
    if not reg.android:
        return []
    if reg.applied is not None:
        return [r for r in rules if r.id.lower() in reg.applied]
    user = guid_key(reg.user_id)
    return [r for r in rules
            if r.targets_app(reg.package) and r.targets_device(reg.enrolled) and r.reaches(user, members)]


# ---- the Defender side --------------------------------------------------------------------------------


class MachineInfo(NamedTuple):
    """What a card shows of a Defender machine; kept only for devices that could be blocked."""

    machine_id: str
    name: str | None
    risk_score: str | None
    last_seen: datetime | None


NOT_ONBOARDED = 7  # a code beside Level's 0-4 in DeviceIndex's packed values


class DeviceIndex:
    """Entra device id → Defender level, a packed int per Android device.

    Each value is `(lastSeen seconds << 3) | code`, code a Level or NOT_ONBOARDED: when Defender
    lists the same device twice (re-onboarding leaves the old entry), an onboarded entry beats one
    that isn't, then the most recently seen wins.
    """

    def __init__(self) -> None:
        self._packed: dict[Key, int] = {}
        self._details: dict[Key, MachineInfo] = {}
        self.machines = 0
        self.without_device_id = 0

    def __len__(self) -> int:
        return len(self._packed)

    def add(self, machine: Machine) -> None:
        self.machines += 1
        key = guid_key(machine.aadDeviceId)
        if key is None:
            self.without_device_id += 1
            return
        onboarded = (machine.onboardingStatus or "").strip().lower() == "onboarded"
        level = level_of_risk(machine.riskScore)
        code = int(level) if onboarded else NOT_ONBOARDED
        seen = int(machine.lastSeen.timestamp()) if machine.lastSeen else 0
        packed = (max(seen, 0) << 3) | code
        current = self._packed.get(key)
        if current is not None and _rank(current) >= _rank(packed):
            return
        self._packed[key] = packed
        # Only a device above `secured` can ever block an app: the rest need no card details.
        if onboarded and level > Level.SECURED:
            self._details[key] = MachineInfo(machine.id, machine.computerDnsName, machine.riskScore,
                                             machine.lastSeen)
        else:
            self._details.pop(key, None)

    def level(self, device_id: str | Key | None) -> Level | None:
        """The device's level, or None when Defender doesn't list it as onboarded."""
        key = guid_key(device_id) if isinstance(device_id, str) else device_id
        packed = self._packed.get(key) if key is not None else None
        if packed is None or packed & 7 == NOT_ONBOARDED:
            return None
        return Level(packed & 7)

    def known(self, device_id: str | None) -> bool:
        key = guid_key(device_id)
        return key is not None and key in self._packed

    def details(self, device_id: str | Key | None) -> MachineInfo | None:
        key = guid_key(device_id) if isinstance(device_id, str) else device_id
        return self._details.get(key) if key is not None else None


def _rank(packed: int) -> tuple[bool, int]:
    return (packed & 7 != NOT_ONBOARDED, packed >> 3)


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
