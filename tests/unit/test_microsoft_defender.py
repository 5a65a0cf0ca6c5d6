"""Defender for Endpoint machines: paging ($top up to 10,000, nextLink or $skip), Android filter, errors."""

from __future__ import annotations

import httpx
import pytest

from bot.microsoft import PermissionDenied
from bot.microsoft.testing import Recorder, harness

MACHINES = "/api/machines"
HOST = "https://api.security.microsoft.com"


def machine(n: int, platform: str = "Android", **extra: object) -> dict[str, object]:
    return {
        "id": f"m{n}",
        "computerDnsName": f"phone-{n}",
        "osPlatform": platform,
        "riskScore": "Medium",
        "aadDeviceId": f"aad-{n}",
        "healthStatus": "Active",
        "onboardingStatus": "onboarded",
        "lastSeen": "2026-01-01T10:00:00Z",
        "machineTags": None,
        "exposureLevel": "Low",
        **extra,
    }


def test_android_machines_stream_across_next_links_with_a_large_top():
    pages = {
        None: {
            "value": [machine(1), machine(2, "Windows11"), machine(3, "android")],
            "@odata.nextLink": f"{HOST}/api/machines?$top=10000&$skiptoken=2",
        },
        "2": {"value": [machine(4, "ANDROID")]},
    }
    rec = Recorder().on(
        "GET", MACHINES, lambda r: httpx.Response(200, json=pages[r.url.params.get("$skiptoken")])
    )
    h = harness(rec)
    machines = list(h.clients.defender.iter_android_machines())

    assert [m.id for m in machines] == ["m1", "m3", "m4"]
    first = machines[0]
    assert (first.riskScore, first.aadDeviceId, first.healthStatus, first.onboardingStatus) == (
        "Medium",
        "aad-1",
        "Active",
        "onboarded",
    )
    assert first.lastSeen is not None and first.machineTags == []
    assert rec.requests[0].url.params["$top"] == "10000"
    assert all(r.url.host == "api.security.microsoft.com" for r in rec.requests)
    assert rec.requests[0].headers["Authorization"].startswith("Bearer ")


def test_without_next_links_a_full_page_asks_for_the_next_with_skip():
    def page(request: httpx.Request) -> httpx.Response:
        skip = int(request.url.params.get("$skip", 0))
        top = int(request.url.params["$top"])
        items = [machine(n) for n in range(skip, min(skip + top, 5))]
        return httpx.Response(200, json={"value": items})

    rec = Recorder().on("GET", MACHINES, page)
    machines = list(harness(rec).clients.defender.iter_android_machines(page_size=2))
    assert [m.id for m in machines] == ["m0", "m1", "m2", "m3", "m4"]
    assert [r.url.params.get("$skip") for r in rec.requests] == [None, "2", "4"]


def test_page_size_is_capped_at_defenders_maximum():
    rec = Recorder().on("GET", MACHINES, httpx.Response(200, json={"value": []}))
    list(harness(rec).clients.defender.iter_machines(page_size=50_000))
    assert rec.requests[0].url.params["$top"] == "10000"


def test_no_recent_machines_is_404_and_means_none():
    rec = Recorder().on("GET", MACHINES, httpx.Response(404, json={"error": {"code": "NotFound"}}))
    assert list(harness(rec).clients.defender.iter_android_machines()) == []


def test_defender_403_names_machine_read_all_under_windows_defender_atp():
    rec = Recorder().on(
        "GET",
        MACHINES,
        httpx.Response(
            403,
            json={
                "error": {
                    "code": "Forbidden",
                    "message": "The application does not have any of the required application roles",
                    "target": "6e8c5b0d",
                }
            },
        ),
    )
    with pytest.raises(PermissionDenied) as err:
        list(harness(rec).clients.defender.iter_android_machines())
    assert err.value.permission == "Machine.Read.All"
    assert "APIs my organization uses > WindowsDefenderATP" in str(err.value)
    assert err.value.api == "defender"


def test_defender_429_is_honoured_by_the_background_sweep():
    rec = Recorder().on(
        "GET",
        MACHINES,
        httpx.Response(429, headers={"Retry-After": "45"}),
        httpx.Response(200, json={"value": [machine(1)]}),
    )
    h = harness(rec)
    assert [m.id for m in h.clients.background().defender.iter_android_machines()] == ["m1"]
    assert h.clock.sleeps == [45.0]
