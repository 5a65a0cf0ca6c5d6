"""Is Defender's risk signal reaching Intune app protection on Android? Checks, each with its fix.

The Defender-side switch ("Microsoft Intune connection") has no documented API, so it is only
ever explained with its portal path and link, never flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.microsoft.models import MtdConnector
from bot.microsoft.permissions import PermissionRow

HEARTBEAT_WARN_AFTER = timedelta(hours=24)  # the services sync at least daily (memdocs)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True)
class Portals:
    """Admin portal hosts of one cloud; links are offered only where they are known."""

    defender: str | None
    intune: str | None

    @property
    def defender_advanced_features(self) -> str | None:
        return f"{self.defender}/securitysettings/endpoints/integration" if self.defender else None

    @property
    def intune_mde_connector(self) -> str | None:
        if not self.intune:
            return None
        return f"{self.intune}/#view/Microsoft_Intune_DeviceSettings/TenantAdminConnectorsMenu/~/windowsDefenderATP"


PORTALS: dict[str, Portals] = {
    "global": Portals("https://security.microsoft.com", "https://intune.microsoft.com"),
    "gcc": Portals("https://security.microsoft.com", "https://intune.microsoft.com"),
    "gcc-high": Portals("https://security.microsoft.us", "https://intune.microsoft.us"),
    "dod": Portals("https://security.apps.mil", "https://intune.microsoft.us"),
    "china": Portals(None, None),
    "sandbox": Portals("https://security.microsoft.com", "https://intune.microsoft.com"),
}

DEFENDER_SWITCH = (
    "Microsoft Defender portal: Settings > Endpoints > Advanced features > Microsoft Intune connection: On"
)
INTUNE_CONNECTOR = (
    "Intune admin center: Tenant administration > Connectors and tokens > Microsoft Defender for Endpoint"
)
ANDROID_APP_TOGGLE = (
    f"{INTUNE_CONNECTOR} > App Protection Policy Settings > Connect Android devices to Microsoft Defender "
    "for Endpoint for app protection policy evaluation: On"
)

PARTNER_STATE_EXPLAINED: dict[str, tuple[str, str]] = {
    "available": (
        "The Defender-Intune connection is set up, but no platform toggle is on in Intune, so Intune uses "
        "Defender's signal for no platform yet.",
        f"{ANDROID_APP_TOGGLE} (admins: the Enable request below, or `/mam connectors enable-android`).",
    ),
    "unavailable": (
        "Defender for Endpoint is not available to this tenant.",
        "Check the tenant's Defender for Endpoint licence (P1/P2 or E5) and that Defender is provisioned, "
        f"then {DEFENDER_SWITCH}.",
    ),
    "unresponsive": (
        "The connection stopped reporting for longer than its unresponsiveness threshold.",
        f"{DEFENDER_SWITCH} (turn it off and on again); the threshold is set on the {INTUNE_CONNECTOR} page.",
    ),
    "notSetUp": (
        "The Defender-Intune connection has never been set up.",
        f"{DEFENDER_SWITCH}; then open the {INTUNE_CONNECTOR} page and confirm it shows Enabled.",
    ),
    "error": (
        "The connector reports an error.",
        f"{DEFENDER_SWITCH} (off and on again); if it stays in error, open a Microsoft support case.",
    ),
}


@dataclass(frozen=True)
class Check:
    key: str
    title: str
    status: Status
    detail: str
    fix: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class ConnectorReport:
    checked_at: datetime
    connector: MtdConnector | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Everything needed for Defender's signal in Android app protection is in place."""
        return all(c.status in (Status.OK, Status.INFO, Status.WARN) for c in self.checks)

    @property
    def android_app_toggle_off(self) -> bool:
        return self.connector is not None and not self.connector.androidMobileApplicationManagementEnabled

    def check(self, key: str) -> Check | None:
        return next((c for c in self.checks if c.key == key), None)


class ConnectorReader(Protocol):
    def get_mde_connector(self) -> MtdConnector | None: ...


def check_connectors(
    graph: ConnectorReader, *, now: datetime, cloud: str = "global", permissions: list[Check] | None = None
) -> ConnectorReport:
    connector = graph.get_mde_connector()
    return evaluate(connector, now=now, portals=PORTALS.get(cloud, PORTALS["global"]),
                    extra=permissions or [])


