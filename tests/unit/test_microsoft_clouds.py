"""Every cloud's Graph, Defender and sign-in hosts, and the token audience for each API."""

from __future__ import annotations

import httpx
import pytest

from bot.microsoft import ApiUnavailable, build_clients
from bot.microsoft.testing import FakeSignIn, Recorder, global_settings, harness
from bot.settings import SettingsError

CLOUDS = {
    # cloud: (graph host, defender host, sign-in host, defender token resource)
    "global": (
        "graph.microsoft.com",
        "api.security.microsoft.com",
        "login.microsoftonline.com",
        "https://api.securitycenter.microsoft.com",
    ),
    "gcc": (
        "graph.microsoft.com",
        "api-gcc.securitycenter.microsoft.us",
        "login.microsoftonline.com",
        "https://api-gcc.securitycenter.microsoft.us",
    ),
    "gcc-high": (
        "graph.microsoft.us",
        "api-gov.securitycenter.microsoft.us",
        "login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
    ),
    "dod": (
        "dod-graph.microsoft.us",
        "api-gov.securitycenter.microsoft.us",
        "login.microsoftonline.us",
        "https://api-gov.securitycenter.microsoft.us",
    ),
}


def answer_everything(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"value": []})


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_each_cloud_calls_its_own_hosts_with_tokens_for_them(cloud):
    graph_host, defender_host, login_host, defender_resource = CLOUDS[cloud]
    rec = Recorder()
    rec.on("GET", "/beta/deviceManagement/mobileThreatDefenseConnectors", answer_everything)
    rec.on("GET", "/api/machines", answer_everything)
    h = harness(rec, settings=global_settings(mam_cloud=cloud))

    h.clients.graph.list_mtd_connectors()
    list(h.clients.defender.iter_machines())

    assert [r.url.host for r in rec.requests] == [graph_host, defender_host]
    assert {c.host for c in h.sign_in.calls} == {login_host}
    assert [c.data["scope"] for c in h.sign_in.token_calls] == [
        f"https://{graph_host}/.default",
        f"{defender_resource}/.default",
    ]
    # A known Microsoft sign-in host needs no instance discovery.
    assert not any(c.path.endswith("/discovery/instance") for c in h.sign_in.calls)


def test_china_has_graph_but_no_defender_host_unless_one_is_set():
    h = harness(
        Recorder().on("GET", "/beta/deviceManagement/mobileThreatDefenseConnectors", answer_everything),
        settings=global_settings(mam_cloud="china"),
    )
    h.clients.graph.list_mtd_connectors()
    assert h.recorder.requests[0].url.host == "microsoftgraph.chinacloudapi.cn"
    assert {c.host for c in h.sign_in.calls} == {"login.chinacloudapi.cn"}
    assert not h.clients.defender.available
    with pytest.raises(ApiUnavailable, match="MAM_DEFENDER_URL"):
        list(h.clients.defender.iter_android_machines())
    assert set(h.clients.granted_roles()) == {"graph"}


def test_a_custom_sign_in_host_turns_instance_discovery_off():
    sign_in = FakeSignIn(roles={"https://graph.microsoft.com": ["Group.Read.All"]})
    rec = Recorder().on("GET", "/v1.0/groups/g1", httpx.Response(200, json={"id": "g1"}))
    h = harness(
        rec, settings=global_settings(mam_authority_url="https://login.contoso-sts.example"), sign_in=sign_in
    )
    h.clients.graph.get_group("g1")
    assert {c.host for c in sign_in.calls} == {"login.contoso-sts.example"}
    assert not any(c.path.endswith("/discovery/instance") for c in sign_in.calls)
    assert sign_in.token_calls[0].path == "/contoso.onmicrosoft.com/oauth2/v2.0/token"


def test_host_overrides_move_the_calls_but_not_the_token_audience():
    rec = Recorder().on("GET", "/api/machines", answer_everything)
    h = harness(rec, settings=global_settings(mam_defender_url="https://eu.api.security.microsoft.com"))
    list(h.clients.defender.iter_machines())
    assert rec.requests[0].url.host == "eu.api.security.microsoft.com"
    assert h.sign_in.token_calls[0].data["scope"] == "https://api.securitycenter.microsoft.com/.default"


def test_sandbox_uses_its_base_urls_and_a_static_token_without_sign_in():
    rec = Recorder().on("GET", "/beta/deviceManagement/mobileThreatDefenseConnectors", answer_everything)
    rec.on("GET", "/api/machines", answer_everything)
    sign_in = FakeSignIn()
    clients = build_clients(
        global_settings(mam_cloud="sandbox"), rec.transport(), sign_in_http_client=sign_in
    )
    clients.graph.list_mtd_connectors()
    list(clients.defender.iter_machines())
    assert [str(r.url).split("?")[0] for r in rec.requests] == [
        "http://graph.sandbox.invalid/beta/deviceManagement/mobileThreatDefenseConnectors",
        "http://defender.sandbox.invalid/api/machines",
    ]
    assert rec.requests[0].headers["Authorization"] == "Bearer sandbox-token"
    assert sign_in.calls == []
    roles = clients.granted_roles()
    assert "DeviceManagementApps.ReadWrite.All" in roles["graph"] and roles["defender"] == {
        "Machine.Read.All"
    }
    clients.close()


def test_in_process_sandbox_needs_its_transport():
    with pytest.raises(SettingsError, match="sandbox"):
        build_clients(global_settings(mam_cloud="sandbox"))


def test_building_clients_touches_no_network():
    sign_in = FakeSignIn()
    with build_clients(global_settings(), Recorder().transport(), sign_in_http_client=sign_in) as clients:
        assert clients.graph is not None
    assert sign_in.calls == []
