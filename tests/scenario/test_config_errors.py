"""Configuration that cannot mislead, against real `mam-bot` processes: one line naming the variable."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import postgres_database
from tests.scenario.test_cli_and_http import ROOT, bot_env

pytestmark = pytest.mark.http

EXPECTED_DB = "expected postgresql://user:pass@host:5432/db or sqlite:///path/mam-bot.db"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = bot_env(tmp_path, PYTHONPATH=str(ROOT), **extra)
    return env


def mam_bot(*args: str, env: dict[str, str], cwd: Path, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, input=input)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- MAM_CLOUD with real Slack -----------------------------------------------------------------------


@pytest.mark.parametrize(("command", "tokens"), [
    ("run", {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}),
    ("serve", {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s3cret"}),
])
def test_real_slack_without_mam_cloud_refuses_to_start(tmp_path, slack, command, tokens):
    env = env_for(tmp_path, SLACK_API_URL=slack.api_url, **tokens)
    del env["MAM_CLOUD"]
    result = mam_bot(command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"mam-bot {command}: MAM_CLOUD is not set; expected one of global, gcc, gcc-high, dod, china, sandbox: "
        "with real Slack the tenant must be chosen explicitly (sandbox serves simulated data)")
    assert not slack.calls_to("auth.test")  # refused before anything reached Slack


def test_the_console_still_starts_without_mam_cloud(tmp_path):
    env = env_for(tmp_path)
    del env["MAM_CLOUD"]
    result = mam_bot("console", env=env, cwd=tmp_path, input=":quit\n")
    assert result.returncode == 0, result.stderr
    assert "Microsoft is the sandbox tenant" in result.stdout


# --- DATABASE_URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "starts"), [
    ("localhost:5432/mam", "DATABASE_URL: 'localhost:5432/mam' is not a database URL"),
    ("mysql://bot:hunter2@db/mam", "DATABASE_URL: 'mysql://bot:***@db/mam' is not a SQLite or PostgreSQL URL"),
    ("postgresql://bot:hunter2@127.0.0.1:{port}/mam",
     "DATABASE_URL: could not connect to PostgreSQL at 127.0.0.1:{port}/mam (connection refused)"),
    ("sqlite:///{tmp}/missing/mam.db",
     "DATABASE_URL: could not open the SQLite file {tmp}/missing/mam.db (the directory {tmp}/missing does not exist)"),
    ("sqlite:////proc/mam-bot.db", "DATABASE_URL: could not open the SQLite file /proc/mam-bot.db ("),
])
@pytest.mark.parametrize("command", [("run",), ("db", "upgrade"), ("jobs", "list")])
def test_a_bad_or_unreachable_database_is_one_line(tmp_path, slack, url, starts, command):
    port = closed_port()
    url, starts = (x.format(port=port, tmp=tmp_path) for x in (url, starts))
    env = env_for(tmp_path, DATABASE_URL=url, SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1",
                  SLACK_API_URL=slack.api_url)
    result = mam_bot(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    message = one_line(result.stderr)
    assert message.startswith(starts) and message.endswith(EXPECTED_DB)
    assert "hunter2" not in result.stderr + result.stdout


# --- mam-bot db upgrade ------------------------------------------------------------------------------


def test_db_upgrade_says_what_it_applied_then_that_nothing_was_needed(tmp_path):
    from bot.store.migrate import head_revisions, known_revisions

    head = head_revisions()[0]
    first = min(known_revisions())
    env = env_for(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/fresh.db")
    fresh = mam_bot("db", "upgrade", env=env, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert one_line(fresh.stdout) == (f"sqlite:///{tmp_path}/fresh.db: applied {first} → {head} "
                                      f"({len(known_revisions())} migrations)")
    again = mam_bot("db", "upgrade", env=env, cwd=tmp_path)
    assert one_line(again.stdout) == f"sqlite:///{tmp_path}/fresh.db: the schema was already at {head}: nothing to do"


def test_db_upgrade_on_a_fresh_postgres_database_hides_the_password(tmp_path):
    from bot.store.migrate import head_revisions

    with postgres_database() as url:
        from sqlalchemy.engine import make_url

        with_password = make_url(url).set(password="hunter2").render_as_string(hide_password=False)
        env = env_for(tmp_path, DATABASE_URL=with_password)
        result = mam_bot("db", "upgrade", env=env, cwd=tmp_path)
        if result.returncode == 2 and "password" in result.stderr:
            pytest.skip("this PostgreSQL checks passwords")
        assert result.returncode == 0, result.stderr
        line = one_line(result.stdout)
        assert f"applied 0001 → {head_revisions()[0]}" in line and ":***@" in line and "hunter2" not in line


# --- mam-bot check -----------------------------------------------------------------------------------


def test_check_fails_a_token_slack_refuses(tmp_path, slack):
    slack.fail_next("auth.test", "invalid_auth")
    env = env_for(tmp_path, SLACK_BOT_TOKEN="xoxb-dummy", SLACK_SIGNING_SECRET="s", SLACK_APP_TOKEN="xapp-1",
                  SLACK_API_URL=slack.api_url)
    result = mam_bot("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL  SLACK_BOT_TOKEN" in result.stdout and "Slack refused it (invalid_auth)" in result.stdout
    assert "mode serve                 ready" not in result.stdout
    assert [c.method for c in slack.calls].count("auth.test") == 1


def test_check_fails_a_quorum_the_approvers_cannot_meet(tmp_path):
    env = env_for(tmp_path, MAM_APPROVERS="UAPPROV01,UAPPROV02", MAM_APPROVAL_QUORUM="3")
    result = mam_bot("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL  MAM_APPROVAL_QUORUM" in result.stdout and "only 2 approvers" in result.stdout


def test_check_says_an_unreachable_sign_in_host_once(tmp_path):
    port = closed_port()
    env = env_for(tmp_path, MAM_CLOUD="global", AZURE_TENANT_ID="contoso.onmicrosoft.com",
                  AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555", AZURE_CLIENT_SECRET="x",
                  MAM_AUTHORITY_URL=f"https://127.0.0.1:{port}")
    result = mam_bot("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert "Microsoft sign-in" in failed[0] and f"could not reach https://127.0.0.1:{port} (connection refused)" \
        in failed[0]
    assert "missing" not in result.stdout
