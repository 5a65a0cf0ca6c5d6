"""Run now, from anywhere: `mam-bot jobs run` and `/mam sweep` while a real bot process leads, on SQLite and
PostgreSQL (the leader runs it and the asker gets its outcome), and the single-process versions on SQLite
(the in-process leader runs it; with no leader the process that was asked runs it and says so; a request
already open is joined, not doubled)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from bot.cli import main
from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.sandbox import SEED_POLICY_ID
from bot.store import create_store
from bot.store.job_requests import JobRequest
from bot.store.models import JobRun
from commands.ids import Action
from tests.scenario.conftest import Bot, block_text
from tests.scenario.live import ROOT, LiveBot, bot_env, lease_holder, start_bot, wait_until

SWEEP = "threat-sweep"


# ---- while a real bot process leads ---------------------------------------------------------------


@pytest.fixture
def url(any_url: str) -> str:
    return any_url


@pytest.fixture
def leader(url, tmp_path, slack, sandbox) -> Iterator[LiveBot]:
    """`mam-bot serve` against FakeSlack and the sandbox tenant, once it holds the scheduler lease."""
    bot = start_bot("http", tmp_path, slack, DATABASE_URL=url, MAM_GRAPH_URL=sandbox.url,
                    MAM_DEFENDER_URL=sandbox.url)
    try:
        wait_until(lambda: lease_holder(url), timeout=30, what="mam-bot serve leading the scheduler")
        yield bot
    finally:
        bot.stop()


def sweep_runs(url: str) -> list[JobRun]:
    store = create_store(url)
    try:
        with store.session() as session:
            return list(session.exec(select(JobRun).where(col(JobRun.job) == SWEEP).order_by(col(JobRun.id))))
    finally:
        store.close()


def test_jobs_run_while_a_leader_runs_hands_it_over_and_prints_the_leaders_outcome(leader, url, tmp_path, sandbox):
    holder = lease_holder(url)
    sandbox.tenant.policies_store.update(SEED_POLICY_ID, {"maximumAllowedDeviceThreatLevel": "medium",
                                                          "mobileThreatDefenseRemediationAction": "block"}, True)
    sandbox.tenant.set_connector(androidMobileApplicationManagementEnabled=True)  # Intune enforces the level
    env = bot_env(tmp_path, PYTHONPATH=str(ROOT), DATABASE_URL=url, MAM_GRAPH_URL=sandbox.url,
                  MAM_DEFENDER_URL=sandbox.url)
    ran = subprocess.run([sys.executable, "-m", "bot.cli", "jobs", "run", SWEEP], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert f"asked the leader, {holder}, to run {SWEEP}" in ran.stderr
    [run] = sweep_runs(url)
    assert run.holder == holder and run.outcome == "ok"  # the leader ran it, not the command
    assert "blocked" in run.summary and sandbox.tenant.stats.count("GET", "machines") >= 1
    assert f"{SWEEP}: ok in" in ran.stdout and run.summary in ran.stdout
    assert f"run #{run.id} by {holder}" in ran.stdout


def test_mam_sweep_while_a_leader_runs_posts_the_result(leader, url):
    holder = lease_holder(url)
    ack, response_url = leader.command("sweep")
    assert "Asking for a threat sweep" in ack["text"]
    answer = wait_until(lambda: [m for m in leader.slack.ephemerals(DEMO_ADMIN)
                                 if "Threat sweep done" in block_text(m.blocks)], timeout=60,
                        what="the sweep's result in the answer")[-1]
    [run] = sweep_runs(url)
    shown = block_text(answer.blocks)
    assert run.holder == holder and run.summary in shown
    assert "`/mam blocked`" in shown and f"Run by the scheduler's leader, `{holder}` (run #{run.id})" in shown
    assert leader.slack.response_url_uses(response_url) <= 4  # a response_url takes 5


# ---- one process (SQLite) -------------------------------------------------------------------------


def leading(bot: Bot) -> str:
    """The in-process bot's scheduler takes the lease on start, in its own thread."""
    scheduler = bot.deps.scheduler()
    wait_until(scheduler.lease.held_by_me, what="the in-process scheduler leading")
    return scheduler.lease.holder


