"""Signed Slack requests into the real Bolt app, with FakeSlack and the sandbox tenant behind it."""

from __future__ import annotations

import time

from bot.local import DEMO_APPROVER, DEMO_END_USER
from bot.manifest import load_manifest, manifest_bot_events, manifest_commands
from bot.sandbox import SandboxConfig
from commands.ids import Action
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.slack_requests import SIGNING_SECRET


def test_help_lists_what_an_admin_may_run(bot):
    response, _ = bot.command("help")
    body = ack_json(response)
    assert body["response_type"] == "ephemeral"
    text = block_text(body["blocks"])
    assert "/mam connectors" in text and "You are a mam-bot admin." in text


def test_help_for_someone_without_a_role_hides_role_commands(bot):
    text = block_text(ack_json(bot.command("help", user=DEMO_END_USER)[0])["blocks"])
    assert "/mam connectors" not in text
    assert "need a role you don't have (MAM_ADMINS / MAM_APPROVERS)" in text


def test_help_for_an_approver_names_only_the_role_they_lack(bot):
    text = block_text(ack_json(bot.command("help", user=DEMO_APPROVER)[0])["blocks"])
    assert "need a role you don't have (MAM_ADMINS)" in text


def test_help_says_nobody_can_request_changes_without_admins(make_bot):
    bot = make_bot(mam_admins=[])
    text = block_text(ack_json(bot.command("help", user=DEMO_APPROVER)[0])["blocks"])
    assert "nobody can request changes" in text


def test_empty_text_means_help(bot):
    assert ack_json(bot.command("")[0])["text"] == "mam-bot commands"


def test_bad_signature_is_401(bot):
    response, _ = bot.command("help", secret="not-the-secret")
    assert response.status == 401
    assert bot.audit() == []


def test_timestamp_six_minutes_old_is_401(bot):
    response, _ = bot.command("help", timestamp=int(time.time()) - 6 * 60)
    assert response.status == 401


def test_connectors_acks_a_checking_card_then_fills_it_in_once(bot):
    response, url = bot.command("connectors")
    ack = ack_json(response)
    assert "checking" in ack["text"].lower()
    assert "Checking the connector" in block_text(ack["blocks"])
    assert bot.slack.response_url_uses(url) == 1  # one update of five allowed
    final = [e for e in bot.slack.events if e.kind == "response" and e.replaced][-1]
    text = block_text(final.blocks)
    assert "Android app protection evaluation" in text and "Off" in text
    assert "Connectors and tokens &gt; Microsoft Defender for Endpoint" in text
    assert "Not ready" in text


def test_validate_is_an_alias_and_a_healthy_connector_is_ready(make_bot):
    from bot.sandbox.config import ConnectorConfig

    bot = make_bot(SandboxConfig(connector=ConnectorConfig(android_mam_enabled=True)))
    bot.command("validate")
    final = [e for e in bot.slack.events if e.kind == "response" and e.replaced][-1]
    assert "*Ready*" in block_text(final.blocks)


def test_absent_connector_explains_the_defender_portal_switch(make_bot):
    bot = make_bot(SandboxConfig(connector=None))
    bot.command("connectors")
    text = block_text([e for e in bot.slack.events if e.replaced][-1].blocks)
    assert "no Microsoft Defender for Endpoint connector" in text
    assert "Advanced features &gt; Microsoft Intune connection: On" in text


def test_a_missing_graph_permission_reaches_the_admin_as_a_sentence(make_bot):
    bot = make_bot(SandboxConfig(forbid={"/beta/deviceManagement/mobileThreatDefenseConnectors"}))
    bot.command("connectors")
    text = block_text([e for e in bot.slack.events if e.replaced][-1].blocks)
    assert "DeviceManagementServiceConfig.Read.All" in text
    assert "reference `" in text


def test_recheck_button_updates_the_card(bot):
    _, url = bot.click(Action.CONNECTORS_RECHECK)
    assert bot.slack.response_url_uses(url) == 1
    update = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "Android app protection evaluation" in block_text(update.blocks)