def evaluate(connector: MtdConnector | None, *, now: datetime, portals: Portals,
             extra: list[Check] | None = None) -> ConnectorReport:
    """Pure: the checks for one connector as read from Graph (None: no MDE connector)."""
    if connector is None:
        checks = [Check(
            "connection", "Defender for Endpoint connection", Status.FAIL,
            "There is no Microsoft Defender for Endpoint connector in Intune: Defender's risk signal "
            "cannot reach app protection.",
            fix=f"{DEFENDER_SWITCH}; it then appears on the {INTUNE_CONNECTOR} page.",
            link=portals.defender_advanced_features,
        )]
        return ConnectorReport(now, None, checks + list(extra or []))
    checks = [
        _partner_state(connector, portals),
        _heartbeat(connector, now, portals),
        _android_app_protection(connector, portals),
        _info_toggles(connector),
        *(extra or []),
    ]
    return ConnectorReport(now, connector, checks)


def _partner_state(c: MtdConnector, portals: Portals) -> Check:
    state = c.partnerState or "unknown"
    if state == "enabled":
        return Check("connection", "Defender for Endpoint connection", Status.OK, "Enabled.")
    what, fix = PARTNER_STATE_EXPLAINED.get(
        state, (f"The connector is in state `{state}`.", f"{DEFENDER_SWITCH}, then re-check.")
    )
    # `available`: the connection exists and the fix is Intune's platform toggle, not the Defender switch
    link = portals.intune_mde_connector if state == "available" else portals.defender_advanced_features
    return Check("connection", "Defender for Endpoint connection", Status.FAIL,
                 f"State `{state}`: {what}", fix=fix, link=link)


def _heartbeat(c: MtdConnector, now: datetime, portals: Portals) -> Check:
    title = "Last heartbeat"
    threshold_days = c.partnerUnresponsivenessThresholdInDays
    if c.lastHeartbeatDateTime is None:
        return Check("heartbeat", title, Status.FAIL, "Defender has never sent a heartbeat.",
                     fix=DEFENDER_SWITCH, link=portals.defender_advanced_features)
    age = now - c.lastHeartbeatDateTime
    text = f"{format_age(age)} ago"
    if threshold_days is not None and age > timedelta(days=threshold_days):
        return Check("heartbeat", title, Status.FAIL,
                     f"{text}, beyond the {threshold_days}-day unresponsiveness threshold.",
                     fix=f"{DEFENDER_SWITCH} (off and on again).", link=portals.defender_advanced_features)
    if age > HEARTBEAT_WARN_AFTER:
        limit = f" (threshold {threshold_days} days)" if threshold_days is not None else ""
        return Check("heartbeat", title, Status.WARN,
                     f"{text}{limit}: the services normally sync at least daily.")
    limit = f"; threshold {threshold_days} days" if threshold_days is not None else ""
    return Check("heartbeat", title, Status.OK, f"{text}{limit}.")


def _android_app_protection(c: MtdConnector, portals: Portals) -> Check:
    title = "Android app protection evaluation"
    if c.androidMobileApplicationManagementEnabled:
        return Check("android_mam", title, Status.OK,
                     "On: app protection policies can use Defender's device threat level on Android.")
    return Check("android_mam", title, Status.FAIL,
                 "Off: app protection policies ignore Defender's threat level on Android devices.",
                 fix=ANDROID_APP_TOGGLE, link=portals.intune_mde_connector)


def _info_toggles(c: MtdConnector) -> Check:
    def onoff(value: bool | None) -> str:
        return "on" if value else "off"

    return Check(
        "other_toggles", "Other connector settings", Status.INFO,
        f"Android MDM compliance evaluation {onoff(c.androidEnabled)}; iOS MDM compliance "
        f"{onoff(c.iosEnabled)}; iOS app protection {onoff(c.iosMobileApplicationManagementEnabled)}.",
    )


def permissions_check(rows: list[PermissionRow]) -> Check:
    """For information: can the bot do the next steps (policies, assignments, the watch)?"""
    missing = [r for r in rows if not r.ok]
    if not missing:
        return Check("permissions", "Bot permissions", Status.INFO,
                     "The app registration holds every permission the next steps need.")
    lacking = sorted({m for r in missing for m in r.missing})
    features = ", ".join(r.feature.lower() for r in missing)
    return Check("permissions", "Bot permissions", Status.WARN,
                 f"Missing {', '.join(lacking)}: needed to {features}.",
                 fix="Entra admin center > App registrations > (the bot's app) > API permissions: add them "
                     "as application permissions, then Grant admin consent (see docs/app-registration.md).")


def format_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
