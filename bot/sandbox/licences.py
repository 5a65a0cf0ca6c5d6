"""Users' `assignedPlans` (Graph's licence view that application permissions can read).

Most users hold Intune (INTUNE_A) and Defender for Endpoint (WINDEFATP, some MDE_LITE) next to a couple
of unrelated plans. Generated users are licensed by a hash of seed and index: about 2% lack Intune and
about 3% lack Defender (half of those still carry the plan, `Deleted`, as a removed licence leaves it).
In the hand-written cast Isaiah Langer (pending onboarding) has no Intune plan, Nestor Wilke has no
Defender plan and Grady Archie's Defender plan is `Suspended`. Changes at run time are an overlay.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from bot.sandbox.cast import DIEGO, GRADY, ISAIAH, NESTOR
from bot.sandbox.config import CURATED_USERS

INTUNE_A = "c1ec4a95-1f05-45b3-a911-aa3fa01094f5"
WINDEFATP = "871d91ec-ec1a-452b-a83f-bd76c7d770ef"
MDE_LITE = "292cc034-7b7c-4950-aaf5-943befd3f1d4"
MDE_SMB = "bfc1bbd9-981b-4f71-9b82-17c35fd0e2a4"
EXCHANGE_S_ENTERPRISE = "efb87545-963c-4e0d-99df-69c6916d9eb0"
AAD_PREMIUM = "41781fb2-bc02-4b7c-bd55-b576c07bb09d"
PLAN_NAMES = {"INTUNE_A": INTUNE_A, "WINDEFATP": WINDEFATP, "MDE_LITE": MDE_LITE, "MDE_SMB": MDE_SMB,
              "EXCHANGE_S_ENTERPRISE": EXCHANGE_S_ENTERPRISE, "AAD_PREMIUM": AAD_PREMIUM}
SERVICES = {INTUNE_A: "SCO", WINDEFATP: "WindowsDefenderATP", MDE_LITE: "WindowsDefenderATP",
            MDE_SMB: "WindowsDefenderATP", EXCHANGE_S_ENTERPRISE: "exchange", AAD_PREMIUM: "AADPremiumService"}
INTUNE_PLANS = frozenset({INTUNE_A})
DEFENDER_PLANS = frozenset({WINDEFATP, MDE_LITE, MDE_SMB})
CAPABILITY_STATUSES = ("Enabled", "Suspended", "Deleted", "Warning", "LockedOut")

# (plan id, capabilityStatus) per curated user who differs from "Enabled INTUNE_A and WINDEFATP".
_CAST_PLANS: dict[int, tuple[tuple[str, str], ...]] = {
    ISAIAH: ((WINDEFATP, "Enabled"),),                                  # no Intune licence
    NESTOR: ((INTUNE_A, "Enabled"),),                                   # no Defender licence
    GRADY: ((INTUNE_A, "Enabled"), (WINDEFATP, "Suspended")),           # Defender suspended
    DIEGO: ((INTUNE_A, "Enabled"), (MDE_LITE, "Enabled")),              # Defender P1
}
_DEFAULT_PLANS = ((INTUNE_A, "Enabled"), (WINDEFATP, "Enabled"))
_BASE_PLANS = ((EXCHANGE_S_ENTERPRISE, "Enabled"), (AAD_PREMIUM, "Enabled"))


def plan_id(ref: str) -> str:
    """A service plan id from its id or its name (INTUNE_A, WINDEFATP, MDE_LITE, ...)."""
    found = PLAN_NAMES.get(ref.strip().upper())
    if found is not None:
        return found
    text = ref.strip().lower()
    if len(text) != 36 or text.count("-") != 4:
        raise ValueError(f"unknown service plan {ref!r}: give a GUID or one of {', '.join(PLAN_NAMES)}")
    return text


class Licences:
    """assignedPlans for user `index` (curated first, then generated), cheap enough per row."""

    def __init__(self, seed: int, anchor: datetime) -> None:
        self._seed = seed
        self._epoch = int(anchor.timestamp())
        self._dates: dict[int, str] = {}
        self._overlay: dict[int, list[dict[str, Any]]] = {}
        self.version = 0

    def _when(self, days: int, seconds: int) -> str:
        day, second = divmod(self._epoch - days * 86400 - seconds, 86400)
        date = self._dates.get(day)
        if date is None:
            date = f"{datetime.fromtimestamp(day * 86400, UTC):%Y-%m-%d}"
            self._dates[day] = date
        hours, rest = divmod(second, 3600)
        return f"{date}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"

    def _plans(self, index: int) -> list[tuple[str, str]]:
        if index < CURATED_USERS:
            return [*_BASE_PLANS, *_CAST_PLANS.get(index, _DEFAULT_PLANS)]
        digest = hashlib.blake2b(f"{self._seed}:licence:{index - CURATED_USERS}".encode(),
                                 digest_size=8).digest()
        plans = list(_BASE_PLANS)
        if int.from_bytes(digest[0:2], "big") % 1000 >= 20:
            plans.append((INTUNE_A, "Enabled"))
        elif digest[4] % 2:
            plans.append((INTUNE_A, "Deleted"))
        defender = MDE_LITE if digest[5] % 100 < 15 else WINDEFATP
        if int.from_bytes(digest[2:4], "big") % 1000 >= 30:
            plans.append((defender, "Enabled"))
        elif digest[6] % 2:
            plans.append((defender, "Deleted"))
        return plans

    def assigned_plans(self, index: int) -> list[dict[str, Any]]:
        overlay = self._overlay.get(index)
        if overlay is not None:
            return [dict(p) for p in overlay]
        out: list[dict[str, Any]] = []
        for number, (plan, status) in enumerate(self._plans(index)):
            out.append({"assignedDateTime": self._when(200 + (index * 7 + number * 13) % 300, index % 86400),
                        "capabilityStatus": status, "service": SERVICES.get(plan, "Unknown"),
                        "servicePlanId": plan})
        return out

    def plan_states(self, index: int) -> list[dict[str, Any]]:
        """assignedPlans without assignedDateTime: what a licence filter reads, made faster."""
        overlay = self._overlay.get(index)
        if overlay is not None:
            return [dict(p) for p in overlay]
        return [{"capabilityStatus": status, "service": SERVICES.get(plan, "Unknown"), "servicePlanId": plan}
                for plan, status in self._plans(index)]

    def set_plan(self, index: int, plan: str, status: str | None) -> None:
        """Give user `index` this plan with this capabilityStatus, or take it away (None)."""
        if status is not None and status not in CAPABILITY_STATUSES:
            raise ValueError(f"capabilityStatus must be one of {', '.join(CAPABILITY_STATUSES)}")
        plans = [p for p in self.assigned_plans(index) if p["servicePlanId"] != plan]
        if status is not None:
            plans.append({"assignedDateTime": self._when(0, 0), "capabilityStatus": status,
                          "service": SERVICES.get(plan, "Unknown"), "servicePlanId": plan})
        self._overlay[index] = plans
        self.version += 1

    def licensed(self, index: int, plans: frozenset[str]) -> bool:
        """True when one of these plans is Enabled for the user."""
        return any(p["servicePlanId"] in plans and p["capabilityStatus"] == "Enabled"
                   for p in self.assigned_plans(index))
