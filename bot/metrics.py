"""What an operator alerts on, in Prometheus's text format: `/metrics` on MAM_METRICS_PORT (bot/health.py).

Two kinds of figure:

- **Counted where it happens**, in this process: the ack latency of each Slack request by surface (bot/app.py's
  first middleware), every Slack Web API call and 429 by method (`bot.slack.SlackCallMeter`), every try of a
  Graph or Defender call by endpoint, its latency and its 429s (a listener of the Microsoft transport).
- **Read from the database when scraped** (`StateCollector`), so any replica tells the fleet's truth: the
  outbox's depth and the age of its oldest unsent message, change requests by state, each job's last
  success and duration, users blocked and onboardings pending, whether Intune enforces the threat level,
  and, from this process, whether it leads the scheduler. A scrape that cannot reach the database says
  `mam_database_up 0` instead of failing.

Each process has its own registry (`Metrics.registry`), so that tests and the console can build several.
The names are the ones deploy/prometheus/alerts.yml and docs/operations.md use; renaming one breaks alerts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col, select

from bot.store import ChangeRequest, Store
from bot.store.models import JobRun
from bot.store.watch import OPEN, Episode, pending_onboardings
from workflows.changes import State

if TYPE_CHECKING:
    from bot.microsoft.transport import Answer

log = logging.getLogger(__name__)

# Slack's deadline is 3 s: the buckets are finest where an ack lives, and 3 s is one of them.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
MICROSOFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# A scrape's database reads wait this long at most, well inside Prometheus's default scrape timeout (10 s)
DATABASE_SECONDS = 5.0

# What a Slack request is, by the first field that tells
SURFACES = ("command", "button", "form", "options", "event", "other")


def surface_of(body: Mapping[str, Any]) -> str:
    """`command`, `button`, `form` (a modal's submission or close), `options`, `event` or `other`."""
    if body.get("command"):
        return "command"
    kind = body.get("type")
    if kind == "block_actions":
        return "button"
    if kind in ("view_submission", "view_closed"):
        return "form"
    if kind == "block_suggestion":
        return "options"
    if kind == "event_callback":
        return "event"
    return "other"


class Metrics:
    """This process's counters and histograms, and the registry `/metrics` renders."""

    def __init__(self) -> None:
        disable_created_metrics()  # no `*_created` twin of every series: nothing here alerts on it
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ack_seconds = Histogram(
            "mam_slack_ack_seconds", "Time from a Slack request reaching the bot's listeners to its ack, by surface",
            ["surface"], buckets=ACK_BUCKETS, registry=r)
        self.slack_calls = Counter(
            "mam_slack_api_calls", "Slack Web API calls (each HTTP try), by method and HTTP status",
            ["method", "status"], registry=r)
        self.slack_rate_limited = Counter(
            "mam_slack_rate_limited", "Slack Web API answers 429 (rate limited), by method", ["method"], registry=r)
        self.microsoft_requests = Counter(
            "mam_microsoft_requests", "Graph and Defender requests (each HTTP try), by API, endpoint, method and "
            "status ('error': no answer)", ["api", "endpoint", "method", "status"], registry=r)
        self.microsoft_throttled = Counter(
            "mam_microsoft_throttled", "Graph and Defender answers 429 (throttled), by API and endpoint",
            ["api", "endpoint"], registry=r)
        self.microsoft_seconds = Histogram(
            "mam_microsoft_request_seconds", "Graph and Defender request latency (each HTTP try), by API and endpoint",
            ["api", "endpoint"], buckets=MICROSOFT_BUCKETS, registry=r)

    # ---- counted where it happens ---------------------------------------------------------------

    def ack(self, surface: str, seconds: float) -> None:
        self.ack_seconds.labels(surface).observe(seconds)

    def slack_call(self, method: str, status: int | None) -> None:
        self.slack_calls.labels(method, str(status) if status is not None else "error").inc()
        if status == 429:
            self.slack_rate_limited.labels(method).inc()

    def microsoft_answer(self, answer: Answer) -> None:
        """The Microsoft transport's listener: one try of one call."""
        endpoint = answer.endpoint
        status = str(answer.status) if answer.status is not None else "error"
        self.microsoft_requests.labels(answer.api, endpoint, answer.method, status).inc()
        self.microsoft_seconds.labels(answer.api, endpoint).observe(answer.seconds)
        if answer.status == 429:
            self.microsoft_throttled.labels(answer.api, endpoint).inc()

    # ---- read when scraped ----------------------------------------------------------------------

    def watch(self, collector: StateCollector) -> None:
        """Read `collector` at every scrape (once per process: a second call is ignored)."""
        if not getattr(self, "_state", None):
            self._state = collector
            self.registry.register(collector)

    def watch_slack(self, connected: Callable[[], bool]) -> None:
        """`mam_slack_connected` at every scrape: whether the Socket Mode connection is open (`run` only)."""
        self.registry.register(_LinkCollector(connected))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """The figures read at scrape time: from the database (the fleet's), and whether this process leads.

    `leading` says whether this process holds the scheduler lease; `intervals` gives each job's interval in
    seconds (None for a job that is not on an interval)."""

    def __init__(self, store: Store, *, leading: Callable[[], bool], intervals: Callable[[], Mapping[str, float]],
                 clock: Callable[[], float] = time.time, database_seconds: float = DATABASE_SECONDS) -> None:
        self._store = store
        self._leading = leading
        self._intervals = intervals
        self._clock = clock
        self._database_seconds = database_seconds
        self._reading: Future[list[Metric]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily("mam_leader", "1 when this process leads the scheduler (runs the jobs), else 0")
        leader.add_metric([], 1.0 if self._safe(self._leading, False) else 0.0)
        yield leader
        intervals = GaugeMetricFamily("mam_job_interval_seconds", "Each job's configured interval", labels=["job"])
        for job, seconds in sorted(self._safe(self._intervals, {}).items()):
            intervals.add_metric([job], seconds)
        yield intervals
        try:
            figures = self._read_database().result(self._database_seconds)
        except Exception as exc:  # a scrape must answer: an unreachable or hung database is itself the figure
            log.warning("metrics: could not read the database within %g s: %s", self._database_seconds,
                        type(exc).__name__)
            figures = []
        up = GaugeMetricFamily("mam_database_up", "1 when this scrape could read the bot's database, else 0")
        up.add_metric([], 1.0 if figures else 0.0)
        yield up
        yield from figures

    def _read_database(self) -> Future[list[Metric]]:
        """The database's figures, read on a daemon thread of their own: a database that hangs holds that thread
        (never the process's exit), and scrapes meanwhile say it is down instead of starting another read."""
        with self._lock:
            if self._reading is not None and not self._reading.done():
                raise TimeoutError("the previous read of the database has not finished")
            reading: Future[list[Metric]] = Future()
            self._reading = reading

        def read() -> None:
            try:
                reading.set_result(list(self._from_database()))
            except BaseException as exc:
                reading.set_exception(exc)

        threading.Thread(target=read, name="mam-metrics", daemon=True).start()
        return reading

    def _safe(self, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except Exception as exc:
            log.warning("metrics: %s failed: %s", getattr(read, "__name__", "a reading"), type(exc).__name__)
            return default

    def _from_database(self) -> Iterator[Metric]:
        from bot.outbox.table import PENDING, OutboxRow
        from bot.store.index import Enforcement

        now = self._clock()
        with self._store.session() as session:
            depth, oldest = session.exec(
                select(func.count(), func.min(OutboxRow.created_at)).where(col(OutboxRow.state) == PENDING)).one()
            states = dict(session.exec(
                select(ChangeRequest.state, func.count()).group_by(col(ChangeRequest.state))).all())
            last_ok = {job: (started, finished) for job, started, finished in session.exec(
                select(JobRun.job, JobRun.started_at, JobRun.finished_at)
                .where(col(JobRun.id).in_(select(func.max(JobRun.id)).where(col(JobRun.outcome) == "ok")
                                          .group_by(col(JobRun.job)))))}
            last_outcome = dict(session.exec(
                select(JobRun.job, JobRun.outcome)
                .where(col(JobRun.id).in_(select(func.max(JobRun.id)).where(col(JobRun.outcome) != "running")
                                          .group_by(col(JobRun.job))))).all())
            enforcement = session.get(Enforcement, 1)
            blocked = list(session.exec(select(Episode.device_id, Episode.users)
                                        .where(col(Episode.state) == OPEN, col(Episode.action) != "warn")))
        pending = pending_onboardings(self._store)

        family = GaugeMetricFamily("mam_outbox_depth", "Slack messages queued and not yet sent (all replicas)")
        family.add_metric([], float(depth or 0))
        yield family
        family = GaugeMetricFamily("mam_outbox_oldest_age_seconds",
                                   "Age of the oldest Slack message queued and not yet sent; 0 when none")
        family.add_metric([], max(0.0, now - _epoch(oldest)) if oldest is not None else 0.0)
        yield family

        family = GaugeMetricFamily("mam_change_requests", "Change requests by state", labels=["state"])
        for state in sorted({*CHANGE_STATES, *states}):
            family.add_metric([state], float(states.get(state, 0)))
        yield family

        success = GaugeMetricFamily("mam_job_last_success_timestamp_seconds",
                                    "Unix time a job's last successful run finished", labels=["job"])
        duration = GaugeMetricFamily("mam_job_last_success_duration_seconds",
                                     "How long a job's last successful run took", labels=["job"])
        for job, (started, finished) in sorted(last_ok.items()):
            if finished is not None:
                success.add_metric([job], _epoch(finished))
                duration.add_metric([job], max(0.0, _epoch(finished) - _epoch(started)))
        yield success
        yield duration
        failed = GaugeMetricFamily("mam_job_last_run_failed",
                                   "1 when a job's last finished run failed or was interrupted, else 0", labels=["job"])
        for job, outcome in sorted(last_outcome.items()):
            failed.add_metric([job], 0.0 if outcome == "ok" else 1.0)
        yield failed

        state = enforcement.state if enforcement is not None else "unknown"
        family = GaugeMetricFamily("mam_enforcement", "Whether Intune enforces Defender's threat level on Android app "
                                   "protection, as the last sweep read it: 1 on, 0 off, -1 not known yet")
        family.add_metric([], {"on": 1.0, "off": 0.0}.get(state, -1.0))
        yield family
        users = {u.get("id") or u.get("mail") for _, raw in blocked for u in _users(raw)}
        # with enforcement off nobody is blocked, whatever the frozen episodes say (workflows/enforcement.py)
        on = state != "off"
        family = GaugeMetricFamily("mam_blocked_users",
                                   "Users with a managed app blocked or wiped by their device's threat level")
        family.add_metric([], float(len(users - {None, ""})) if on else 0.0)
        yield family
        family = GaugeMetricFamily("mam_blocked_devices",
                                   "Devices whose threat level blocks or wipes a managed app on them")
        family.add_metric([], float(len({device for device, _ in blocked})) if on else 0.0)
        yield family
        family = GaugeMetricFamily("mam_onboardings_pending",
                                   "Users whose managed app waits for Defender on their device (onboarding nudges)")
        family.add_metric([], float(pending))
        yield family


CHANGE_STATES = tuple(state.value for state in State)


class _LinkCollector(Collector):
    def __init__(self, connected: Callable[[], bool]) -> None:
        self._connected = connected

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            up = bool(self._connected())
        except Exception:
            up = False
        family = GaugeMetricFamily("mam_slack_connected", "1 while this process's Socket Mode connection to Slack is "
                                   "open, else 0 (mam-bot run only)")
        family.add_metric([], 1.0 if up else 0.0)
        yield family


def _users(raw: str | None) -> list[dict[str, str]]:
    import json

    try:
        users = json.loads(raw or "[]")
    except ValueError:
        return []
    return [u for u in users if isinstance(u, dict)] if isinstance(users, list) else []


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