def test_check_again_twice_in_a_row_checks_once(bot):
    _, first = bot.click(Action.CONNECTORS_RECHECK)
    _, second = bot.click(Action.CONNECTORS_RECHECK)  # same card, a second later: that fresh already
    assert bot.slack.response_url_uses(first) == 1
    assert bot.slack.response_url_uses(second) == 0


def test_someone_without_a_role_is_refused_and_audited(bot):
    body = ack_json(bot.command("connectors", user=DEMO_END_USER)[0])
    assert body["response_type"] == "ephemeral"
    assert "Only mam-bot admins and approvers can run `/mam connectors`." in body["text"]
    rows = bot.audit()
    assert [(r.actor, r.outcome) for r in rows] == [(DEMO_END_USER, "refused")]
    assert bot.slack.calls == [] or all(c.method != "chat.postMessage" for c in bot.slack.calls)


def test_a_button_without_a_role_is_refused(bot):
    response, _ = bot.click(Action.CONNECTORS_RECHECK, user=DEMO_END_USER)
    assert response.status == 200
    refusals = [e for e in bot.slack.events if e.kind == "response"]
    assert refusals and "Only mam-bot admins and approvers can check the connector again." in refusals[-1].text
    assert bot.audit()[-1].outcome == "refused"


def test_an_unknown_button_is_refused_not_run(bot):
    response, _ = bot.click("drop_all_tables")
    assert response.status == 200
    assert bot.audit()[-1].outcome == "refused"


def test_unknown_subcommand_suggests_the_closest(bot):
    body = ack_json(bot.command("conectors")[0])
    assert "I don't know `/mam conectors`" in body["text"]
    assert "Did you mean `/mam connectors`" in body["text"]
    assert "Usage:" in body["text"]


def test_unknown_subcommand_text_is_escaped(bot):
    body = ack_json(bot.command("<!channel>")[0])
    assert "<!channel>" not in body["text"] and "&lt;!channel&gt;" in body["text"]


def test_malformed_arguments_get_the_usage_line(bot):
    body = ack_json(bot.command("connectors now please")[0])
    assert "takes no arguments" in body["text"] and "Usage: `/mam connectors`" in body["text"]
    body = ack_json(bot.command('help "unclosed')[0])
    assert "quote" in body["text"]


def test_every_command_is_audited(bot):
    bot.command("help")
    bot.command("connectors")
    bot.command("nope")
    outcomes = [(r.action, r.outcome) for r in bot.audit()]
    assert outcomes == [("/mam help", "accepted"), ("/mam connectors", "accepted"), ("/mam nope", "unknown")]
    assert all(r.correlation_id for r in bot.audit())


def test_unexpected_errors_become_an_apology_with_a_reference(bot, caplog):
    def boom():
        raise RuntimeError("database on fire")

    bot.deps.microsoft.graph.get_mde_connector = boom  # an injected failure, not a patch of the code under test
    bot.command("connectors")
    final = [e for e in bot.slack.events if e.replaced][-1]
    text = block_text(final.blocks)
    assert "Sorry, something went wrong" in text and "database on fire" not in text
    reference = text.split("reference: `")[1].split("`")[0]
    assert any(reference in r.getMessage() for r in caplog.records)


def test_app_home_is_published(bot):
    response = bot.event({"type": "app_home_opened", "user": DEMO_APPROVER, "channel": "D0HOME", "tab": "home",
                          "event_ts": str(time.time())})
    assert response.status == 200
    bot.deps.runner.wait_idle()
    home = bot.slack.home(DEMO_APPROVER)
    assert home is not None and "You are a mam-bot approver." in block_text(home["blocks"])


def test_the_manifest_and_the_app_register_the_same_commands_and_events(bot):
    manifest = load_manifest()
    assert manifest_commands(manifest) == bot.deps.registry.slack_commands
    assert manifest_bot_events(manifest) == bot.deps.registry.slack_events
    for command in manifest_commands(manifest):
        assert command == "/mam"
        assert bot.command("help")[0].status == 200


def test_signing_secret_is_really_required(bot):
    assert SIGNING_SECRET not in repr(bot.deps.settings)
