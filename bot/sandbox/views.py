"""What tests, demos and benchmarks read and change on a sandbox tenant directly, not through its API:
materialised views (users, policies, machines, ...) and mutators (risk, onboarding, licences)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, overload

from bot.sandbox.control import RiskChange
from bot.sandbox.core import ApiError
from bot.sandbox.licences import plan_id
from bot.sandbox.policies import PolicyStore
from bot.sandbox.seed import ONBOARDING_STATES, RISK_LEVELS, World, stamp


class TenantViews:
    """SandboxTenant's direct views and mutators (a mixin: it owns none of the state it reads)."""

    world: World
    policies_store: PolicyStore
    _lock: threading.RLock
    _clock: Callable[[], datetime]
    _monotonic: Callable[[], float]
    _risk_changes: list[RiskChange]

    # ---- read-only views for tests and demos -----------------------------------------------------

    @property
    def users(self) -> list[dict[str, Any]]:
        """Every user (materialised: meant for small tenants)."""
        with self._lock:
            return [self.world.user(i) for i in range(self.world.user_count)]

    @property
    def groups(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.world.groups)

    @property
    def policies(self) -> list[dict[str, Any]]:
        """Policies as a beta GET with $expand=apps,assignments returns them."""
        with self._lock:
            store = self.policies_store
            return [store.render(p, True, {"apps", "assignments"}) for p in store.items.values()]

    @property
    def machines(self) -> list[dict[str, Any]]:
        """Machines Defender lists, Android and Windows (materialised: meant for small tenants)."""
        with self._lock:
            found = (self.world.machine(r) for r in range(self.world.machine_raw_count))
            return [m for m in found if m is not None]

    @property
    def registrations(self) -> list[dict[str, Any]]:
        """All app registrations as beta returns them (materialised: meant for small tenants)."""
        with self._lock:
            return [self.world.registration(i) for i in range(self.world.registration_count)]

    def user(self, ref: str) -> dict[str, Any] | None:
        """A user by id, mail or UPN."""
        with self._lock:
            index = self.world.find_user(ref)
            return None if index is None else self.world.user(index)

    def group(self, ref: str) -> dict[str, Any] | None:
        """A group by id, or by display name when exactly one group has it."""
        with self._lock:
            index = self.world.find_group(ref)
            if index is None:
                wanted = ref.strip().lower()
                named = [i for i, g in enumerate(self.world.groups) if g["displayName"].lower() == wanted]
                index = named[0] if len(named) == 1 else None
            return None if index is None else copy.deepcopy(self.world.groups[index])

    def policy(self, policy_id: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                found = self.policies_store.get(policy_id)
            except ApiError:
                return None
            return self.policies_store.render(found, True, {"apps", "assignments"})

    def machine(self, ref: str) -> dict[str, Any] | None:
        """A machine by Defender id or Entra device id; None when Defender does not list it."""
        with self._lock:
            raw = self.world.find_machine(ref)
            return None if raw is None else self.world.machine(raw)

    def registrations_for(self, user_ref: str) -> list[dict[str, Any]]:
        with self._lock:
            index = self.world.find_user(user_ref)
            if index is None:
                return []
            return [self.world.registration(i) for i in self.world.registrations_of(index)]

    # ---- mutators --------------------------------------------------------------------------------

    def _device(self, ref: str) -> int:
        raw = self.world.find_machine(ref)
        if raw is None:
            raise KeyError(f"no device with machine id or Entra device id {ref!r}")
        return raw

    def set_risk(self, ref: str, level: str) -> RiskChange:
        """Set a device's Defender riskScore (None, Informational, Low, Medium, High), by machine id or
        Entra device id; the change is recorded with the monotonic time it was made (see risk_changes)."""
        canonical = {r.lower(): r for r in RISK_LEVELS}.get(str(level).lower())
        if canonical is None:
            raise ValueError(f"riskScore must be one of {', '.join(RISK_LEVELS)}")
        with self._lock:
            raw = self._device(ref)
            before = self.world.machine(raw)
            machine_id, aad = self._device_ids(raw)
            now = self._clock()
            self.world.set_machine(raw, riskScore=canonical, lastSeen=stamp(now))
            change = RiskChange(machine_id, aad, canonical, before["riskScore"] if before else None,
                                self._monotonic(), now)
            self._risk_changes.append(change)
            return change

    def _device_ids(self, raw: int) -> tuple[str, str | None]:
        machine = self.world.machine(raw)
        if machine is not None:
            return machine["id"], machine["aadDeviceId"]
        return self.world.machine_id(raw), self.world.device_meta(raw).aad_device_id

    @property
    def risk_changes(self) -> list[RiskChange]:
        """Every set_risk so far, oldest first (monotonic seconds on the tenant's monotonic clock)."""
        with self._lock:
            return list(self._risk_changes)

    def risk_changed_at(self, ref: str) -> float | None:
        """Monotonic time of the latest set_risk on this device (machine id or Entra device id), or None."""
        wanted = ref.strip().lower()
        with self._lock:
            for change in reversed(self._risk_changes):
                if wanted in (change.machine_id.lower(), (change.aad_device_id or "").lower()):
                    return change.monotonic
        return None

    def set_licence(self, user_ref: str, plan: str, status: str | None = "Enabled") -> None:
        """Give a user (id, mail or UPN) a service plan (GUID or INTUNE_A, WINDEFATP, MDE_LITE, ...) with this
        capabilityStatus (Enabled, Suspended, Deleted, ...), or take it away with None."""
        with self._lock:
            index = self.world.find_user(user_ref)
            if index is None:
                raise KeyError(f"no user {user_ref!r}")
            self.world.licences.set_plan(index, plan_id(plan), status)

    @overload
    def set_onboarded(self, ref: str, status: bool = True) -> None: ...
    @overload
    def set_onboarded(self, ref: str, status: str) -> None: ...

    def set_onboarded(self, ref: str, status: bool | str = True) -> None:
        """True: onboarded (and listed by Defender); False: Defender no longer lists the device;
        a string: that onboardingStatus (Onboarded, CanBeOnboarded, Unsupported, InsufficientInfo)."""
        with self._lock:
            raw = self._device(ref)
            if status is False:
                self.world.set_machine(raw, _hidden=True)
                return
            value = "Onboarded" if status is True else str(status)
            canonical = {s.lower(): s for s in ONBOARDING_STATES}.get(value.lower())
            if canonical is None:
                raise ValueError(f"onboardingStatus must be one of {', '.join(ONBOARDING_STATES)}")
            was_listed = self.world.machine(raw) is not None
            now = stamp(self._clock())
            fields: dict[str, Any] = {"_hidden": False, "onboardingStatus": canonical, "lastSeen": now,
                                      "healthStatus": "Active"}
            if not was_listed:
                fields["firstSeen"] = now
            self.world.set_machine(raw, **fields)
