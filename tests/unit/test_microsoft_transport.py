"""The shared HTTP path: paging, retries, Retry-After, typed errors, ids, budget (no real sleeping)."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.microsoft import (
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    RequestRejected,
    ServiceUnavailable,
    Throttled,
)
from bot.microsoft.budget import LocalBudget, RateLimit
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import AndroidPolicyDraft, ThreatLevel
from bot.microsoft.testing import FakeClock, Recorder, harness
from bot.microsoft.transport import parse_json

BETA = "https://graph.microsoft.com/beta"
CONNECTORS = "/beta/deviceManagement/mobileThreatDefenseConnectors"
POLICIES = "/beta/deviceAppManagement/androidManagedAppProtections"
REGISTRATIONS = "/beta/deviceAppManagement/managedAppRegistrations"


def registration(n: int) -> dict[str, object]:
    return {
        "@odata.type": "#microsoft.graph.androidManagedAppRegistration",
        "id": f"r{n}",
        "userId": f"u{n}",
        "appIdentifier": {
            "@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
            "packageId": "com.microsoft.teams",
        },
    }


def graph_error(status: int, code: str, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"request-id": "rid-1", **headers},
        json={
            "error": {
                "code": code,
                "message": message,
                "innerError": {"request-id": "rid-1", "date": "2026-01-01T00:00:00"},
            }
        },
    )


def test_paging_streams_every_next_link_page_lazily():
    rec = Recorder()
    pages = {
        None: {
            "value": [registration(1), registration(2)],
            "@odata.nextLink": f"{BETA}/deviceAppManagement/managedAppRegistrations?$skiptoken=p2",
        },
        "p2": {
            "value": [registration(3)],
            "@odata.nextLink": f"{BETA}/deviceAppManagement/managedAppRegistrations?$skiptoken=p3",
        },
        "p3": {"value": [registration(4)]},
    }
    rec.on(
        "GET", REGISTRATIONS, lambda req: httpx.Response(200, json=pages[req.url.params.get("$skiptoken")])
    )
    h = harness(rec)

    stream = h.clients.graph.iter_managed_app_registrations()
    first = next(stream)
    assert first.id == "r1" and first.is_android and first.packageId == "com.microsoft.teams"
    assert len(rec.sent("GET", REGISTRATIONS)) == 1  # nothing fetched ahead
    rest = [r.id for r in stream]
    assert rest == ["r2", "r3", "r4"]
    assert [r.url.params.get("$skiptoken") for r in rec.sent("GET", REGISTRATIONS)] == [None, "p2", "p3"]


def test_next_link_to_another_host_is_not_followed():
    rec = Recorder().on(
        "GET",
        REGISTRATIONS,
        httpx.Response(
            200, json={"value": [registration(1)], "@odata.nextLink": "https://evil.example/steal?x=1"}
        ),
    )
    h = harness(rec)
    with pytest.raises(MicrosoftError, match="another host"):
        list(h.clients.graph.iter_managed_app_registrations())
    assert all(r.url.host == "graph.microsoft.com" for r in rec.requests)


def test_429_waits_for_retry_after_on_the_injected_clock():
    rec = Recorder().on(
        "GET",
        CONNECTORS,
        graph_error(429, "TooManyRequests", **{"Retry-After": "7"}),
        httpx.Response(200, json={"value": []}),
    )
    h = harness(rec)
    assert h.clients.graph.list_mtd_connectors() == []
    assert h.clock.sleeps == [7.0]
    ids = {r.headers["client-request-id"] for r in rec.requests}
    assert len(ids) == 1  # a retry is the same call for Microsoft's logs


def test_retry_after_longer_than_the_caller_can_wait_is_surfaced():
    rec = Recorder().on("GET", CONNECTORS, graph_error(429, "TooManyRequests", **{"Retry-After": "120"}))
    h = harness(rec)
    with pytest.raises(Throttled) as err:
        h.clients.graph.list_mtd_connectors()
    assert err.value.retry_after == 120
    assert "try again in 120 s" in str(err.value)
    assert h.clock.sleeps == []
    # The sweep waits longer.
    rec2 = Recorder().on(
        "GET",
        CONNECTORS,
        graph_error(429, "TooManyRequests", **{"Retry-After": "120"}),
        httpx.Response(200, json={"value": []}),
    )
    h2 = harness(rec2)
    assert h2.clients.background().graph.list_mtd_connectors() == []
    assert h2.clock.sleeps == [120.0]


def test_429_without_retry_after_backs_off_exponentially_with_jitter():
    rec = Recorder().on(
        "GET",
        CONNECTORS,
        graph_error(429, "TooManyRequests"),
        graph_error(429, "TooManyRequests"),
        graph_error(429, "TooManyRequests"),
        httpx.Response(200, json={"value": []}),
    )
    h = harness(rec)
    h.clients.graph.list_mtd_connectors()
    first, second, third = h.clock.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0 and 1.0 <= third <= 2.0


def test_503_is_retried_then_surfaced():
    rec = Recorder().on("GET", CONNECTORS, graph_error(503, "ServiceUnavailable"))
    h = harness(rec)
    with pytest.raises(ServiceUnavailable) as err:
        h.clients.graph.list_mtd_connectors()
    assert len(rec.requests) == 4  # the interactive profile's attempts
    assert len(h.clock.sleeps) == 3
    assert err.value.status == 503 and err.value.request_id == "rid-1"
    assert "try again in a few minutes" in str(err.value)


def test_503_then_success():
    rec = Recorder().on(
        "GET",
        CONNECTORS,
        graph_error(503, "ServiceUnavailable"),
        httpx.Response(200, json={"value": [{"id": "x"}]}),
    )
    assert [c.id for c in harness(rec).clients.graph.list_mtd_connectors()] == ["x"]


def test_504_on_a_create_is_not_repeated():
    rec = Recorder().on("POST", POLICIES, graph_error(504, "GatewayTimeout"))
    h = harness(rec)
    draft = AndroidPolicyDraft(displayName="p", maximumAllowedDeviceThreatLevel=ThreatLevel.LOW)
    with pytest.raises(ServiceUnavailable):
        h.clients.graph.create_android_policy(draft)
    assert len(rec.requests) == 1  # a second POST could create a second policy


def test_connection_errors_are_retried():
    attempts = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"value": []})

    h = harness(Recorder().on("GET", CONNECTORS, flaky))
    assert h.clients.graph.list_mtd_connectors() == []
    assert attempts == 3 and len(h.clock.sleeps) == 2


def test_read_timeout_on_a_create_is_not_repeated_but_a_read_is():
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rec = Recorder().on("POST", POLICIES, timeout).on("GET", CONNECTORS, timeout)
    h = harness(rec)
    draft = AndroidPolicyDraft(displayName="p", maximumAllowedDeviceThreatLevel=ThreatLevel.LOW)
    with pytest.raises(ConnectionFailed, match="Couldn't reach Microsoft Graph"):
        h.clients.graph.create_android_policy(draft)
    assert len(rec.sent("POST", POLICIES)) == 1
    with pytest.raises(ConnectionFailed):
        h.clients.graph.list_mtd_connectors()
    assert len(rec.sent("GET", CONNECTORS)) == 4


def test_403_names_the_missing_permission_and_where_to_grant_it():
    rec = Recorder().on("GET", CONNECTORS, graph_error(403, "Forbidden", "Application is not authorized"))
    h = harness(rec)
    with pytest.raises(PermissionDenied) as err:
        h.clients.graph.list_mtd_connectors()
    message = str(err.value)
    assert err.value.permission == "DeviceManagementServiceConfig.Read.All"
    assert "DeviceManagementServiceConfig.Read.All" in message
    assert "Entra admin center > App registrations" in message and "API permissions" in message
    assert err.value.code == "Forbidden" and err.value.request_id == "rid-1"
    assert "request-id rid-1" in message and "client-request-id" in message
    assert err.value.detail == "Application is not authorized"


def test_write_403_names_the_readwrite_permission():
    rec = Recorder().on("PATCH", f"{POLICIES}/T_1", graph_error(403, "Forbidden"))
    with pytest.raises(PermissionDenied) as err:
        harness(rec).clients.graph.patch_android_policy("T_1", {"maximumAllowedDeviceThreatLevel": "low"})
    assert err.value.permission == "DeviceManagementApps.ReadWrite.All"


def test_401_signs_in_again_once_before_blaming_permissions():
    rec = Recorder().on(
        "GET",
        CONNECTORS,
        graph_error(401, "InvalidAuthenticationToken"),
        httpx.Response(200, json={"value": []}),
    )
    h = harness(rec)
    assert h.clients.graph.list_mtd_connectors() == []
    assert len(h.sign_in.token_calls) == 2
    tokens = [r.headers["Authorization"] for r in rec.requests]
    assert tokens[0] != tokens[1]

    rec2 = Recorder().on("GET", CONNECTORS, graph_error(401, "InvalidAuthenticationToken"))
    with pytest.raises(PermissionDenied, match="rejected the bot's token"):
        harness(rec2).clients.graph.list_mtd_connectors()
    assert len(rec2.requests) == 2


def test_404_says_what_was_not_found():
    rec = Recorder().on("GET", f"{POLICIES}/T_gone", graph_error(404, "ResourceNotFound"))
    with pytest.raises(NotFound, match="Android app protection policy T_gone was not found"):
        harness(rec).clients.graph.get_android_policy("T_gone")


def test_400_keeps_graphs_message():
    rec = Recorder().on("PATCH", f"{POLICIES}/T_1", graph_error(400, "BadRequest", "Invalid value for level"))
    with pytest.raises(RequestRejected, match="Invalid value for level"):
        harness(rec).clients.graph.patch_android_policy("T_1", {"displayName": "x"})


def test_each_call_has_its_own_client_request_id_and_the_log_pairs_it_with_request_id(caplog):
    rec = Recorder().on(
        "GET", CONNECTORS, httpx.Response(200, headers={"request-id": "ms-42"}, json={"value": []})
    )
    h = harness(rec)
    with caplog.at_level(logging.DEBUG, logger="bot.microsoft"):
        h.clients.graph.list_mtd_connectors()
        h.clients.graph.list_mtd_connectors()
    ids = [r.headers["client-request-id"] for r in rec.requests]
    assert len(set(ids)) == 2
    assert any(ids[0] in m and "ms-42" in m for m in caplog.messages)
    bearer = rec.requests[0].headers["Authorization"].split()[1]
    assert all(bearer not in m for m in caplog.messages)  # never log a token


def test_budget_paces_calls_instead_of_meeting_429s():
    clock = FakeClock()
    budget = LocalBudget({"graph": (RateLimit(3, 20.0), RateLimit(1, 20.0, writes_only=True))}, clock=clock)
    assert [budget.reserve("graph") for _ in range(3)] == [0, 0, 0]
    assert budget.reserve("graph") == pytest.approx(20.0)
    clock.advance(5)
    assert budget.reserve("graph") == pytest.approx(15.0)
    clock.advance(15)
    assert budget.reserve("graph", write=True) == 0
    assert budget.reserve("graph", write=True) == pytest.approx(20.0)
    assert budget.reserve("defender") == 0  # no limits configured for it


def test_budget_counts_batches_and_sliding_windows():
    clock = FakeClock()
    budget = LocalBudget({"defender": (RateLimit(90, 60.0), RateLimit(1400, 3600.0))}, clock=clock)
    for _ in range(1400):
        while (wait := budget.reserve("defender")) > 0:
            clock.advance(wait)
    # 1,400 calls at 90/minute take a bit over 15 minutes; the hourly window is now full.
    assert 15 * 60 <= clock.now - 1000 < 16 * 60
    assert budget.reserve("defender") > 40 * 60
    assert budget.reserve("graph", count=20) == 0


def test_session_sleeps_on_the_budget_and_gives_up_beyond_the_callers_patience():
    rec = Recorder().on("GET", CONNECTORS, httpx.Response(200, json={"value": []}))

    class Budget:
        def __init__(self) -> None:
            self.calls = 0

        def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
            self.calls += 1
            return 10.0 if self.calls == 1 else 0.0

    h = harness(rec, budget=Budget())
    h.clients.graph.list_mtd_connectors()
    assert h.clock.sleeps == [10.0]

    class Exhausted:
        def reserve(self, api: str, *, count: int = 1, write: bool = False) -> float:
            return 3600.0

    h2 = harness(rec, budget=Exhausted())
    with pytest.raises(Throttled, match="pacing its calls"):
        h2.clients.graph.list_mtd_connectors()
    assert h2.clock.sleeps == []


def test_parse_json_tolerates_a_bom_and_empty_bodies():
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert parse_json(b"") is None
