"""Timers driven from database rows: APScheduler with an in-memory job store only scans for due rows.

Nothing about a timer lives in APScheduler itself, so a restart loses nothing: the rows say what
is due. (Its job stores are never shared between schedulers.)
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

if TYPE_CHECKING:
    from bot.deps import Deps

EXPIRY_SCAN_SECONDS = 30
REMINDER_SCAN_SECONDS = 60


def start_timers(deps: Deps) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone=UTC,
    )
    scheduler.add_job(deps.changes.expire_due, "interval", seconds=EXPIRY_SCAN_SECONDS, id="approval-expiry")
    scheduler.add_job(deps.changes.remind_due, "interval", seconds=REMINDER_SCAN_SECONDS, id="approval-reminders")
    scheduler.start()
    return scheduler
