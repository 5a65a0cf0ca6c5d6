"""The first change kind: turn a writable boolean of the Defender connector on or off.

Executed as a read-modify-write of all its writable booleans (the connector endpoint is reported
to replace state rather than merge it), applying only the approved flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bot.errors import UserError
from bot.microsoft import CONNECTOR_WRITABLE_FLAGS
from bot.microsoft.bodies import connector_patch_body
from bot.microsoft.graph import CONNECTORS
from bot.microsoft.models import MtdConnector
from workflows.changes import GraphCall, Outcome, Plan
from workflows.execution import Execution

KIND = "connector_toggle"
ANDROID_MAM = "androidMobileApplicationManagementEnabled"

FLAG_LABELS = {
    ANDROID_MAM: "Android app protection evaluation",
    "androidEnabled": "Android MDM compliance evaluation",
    "iosEnabled": "iOS MDM compliance evaluation",
    "iosMobileApplicationManagementEnabled": "iOS app protection evaluation",
}


class ConnectorGraph(Protocol):
    def get_mde_connector(self) -> MtdConnector | None: ...

    def update_connector(self, connector_id: str, **flags: bool) -> MtdConnector: ...


def onoff(value: object) -> str:
    return "on" if value else "off"


class ConnectorToggle:
    name = KIND

    def __init__(self, graph: ConnectorGraph) -> None:
        self.graph = graph

    def plan(self, change: Mapping[str, Any]) -> Plan:
        flag, value = self._parse(change)
        connector = self._connector()
        current = getattr(connector, flag)
        if bool(current) is value:
            raise UserError(f"{FLAG_LABELS.get(flag, flag)} is already {onoff(value)}: there is nothing to change.")
        snapshot = {name: getattr(connector, name) for name in CONNECTOR_WRITABLE_FLAGS}
        path = f"{CONNECTORS}/{connector.id}"
        return Plan(
            title=f"Turn {onoff(value)} {FLAG_LABELS.get(flag, flag)}",
            target=f"Defender for Endpoint connector {connector.id}",
            change={"flag": flag, "value": value},
            snapshot=snapshot,
            calls=[GraphCall("GET", path), GraphCall("PATCH", path, connector_patch_body(connector, {flag: value}))],
            before=f"{flag}: {onoff(current)}",
            after=f"{flag}: {onoff(value)}",
            key=f"connector:{connector.id}",
        )

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome:
        flag, value = self._parse(change)
        connector = self._connector()
        drift = [
            f"{name} changed from {onoff(snapshot[name])} to {onoff(getattr(connector, name))} since the request "
            "(kept as it is now)"
            for name in CONNECTOR_WRITABLE_FLAGS
            if name != flag and name in snapshot and bool(snapshot[name]) != bool(getattr(connector, name))
        ]
        if bool(getattr(connector, flag)) is value:
            if run.earlier_intent.get(flag) is value:  # this change's own write, from the run that stopped
                return Outcome(True, f"{flag} is now {onoff(value)} (written by the earlier run of this change).",
                               drift)
            return Outcome(False, f"{flag} was already {onoff(value)}: no change made.", drift)
        run.intend({flag: value})
        updated = self.graph.update_connector(connector.id, **{flag: value})
        if bool(getattr(updated, flag)) is not value:
            raise UserError(f"Graph accepted the change but {flag} still reads {onoff(getattr(updated, flag))}.")
        return Outcome(True, f"{flag} is now {onoff(value)}.", drift)

    def _connector(self) -> MtdConnector:
        connector = self.graph.get_mde_connector()
        if connector is None:
            raise UserError("There is no Defender for Endpoint connector in Intune yet: turn on Microsoft Defender "
                            "portal: Settings > Endpoints > Advanced features > Microsoft Intune connection first.")
        return connector

    @staticmethod
    def _parse(change: Mapping[str, Any]) -> tuple[str, bool]:
        flag = str(change.get("flag", ""))
        if flag not in CONNECTOR_WRITABLE_FLAGS:
            raise UserError(f"{flag!r} is not a writable connector setting.")
        return flag, bool(change.get("value"))
