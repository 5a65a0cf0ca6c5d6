from datetime import UTC, datetime, timedelta

import pytest

from bot.microsoft.models import MtdConnector
from workflows.connectors import PORTALS, Status, evaluate, format_age

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTAL = PORTALS["global"]


def connector(**overrides):
    base = {
        "id": "fc780465-2017-40d4-a0c5-307022471b92",
        "partnerState": "enabled",
        "lastHeartbeatDateTime": (NOW - timedelta(hours=2)).isoformat(),
        "partnerUnresponsivenessThresholdInDays": 7,
        "androidEnabled": True,
        "androidMobileApplicationManagementEnabled": True,
        "iosEnabled": False,
        "iosMobileApplicationManagementEnabled": False,
    }
    base.update(overrides)
    return MtdConnector.model_validate(base)


def test_healthy_connector_is_ready():
    report = evaluate(connector(), now=NOW, portals=PORTAL)
    assert report.ready
    assert report.check("heartbeat").detail == "2 h ago; threshold 7 days."


def test_absent_connector_explains_the_defender_switch():
    report = evaluate(None, now=NOW, portals=PORTAL)
    assert not report.ready
    check = report.check("connection")
    assert check.status is Status.FAIL
    assert "Advanced features > Microsoft Intune connection: On" in check.fix
    assert check.link.startswith("https://security.microsoft.com")


@pytest.mark.parametrize("state", ["available", "unavailable", "unresponsive", "notSetUp", "error", "weird"])
def test_every_other_partner_state_fails_with_a_fix(state):
    check = evaluate(connector(partnerState=state), now=NOW, portals=PORTAL).check("connection")
    assert check.status is Status.FAIL and check.fix and state in check.detail


def test_android_toggle_off_fails_with_the_intune_path():
    report = evaluate(connector(androidMobileApplicationManagementEnabled=False), now=NOW, portals=PORTAL)
    check = report.check("android_mam")
    assert check.status is Status.FAIL
    assert "Connectors and tokens > Microsoft Defender for Endpoint" in check.fix
    assert report.android_app_toggle_off and not report.ready


def test_heartbeat_ages():
    stale = evaluate(connector(lastHeartbeatDateTime=(NOW - timedelta(days=2)).isoformat()), now=NOW, portals=PORTAL)
    assert stale.check("heartbeat").status is Status.WARN
    dead = evaluate(connector(lastHeartbeatDateTime=(NOW - timedelta(days=9)).isoformat()), now=NOW, portals=PORTAL)
    assert dead.check("heartbeat").status is Status.FAIL
    never = evaluate(connector(lastHeartbeatDateTime=None), now=NOW, portals=PORTAL)
    assert never.check("heartbeat").status is Status.FAIL


def test_format_age():
    assert format_age(timedelta(seconds=30)) == "30 s"
    assert format_age(timedelta(minutes=30)) == "30 min"
    assert format_age(timedelta(hours=30)) == "30 h"
    assert format_age(timedelta(days=3)) == "3 days"


def test_available_means_set_up_with_no_platform_toggle_on_and_the_intune_toggle_is_the_fix():
    """Microsoft's MTD connector documentation: Available = set up, but no platform toggle is on in Intune."""
    check = evaluate(connector(partnerState="available"), now=NOW, portals=PORTAL).check("connection")
    assert "set up, but no platform toggle is on in Intune" in check.detail
    assert "Connect Android devices to Microsoft Defender for Endpoint" in check.fix
    assert "Advanced features" not in check.fix  # not the Defender switch: the connection exists
    assert check.link.startswith("https://intune.microsoft.com")
