"""The bot's scheduled jobs, every one of them: what runs, and when.

A job is defined here once, bound by the composition root (bot.compose) to the collaborators it
needs; the scheduler (bot.scheduler) only runs it. A new job is a function here and a line in
`default_jobs`; `mam-bot jobs list` shows it and `mam-bot jobs run NAME` runs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.clock import as_utc
from bot.microsoft.models import AndroidPolicy
from bot.scheduler import Job, interval
from bot.store.index import OFF, IndexRun, LicenceRun
from commands.adapters import SlackAlerts, SlackEmailDirectory, SlackNudger, slack_client_of
from commands.alerts import portals_for
from commands.drift import DRIFT_JOB, check_drift  # `mam-bot jobs run policy-drift`
from commands.sweep import INDEX_JOB, LICENCE_JOB  # `/mam sweep index|licences` ask for these by name
from commands.sweep import JOB as SWEEP  # `/mam sweep` asks for this job by name
from workflows.enforcement import current_enforcement
from workflows.entra_users import EntraUsers
from workflows.index_store import index_due
from workflows.licences import last_licence_run, refresh_licences
from workflows.onboarding import NudgeResult, WatchSettings, run_onboarding_nudges
from workflows.registrations_index import refresh_index
from workflows.tenant_reader import IndexedReader, MicrosoftReader
from workflows.threat_sweep import SweepResult, run_threat_sweep

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)


def default_jobs(deps: Deps) -> list[Job]:
    settings = deps.settings
    index_every = timedelta(minutes=settings.mam_index_minutes)
    return [
        Job(SWEEP, "read Defender's Android devices, join them with the registrations index, alert on blocks "
            "(only while Intune enforces the threat level)", interval(minutes=settings.mam_sweep_minutes),
            lambda: sweep_job(deps)),
        # Ticks every 5 minutes, refreshes when the index is MAM_INDEX_MINUTES old (a sweep builds the first)
        Job(INDEX_JOB, "refresh the registrations index from Intune's report export (the paged read if refused)",
            interval(minutes=5), lambda: index_job(deps),
            due=lambda: index_due(deps.store, deps.now(), index_every), every=index_every),
        # Ticks every 15 minutes, refreshes when the last good read is MAM_LICENCE_HOURS old (or there is none)
        Job(LICENCE_JOB, "read who holds an Intune and a Defender for Endpoint licence", interval(minutes=15),
            lambda: licence_job(deps), due=lambda: licences_due(deps),
            every=timedelta(hours=settings.mam_licence_hours)),
        # Every few minutes rather than once a day: Slack's users.lookupByEmail allows about 50 a
        # minute, so a daily run could only find 50 new people a day. The job itself sends only
        # within MAM_WORK_HOURS on MAM_WORK_DAYS, and each person's cadence is in the database.
        Job(DRIFT_JOB, "compare the Android app protection policies and the connector with their snapshot; tell the "
            "alert channel about changes made outside the bot (Revert or Accept)",
            interval(minutes=settings.mam_drift_minutes), lambda: check_drift(deps)),
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
    """"threat-sweep": one threat sweep with the background call profile, its cards through the outbox.
    Registrations come from the index; with none yet, this sweep builds it first (the cold cycle)."""
    settings = WatchSettings.from_settings(deps.settings)
    microsoft = deps.microsoft.background()
    notifier = SlackAlerts(deps.outbox, portals_for(settings.cloud), settings.digest_top)
    directory = SlackEmailDirectory(slack_client_of(deps)) if settings.dm_blocked_users else None
    live = MicrosoftReader(microsoft.graph, microsoft.defender, page_size=settings.defender_page_size,
                           applied_policies=settings.applied_policies)
    with microsoft.counting_requests() as requests:
        reader = IndexedReader(live, deps.store, lambda policies: _refresh(deps, policies, requests))
        result = run_threat_sweep(reader=reader, store=deps.store, notifier=notifier, settings=settings,
                                  alert_channel=deps.settings.mam_alert_channel, now=deps.now,
                                  requests=requests, directory=directory, audit=deps.audit,
                                  worker=deps.outbox.worker_id)
    log.info("threat sweep #%s: %s", result.sweep_id, result.summary())
    return result


def index_job(deps: Deps) -> IndexRun:
    """"registrations-index": Intune's report export into the database (one policies read to join names)."""
    microsoft = deps.microsoft.background()
    with microsoft.counting_requests() as requests:
        policies = list(microsoft.graph.iter_android_policies())
        return _refresh(deps, policies, requests)  # refresh_index logs its outcome


def _refresh(deps: Deps, policies: list[AndroidPolicy], requests: Callable[[], int]) -> IndexRun:
    graph = deps.microsoft.background().graph
    users = EntraUsers(deps.store, graph, deps.now())
    return refresh_index(source=graph, store=deps.store, policies=policies, now=deps.now,
                         worker=deps.outbox.worker_id, users=users, requests=requests)


def licence_job(deps: Deps) -> LicenceRun:
    """"licences": who holds an enabled Intune and Defender for Endpoint service plan (assignedPlans)."""
    microsoft = deps.microsoft.background()
    with microsoft.counting_requests() as requests:
        return refresh_licences(reader=microsoft.graph, store=deps.store,  # it logs its outcome
                                intune_plans=deps.settings.mam_intune_plan_ids,
                                defender_plans=deps.settings.mam_defender_plan_ids, now=deps.now(), requests=requests)


def licences_due(deps: Deps) -> bool:
    last = last_licence_run(deps.store)
    if last is None or last.finished_at is None:
        return True
    finished = as_utc(last.finished_at)
    return finished is None or deps.now() - finished >= timedelta(hours=deps.settings.mam_licence_hours)


def nudge_job(deps: Deps, *, sleep: Callable[[float], None] = time.sleep) -> NudgeResult:
    """"onboarding-nudges" (`sleep` paces the email lookups); held while Intune isn't enforcing the threat
    level, since a nudge promises the app stops at a setup screen."""
    settings = WatchSettings.from_settings(deps.settings)
    enforcement = current_enforcement(deps.store)
    hold = "threat-level enforcement is off in Intune" if enforcement.state == OFF else ""
    result = run_onboarding_nudges(
        store=deps.store, users=deps.microsoft.background().graph,
        directory=SlackEmailDirectory(slack_client_of(deps)), notifier=SlackNudger(deps.outbox),
        settings=settings, now=deps.now(), sleep=sleep, hold=hold)
    log.info("onboarding nudges: %s", result.summary())
    return result