def nobody_leads(bot: Bot) -> str:
    scheduler = bot.deps.scheduler()
    leading(bot)
    scheduler.stop()  # hands the lease back: no process leads now
    assert scheduler.lease.live() is None
    return scheduler.lease.holder


def answer_to(bot: Bot, user: str = DEMO_ADMIN) -> str:
    return block_text(bot.slack.ephemerals(user)[-1].blocks)


def test_mam_sweep_in_the_leading_process_posts_the_result(bot):
    holder = leading(bot)
    bot.command("sweep")
    shown = answer_to(bot)
    [run] = sweep_runs(bot.deps.settings.database_url)
    assert run.holder == holder and run.outcome == "ok"
    assert "Threat sweep done" in shown and run.summary in shown and "`/mam blocked`" in shown


def test_mam_sweep_with_no_leader_runs_here_and_says_so(bot):
    holder = nobody_leads(bot)
    bot.command("sweep")
    shown = answer_to(bot)
    [run] = sweep_runs(bot.deps.settings.database_url)
    assert run.holder == holder and "Threat sweep done" in shown
    assert "No bot process was leading the scheduler, so the process that got your command ran it" in shown
    assert bot.deps.scheduler().lease.live() is None  # handed back after the run


def test_mam_sweep_joins_a_sweep_already_asked_for(bot):
    nobody_leads(bot)
    earlier, created = bot.deps.scheduler().requests.open(SWEEP, "UOTHER001")
    assert created
    bot.command("sweep")
    shown = answer_to(bot)
    assert "You joined the sweep <@UOTHER001> asked for" in shown and "Threat sweep done" in shown
    assert len(sweep_runs(bot.deps.settings.database_url)) == 1
    with bot.deps.store.session() as session:
        assert [r.id for r in session.exec(select(JobRequest))] == [earlier.id]  # one request, one run


def test_mam_sweep_is_for_admins(bot):
    leading(bot)
    bot.command("sweep", user=DEMO_APPROVER)
    assert "Only mam-bot admins can run `/mam sweep`" in bot.slack.ephemerals(DEMO_APPROVER)[-1].text
    bot.click(Action.SWEEP_NOW, user=DEMO_APPROVER)
    assert "Only mam-bot admins can run the threat sweep" in bot.slack.ephemerals(DEMO_APPROVER)[-1].text
    assert sweep_runs(bot.deps.settings.database_url) == []


def test_the_status_cards_sweep_now_button_runs_the_sweep(bot):
    holder = leading(bot)
    bot.command("status", user=DEMO_APPROVER)
    assert "Sweep now" not in answer_to(bot, DEMO_APPROVER)  # offered only to those who may press it
    bot.command("status")
    assert "Sweep now" in answer_to(bot)

    bot.click(Action.SWEEP_NOW)
    [run] = sweep_runs(bot.deps.settings.database_url)
    shown = answer_to(bot)
    assert run.holder == holder and "Threat sweep done" in shown and run.summary in shown
    assert "Sweep now" in block_text(bot.slack.ephemerals(DEMO_ADMIN)[0].blocks)  # the status card stays


def test_jobs_run_with_no_leader_runs_here(tmp_path, monkeypatch, capsys):
    for name, value in {"DATABASE_URL": f"sqlite:///{tmp_path}/bot.db", "MAM_CLOUD": "sandbox"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert main(["jobs", "run", SWEEP]) == 0
    out, err = capsys.readouterr()
    assert "no bot process leads the scheduler: running threat-sweep here" in err
    assert f"{SWEEP}: ok in" in out and "here (no bot process was leading)" in out
    [run] = sweep_runs(f"sqlite:///{tmp_path}/bot.db")
    assert run.outcome == "ok" and run.summary in out
