"""The bot's scheduled jobs: what runs, and when."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.scheduler import Job, interval

if TYPE_CHECKING:
    from bot.deps import Deps


def default_jobs(deps: Deps) -> list[Job]:
    from workflows.onboarding import nudge_job
    from workflows.threat_sweep import sweep_job

    settings = deps.settings
    return [
        Job("threat-sweep", "find managed apps blocked by a device's threat level; alert on changes",
            interval(minutes=settings.mam_sweep_minutes), sweep_job),
        # Every few minutes rather than once a day: Slack's users.lookupByEmail allows about 50 a
        # minute, so a daily run could only find 50 new people a day. The job itself sends only
        # within MAM_WORK_HOURS on MAM_WORK_DAYS, and each person's cadence is in the database.
        Job("onboarding-nudges", "DM the onboarding steps to users whose managed app waits for Defender "
            "(sends only in working hours)", interval(minutes=settings.mam_nudge_minutes), nudge_job),
        Job("approval-expiry", "expire change requests nobody decided in time", interval(seconds=30),
            lambda d: f"{d.changes.expire_due()} expired"),
        Job("approval-reminders", "remind approvers once, half-way to expiry", interval(seconds=60),
            lambda d: f"{d.changes.remind_due()} reminded"),
    ]
