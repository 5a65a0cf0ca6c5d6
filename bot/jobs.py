"""The bot's scheduled jobs: what runs, and when."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.scheduler import Job, interval, weekdays_at

if TYPE_CHECKING:
    from bot.deps import Deps


def default_jobs(deps: Deps) -> list[Job]:
    from workflows.onboarding import nudge_job
    from workflows.threat_sweep import sweep_job

    settings = deps.settings
    return [
        Job("threat-sweep", "find managed apps blocked by a device's threat level; alert on changes",
            interval(minutes=settings.mam_sweep_minutes), sweep_job),
        Job("onboarding-nudges", "DM users whose managed app waits for Defender the onboarding steps",
            weekdays_at(settings.mam_nudge_hour, settings.mam_timezone), nudge_job),
        Job("approval-expiry", "expire change requests nobody decided in time", interval(seconds=30),
            lambda d: f"{d.changes.expire_due()} expired"),
        Job("approval-reminders", "remind approvers once, half-way to expiry", interval(seconds=60),
            lambda d: f"{d.changes.remind_due()} reminded"),
    ]
