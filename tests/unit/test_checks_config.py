"""`mam-bot check`: Slack's verdict on the token, the quorum against real approvers, sign-in apart from permissions."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.checks import CheckReport, Line, run_checks
from bot.console.fake_slack import FakeSlack
from bot.microsoft.testing import FakeSignIn, global_settings
from bot.settings import Settings

GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"
ALL_GRAPH = ["DeviceManagementServiceConfig.ReadWrite.All", "DeviceManagementApps.ReadWrite.All", "Group.Read.All",
             "User.Read.All"]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(usergroups={"S0APPROVE": ["UAPPROV01", "UAPPROV02"]}).start()
    yield fake
    fake.stop()


def sandbox(tmp_path: Path, slack: FakeSlack | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mam_cloud": "sandbox", "mam_graph_url": None, "mam_defender_url": None, "mam_authority_url": None,
        "database_url": f"sqlite:///{tmp_path}/check.db", "slack_bot_token": None, "slack_app_token": None,
        "slack_signing_secret": None, "mam_admins": ["UADMIN001"], "mam_approvers": [],
    }
    if slack is not None:
        values.update(slack_bot_token="xoxb-dummy", slack_app_token="xapp-1", slack_signing_secret="s",
                      slack_api_url=slack.api_url)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def line(report: CheckReport, topic: str) -> Line:
    found = [entry for entry in report.lines if entry.topic == topic]
    assert len(found) == 1, report.render()
    return found[0]


# --- Slack -------------------------------------------------------------------------------------------


def test_a_token_slack_refuses_fails_the_check_and_no_slack_mode_is_ready(tmp_path, slack):
    slack.fail_next("auth.test", "invalid_auth")
    report = run_checks(sandbox(tmp_path, slack))
    token = line(report, "SLACK_BOT_TOKEN")
    assert token.ok is False and "Slack refused it (invalid_auth)" in token.text
    assert line(report, "mode run").ok is False and line(report, "mode serve").ok is False
    assert line(report, "mode serve").text == "not ready: Slack refused SLACK_BOT_TOKEN (see below)"
    assert line(report, "mode console").text == "ready"  # the console's Slack is simulated
    assert not report.ok and "FAIL  SLACK_BOT_TOKEN" in report.render()


def test_a_token_slack_accepts_is_named_and_the_modes_are_ready(tmp_path, slack):
    report = run_checks(sandbox(tmp_path, slack))
    assert [c.method for c in slack.calls].count("auth.test") == 1
    token = line(report, "SLACK_BOT_TOKEN")
    assert token.ok is True and token.text.startswith("valid: the bot is @")
    assert line(report, "mode run").text == "ready" and line(report, "mode serve").text == "ready"
    assert report.ok, report.render()


def test_an_unreachable_slack_fails_the_check(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = sandbox(tmp_path, slack_bot_token="xoxb-1", slack_api_url=f"http://127.0.0.1:{port}/api/")
    token = line(run_checks(settings), "SLACK_BOT_TOKEN")
    assert token.ok is False and f"could not reach Slack at http://127.0.0.1:{port}/api/" in token.text


def test_without_a_token_slack_is_not_asked(tmp_path):
    report = run_checks(sandbox(tmp_path))
    assert line(report, "SLACK_BOT_TOKEN").ok is None
    assert line(report, "mode run").text.startswith("needs SLACK_APP_TOKEN, SLACK_BOT_TOKEN")


# --- the approval quorum -----------------------------------------------------------------------------


def test_a_quorum_above_the_approvers_fails(tmp_path, slack):
    report = run_checks(sandbox(tmp_path, slack, mam_approvers=["UAPPROV01", "UAPPROV02"], mam_approval_quorum=3))
    quorum = line(report, "MAM_APPROVAL_QUORUM")
    assert quorum.ok is False
    assert quorum.text.startswith("3, but MAM_APPROVERS gives only 2 approvers: every change request would expire")
    assert not report.ok


def test_user_group_members_count_as_approvers(tmp_path, slack):
    settings = sandbox(tmp_path, slack, mam_approvers=["S0APPROVE", "UAPPROV03"], mam_approval_quorum=3)
    quorum = line(run_checks(settings), "MAM_APPROVAL_QUORUM")
    assert quorum.ok is True and quorum.text.startswith("3: 3 approvers can approve")
    assert [c.args.get("usergroup") for c in slack.calls_to("usergroups.users.list")] == ["S0APPROVE"]


def test_a_group_member_named_twice_counts_once(tmp_path, slack):
    settings = sandbox(tmp_path, slack, mam_approvers=["S0APPROVE", "UAPPROV01"], mam_approval_quorum=3)
    assert line(run_checks(settings), "MAM_APPROVAL_QUORUM").ok is False


def test_an_admin_who_also_approves_cannot_count_for_their_own_requests(tmp_path, slack):
    settings = sandbox(tmp_path, slack, mam_admins=["UAPPROV01"], mam_approvers=["UAPPROV01", "UAPPROV02"],
                       mam_approval_quorum=2)
    quorum = line(run_checks(settings), "MAM_APPROVAL_QUORUM")
    assert quorum.ok is False
    assert "UAPPROV01 is an admin and an approver" in quorum.text and "only 1 approval" in quorum.text


def test_unreadable_groups_are_said_not_guessed(tmp_path):
    settings = sandbox(tmp_path, mam_approvers=["S0APPROVE", "UAPPROV03"], mam_approval_quorum=2)
    quorum = line(run_checks(settings), "MAM_APPROVAL_QUORUM")
    assert quorum.ok is None and "only 1 approver known" in quorum.text and "S0APPROVE" in quorum.text


# --- the database ------------------------------------------------------------------------------------


def test_a_sqlite_file_in_a_missing_directory_is_one_failed_line(tmp_path):
    report = run_checks(sandbox(tmp_path, database_url=f"sqlite:///{tmp_path}/nope/mam.db"))
    database = line(report, "DATABASE_URL")
    assert database.ok is False
    assert database.text.startswith(f"could not open the SQLite file {tmp_path}/nope/mam.db "
                                    f"(the directory {tmp_path}/nope does not exist); expected ")


def test_an_unreachable_postgres_names_host_and_reason_without_the_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = run_checks(sandbox(tmp_path, database_url=f"postgresql://bot:hunter2@127.0.0.1:{port}/mam"))
    database = line(report, "DATABASE_URL")
    assert database.ok is False and "hunter2" not in report.render()
    assert database.text.startswith(f"could not connect to PostgreSQL at 127.0.0.1:{port}/mam (connection refused)")


# --- Microsoft: sign-in apart from permissions -------------------------------------------------------


def test_a_failed_sign_in_is_one_line_with_host_and_reason_and_no_missing_permissions(tmp_path):
    sign_in = FakeSignIn()
    sign_in.error = {"error": "invalid_client", "error_codes": [7000215],
                     "error_description": "AADSTS7000215: Invalid client secret provided."}
    settings = global_settings(database_url=f"sqlite:///{tmp_path}/check.db")
    report = run_checks(settings, sign_in_http_client=sign_in)
    failed = [entry for entry in report.lines if entry.ok is False]
    assert [entry.topic for entry in failed] == ["Microsoft sign-in"], report.render()
    assert failed[0].text == (
        "https://login.microsoftonline.com: AZURE_CLIENT_SECRET is not a valid secret of this app registration "
        "(use the secret's Value, not its Secret ID) (error code AADSTS7000215) "
        "(for Microsoft Graph and the Microsoft Defender for Endpoint API)")
    assert not any(entry.topic.startswith("feature") for entry in report.lines)
    assert line(report, "permissions").text.startswith("not checked until sign-in works: connector-status")


def test_an_unreachable_sign_in_host_is_said_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = global_settings(database_url=f"sqlite:///{tmp_path}/check.db",
                               mam_authority_url=f"https://127.0.0.1:{port}")
    report = run_checks(settings)
    failed = [entry for entry in report.lines if entry.ok is False]
    assert len(failed) == 1, report.render()
    assert failed[0].topic == "Microsoft sign-in"
    assert failed[0].text.startswith(f"could not reach https://127.0.0.1:{port} (connection refused)")
    assert "missing" not in report.render()


def test_a_missing_permission_is_a_feature_row_not_a_sign_in_failure(tmp_path):
    sign_in = FakeSignIn(roles={GRAPH: ["DeviceManagementServiceConfig.Read.All", "DeviceManagementApps.Read.All"],
                                DEFENDER: ["Machine.Read.All"]})
    report = run_checks(global_settings(database_url=f"sqlite:///{tmp_path}/check.db"), sign_in_http_client=sign_in)
    assert not any(entry.topic.startswith("Microsoft sign-in") for entry in report.lines)
    assert line(report, "feature connector-status").ok is True
    enable = line(report, "feature connector-enable")
    assert enable.ok is False
    assert enable.text.endswith("missing DeviceManagementServiceConfig.ReadWrite.All (Microsoft Graph)")


def test_everything_granted_passes(tmp_path):
    sign_in = FakeSignIn(roles={GRAPH: ALL_GRAPH, DEFENDER: ["Machine.Read.All"]})
    report = run_checks(global_settings(database_url=f"sqlite:///{tmp_path}/check.db"), sign_in_http_client=sign_in)
    assert report.ok, report.render()
