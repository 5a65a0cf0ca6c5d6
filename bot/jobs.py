"""The bot's scheduled jobs: what runs, and when."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.scheduler import Job, interval

if TYPE_CHECKING:
    from bot.deps import Deps


def default_jobs(deps: Deps) -> list[Job]:
    return [
        Job("approval-expiry", "expire change requests nobody decided in time", interval(seconds=30),
            lambda d: f"{d.changes.expire_due()} expired"),
        Job("approval-reminders", "remind approvers once, half-way to expiry", interval(seconds=60),
            lambda d: f"{d.changes.remind_due()} reminded"),
    ]
