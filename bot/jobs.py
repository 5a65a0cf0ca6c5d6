"""The bot's scheduled jobs, every one of them: what runs, and when.

A job is defined here once, bound by the composition root (bot.compose) to the collaborators it
needs; the scheduler (bot.scheduler) only runs it. A new job is a function here and a line in
`default_jobs`; `mam-bot jobs list` shows it and `mam-bot jobs run NAME` runs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.scheduler import Job, interval
from commands.adapters import SlackAlerts, SlackEmailDirectory, SlackNudger, slack_client_of
from commands.alerts import portals_for
from commands.sweep import JOB as SWEEP  # `/mam sweep` asks for this job by name
from workflows.onboarding import NudgeResult, WatchSettings, run_onboarding_nudges
from workflows.threat_sweep import SweepResult, run_threat_sweep

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)


def default_jobs(deps: Deps) -> list[Job]:
    settings = deps.settings
    return [
        Job(SWEEP, "find managed apps blocked by a device's threat level; alert on changes",
            interval(minutes=settings.mam_sweep_minutes), lambda: sweep_job(deps)),
        # Every few minutes rather than once a day: Slack's users.lookupByEmail allows about 50 a
        # minute, so a daily run could only find 50 new people a day. The job itself sends only
        # within MAM_WORK_HOURS on MAM_WORK_DAYS, and each person's cadence is in the database.
        Job("onboarding-nudges", "DM the onboarding steps to users whose managed app waits for Defender "
            "(sends only in working hours)", interval(minutes=settings.mam_nudge_minutes), lambda: nudge_job(deps)),
        Job("approval-expiry", "expire change requests nobody decided in time", interval(seconds=30),
            lambda: f"{deps.changes.expire_due()} expired"),
        Job("approval-reminders", "remind approvers once, half-way to expiry", interval(seconds=60),
            lambda: f"{deps.changes.remind_due()} reminded"),
        # An executing change whose process died is taken over once its lease (45 s) runs out; with this
        # interval and the leader's own 30-second lease, within about a minute and a half at worst.
        Job("change-takeover", "run approved changes nobody runs, and take over executions whose process "
            "stopped", interval(seconds=15), lambda: f"{deps.changes.take_over()} run"),
    ]


def sweep_job(deps: Deps) -> SweepResult:
    """"threat-sweep": one threat sweep with the background call profile, its cards through the outbox."""
    settings = WatchSettings.from_settings(deps.settings)
    microsoft = deps.microsoft.background()
    notifier = SlackAlerts(deps.outbox, portals_for(settings.cloud), settings.digest_top)
    directory = SlackEmailDirectory(slack_client_of(deps)) if settings.dm_blocked_users else None
    with microsoft.counting_requests() as requests:
        result = run_threat_sweep(graph=microsoft.graph, defender=microsoft.defender, store=deps.store,
                                  notifier=notifier, settings=settings,
                                  alert_channel=deps.settings.mam_alert_channel, now=deps.now,
                                  requests=requests, directory=directory, audit=deps.audit,
                                  worker=deps.outbox.worker_id)
    log.info("threat sweep #%s: %s", result.sweep_id, result.summary())
    return result


def nudge_job(deps: Deps, *, sleep: Callable[[float], None] = time.sleep) -> NudgeResult:
    """"onboarding-nudges" (`sleep` paces the email lookups)."""
    settings = WatchSettings.from_settings(deps.settings)
    result = run_onboarding_nudges(
        store=deps.store, users=deps.microsoft.background().graph,
        directory=SlackEmailDirectory(slack_client_of(deps)), notifier=SlackNudger(deps.outbox),
        settings=settings, now=deps.now(), sleep=sleep)
    log.info("onboarding nudges: %s", result.summary())
    return result
