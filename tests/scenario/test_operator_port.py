"""The operator's port of a real `mam-bot serve` and `mam-bot run`: /metrics moves with what the bot does,
/healthz and /livez answer, and /metrics is never on the port Slack reaches (issue 17, item 2)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SEED_POLICY_ID
from commands.ids import Action
from tests.scenario.conftest import block_text
from tests.scenario.live import TRANSPORTS, LiveBot, start_bot, wait_until
from workflows.connector_change import ANDROID_MAM

pytestmark = pytest.mark.http

WHY = "turn on MAM threat signals for the pilot (CHG0042)"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(bot: LiveBot) -> Samples:
    response = httpx.get(f"{bot.operator}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.fixture(params=TRANSPORTS)
def bot(request, tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    live = start_bot(request.param, tmp_path, slack, MAM_GRAPH_URL=sandbox.url, MAM_DEFENDER_URL=sandbox.url)
    try:
        yield live
    finally:
        live.stop()


def test_metrics_move_with_what_the_bot_does(bot, slack, sandbox):
    assert httpx.get(f"{bot.operator}/livez", timeout=5).json()["status"] == "alive"
    ready = wait_until(lambda: httpx.get(f"{bot.operator}/healthz", timeout=5), what="readiness")
    wait_until(lambda: httpx.get(f"{bot.operator}/healthz", timeout=5).status_code == 200, what="ready")
    ready = httpx.get(f"{bot.operator}/healthz", timeout=5).json()
    assert ready["database"] == "sqlite"
    if bot.transport == "socket":
        assert ready["slack"] == "connected"
    wait_until(lambda: total(scrape(bot), "mam_leader") == 1, timeout=30, what="this process leading")
    before = scrape(bot)
    assert total(before, "mam_database_up") == 1

    # a command, a Graph read, a change filed and approved (a Graph write), a sweep, and Slack limiting the bot
    bot.command("help")
    bot.command("connectors")
    payload, _ = bot.command(f"connectors enable-android {WHY}")
    assert "Filing a change request" in payload["text"]
    card = wait_until(lambda: [m for m in slack.messages(DEMO_APPROVER) if "Change request #" in m.text],
                      what="the approval card")[-1]
    pending = scrape(bot)
    assert total(pending, "mam_change_requests", state="pending") == total(before, "mam_change_requests",
                                                                            state="pending") + 1
    request_id = card.text.split("#")[1].split(":")[0].split()[0]
    slack.rate_limit("chat.update", 0.01, burst=1)  # the card's updates meet a 429 or two
    bot.click(Action.APPROVE, user=DEMO_APPROVER, value=request_id, channel=card.channel, message_ts=card.ts)
    wait_until(lambda: sandbox.tenant.connector()[ANDROID_MAM], what="the change executed")
    sandbox.tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "medium",
                                                          "mobileThreatDefenseRemediationAction": "block"}, True)
    bot.command("sweep")  # a policy now checks the threat level: the sweep reads Defender
    wait_until(lambda: [m for m in slack.ephemerals(DEMO_ADMIN) if "Threat sweep done" in block_text(m.blocks)],
               timeout=60, what="the sweep's result")

    def settled() -> Samples | None:
        now = scrape(bot)
        done = total(now, "mam_change_requests", state="succeeded") > total(before, "mam_change_requests",
                                                                             state="succeeded")
        return now if done and total(now, "mam_slack_rate_limited_total", method="chat.update") > 0 else None

    after = wait_until(settled, timeout=30, what="the change succeeded and a 429 counted")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("mam_slack_ack_seconds_count", surface="command") == 4
    assert moved("mam_slack_ack_seconds_count", surface="button") == 1
    assert total(after, "mam_slack_ack_seconds_bucket", surface="command", le="3.0") >= 4  # within Slack's 3 s
    assert moved("mam_slack_api_calls_total", method="chat.postMessage") >= 1
    assert moved("mam_slack_api_calls_total", method="chat.update", status="429") >= 1
    graph = "/beta/deviceManagement/mobileThreatDefenseConnectors/{id}"
    assert moved("mam_microsoft_requests_total", api="graph", endpoint=graph, method="PATCH", status="200") == 1
    assert moved("mam_microsoft_request_seconds_count", api="graph") >= 3
    assert moved("mam_microsoft_requests_total", api="defender", endpoint="/api/machines") >= 1
    assert moved("mam_change_requests", state="succeeded") == 1
    sweep = total(after, "mam_job_last_success_timestamp_seconds", job="threat-sweep")
    assert sweep > total(before, "mam_job_last_success_timestamp_seconds", job="threat-sweep")
    assert total(after, "mam_job_interval_seconds", job="threat-sweep") == 300
    # the index and the licences tick every few minutes but run when their data is this old
    assert total(after, "mam_job_interval_seconds", job="registrations-index") == 3600
    assert total(after, "mam_job_interval_seconds", job="licences") == 24 * 3600
    if bot.transport == "socket":
        assert total(after, "mam_slack_connected") == 1
    else:
        assert ("mam_slack_connected", ()) not in after  # `serve` holds no link
    assert not any(name.endswith("_created") for name, _ in after)
    assert total(after, "mam_job_last_success_duration_seconds", job="threat-sweep") >= 0
    assert total(after, "mam_enforcement") == 1  # the sweep read the connector, now enforcing
    assert ("mam_outbox_oldest_age_seconds", ()) in after and ("mam_blocked_users", ()) in after
    assert ("mam_onboardings_pending", ()) in after and total(after, "mam_microsoft_throttled_total") == 0


def test_the_slack_port_has_health_but_never_metrics(tmp_path, slack, sandbox):
    bot = start_bot("http", tmp_path, slack)
    try:
        assert httpx.get(f"{bot.base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{bot.base}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{bot.base}/livez", timeout=5).status_code == 404
        assert bot.base != bot.operator
        assert httpx.get(f"{bot.operator}/slack/events", timeout=5).status_code == 404
    finally:
        bot.stop()
