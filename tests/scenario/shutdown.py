"""SIGTERM to real `mam-bot serve` / `mam-bot run` processes in the middle of their work, and what each stop left.

One stop (`Rig.stop_one`): a change request is filed and approved through a running bot while the sandbox
tenant holds the write, so its execution is in flight; 200 DMs are queued in the outbox and going out; then the
process that runs the execution gets SIGTERM. While it stops, over HTTP its /healthz answers 503 and a command
sent to it is still answered; over Socket Mode its connection closes, and a command sent then goes to another
process (or waits for the next one). The held write is let go only once the process has stopped taking work,
so the execution really runs through the stop. Then: the exit code, the change request's state, outbox rows
the process left claimed, who holds the scheduler lease, and `mam-bot jobs run threat-sweep`.

Used by tests/scenario/test_shutdown.py (3 stops per case) and benchmarks/sigterm.py (20, with figures).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bot.console.fake_slack import FakeSlack, FakeUser
from bot.local import DEMO_ADMIN, DEMO_APPROVER
from bot.outbox.queue import OutboxQueue
from bot.outbox.table import SENDING, SENT, outbox_table
from bot.sandbox import SandboxServer, WriteHold
from bot.store import ChangeRequest, create_store
from bot.store.models import Lease
from commands.ids import Action
from tests.scenario.live import ROOT, LiveBot, Transport, bot_env, start_bot, wait_until
from workflows.connector_change import ANDROID_MAM

MESSAGES = 200
USERS = [f"UQUEUE{i:03d}" for i in range(MESSAGES)]
WHY = "turn on MAM threat signals for the pilot (CHG0042)"
PATCHES = ("PATCH", "mobileThreatDefenseConnectors")


@dataclass
class StopReport:
    """What one SIGTERM did."""

    transport: Transport
    code: int | None
    """The process's exit status (None: it did not exit in time and was killed)."""
    seconds_to_exit: float
    request_state: str
    """The change request in flight at the signal, after the exit: `succeeded` when it finished there."""
    executed: bool
    """The tenant has the change, written once more than before."""
    queued: list[str]
    sent_before_exit: int
    left_claimed: int
    """Outbox rows the stopped process still held `sending` after it exited (a clean stop gives them back)."""
    lease_left_held: bool
    """The scheduler lease still names the stopped process as a live holder."""
    was_leader: bool
    healthz: list[int] = field(default_factory=list)
    """HTTP: the /healthz answers seen between the signal and the server's stop, in order."""
    answered_while_stopping: bool | None = None
    """HTTP: a command sent during the drain was answered by the stopping process. Socket Mode: a command
    sent after its connection closed was answered by another process (or, with none, by the next one)."""
    execution_outlived_transport: bool = False
    """The held write was let go after the process stopped taking work, and the process was still running."""
    jobs_code: int | None = None
    jobs_output: str = ""
    seconds_exit_to_jobs_done: float = 0.0
    """From the exit until `mam-bot jobs run threat-sweep` had finished."""
    log: str = ""
    envelope: str | None = None  # Socket Mode: the command sent after the connection closed

    def problems(self) -> list[str]:
        """What went wrong, in words (empty: a clean stop)."""
        found = []
        if self.code != 0:
            found.append(f"exit status {self.code}")
        if self.request_state != "succeeded" or not self.executed:
            found.append(f"the execution in flight ended {self.request_state} (written: {self.executed})")
        if self.left_claimed:
            found.append(f"{self.left_claimed} outbox rows left claimed")
        if self.lease_left_held:
            found.append("the scheduler lease still held by the stopped process")
        if self.jobs_code != 0:
            found.append(f"`jobs run threat-sweep` exited {self.jobs_code}: {self.jobs_output.strip()[-300:]}")
        if self.transport == "http" and (503 not in self.healthz or 200 in self.healthz[self.healthz.index(503):]):
            found.append(f"/healthz while draining: {self.healthz}")
        if self.answered_while_stopping is False:
            found.append("a command sent while it stopped was not answered")
        if not self.execution_outlived_transport:
            found.append("the execution was not in flight after the transport stopped")
        return found


@dataclass
class Rig:
    """FakeSlack, the sandbox tenant and one database, and the bot processes running on them."""

    transport: Transport
    tmp_path: Path
    slack: FakeSlack
    sandbox: SandboxServer
    database_url: str
    drain_seconds: float = 1.5  # room to see the 503 and be answered during it on a busy machine
    grace_seconds: float = 20.0
    posts_per_second: float = 40.0
    write_seconds: float = 0.0
    """How long the held write stays held after the process stopped taking work (the execution's rest)."""
    bots: list[LiveBot] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    _started: int = 0

    def __post_init__(self) -> None:
        for user in USERS:
            self.slack.add_user(FakeUser(user, user.lower()))
        create_store(self.database_url).close()  # the tables exist before processes race to make them

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "MAM_GRAPH_URL": self.sandbox.url,
                "MAM_DEFENDER_URL": self.sandbox.url, "MAM_SLACK_POSTS_PER_SECOND": f"{self.posts_per_second:g}",
                "MAM_SHUTDOWN_DRAIN_SECONDS": f"{self.drain_seconds:g}",
                "MAM_SHUTDOWN_GRACE_SECONDS": f"{self.grace_seconds:g}"}

    def start(self) -> LiveBot:
        bot = start_bot(self.transport, self.tmp_path, self.slack, name=f"bot-{self._started}", **self.env())
        self._started += 1
        self.bots.append(bot)
        return bot

    def close(self) -> None:
        for bot in self.bots:  # all at once: each stop drains
            if bot.proc.poll() is None:
                bot.proc.terminate()
        for bot in self.bots:
            bot.stop()
        self.bots.clear()

    # ---- one stop ------------------------------------------------------------------------------

    def stop_one(self, cycle: int, *, then: Callable[[], object] | None = None,
                 jobs_alongside: bool = True) -> StopReport:
        """File and approve a change (its write held), queue 200 DMs, SIGTERM the process running the change.

        `then` runs after the exit, beside `mam-bot jobs run threat-sweep` when `jobs_alongside` (a
        replacement starting, say), else after it.
        """
        tenant = self.sandbox.tenant
        began = time.monotonic()
        request_id, hold = self.execution_in_flight(self.bots[0])  # the oldest: a rolling restart goes round
        self.phases = {"execution in flight": time.monotonic() - began}
        patches = tenant.stats.count(*PATCHES)
        victim = self._executor(request_id)
        worker_id = f"{_hostname()}:{victim.proc.pid}"
        keys = self._queue(cycle)
        wait_until(lambda: self._sent(keys) >= 20, timeout=30, what="the queued DMs going out")
        self.phases["queued and going out"] = time.monotonic() - began
        was_leader = self.lease_holder_pid() == victim.proc.pid
        report = StopReport(self.transport, None, 0.0, "", False, keys, 0, 0, False, was_leader)

        exited_at: list[float] = []
        waiter = threading.Thread(target=lambda: (victim.proc.wait(), exited_at.append(time.monotonic())), daemon=True)
        open_before = set(self.slack.socket_mode().connections) if self.transport == "socket" else set()
        signalled = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        waiter.start()
        if self.transport == "http":
            self._watch_http_drain(victim, report)
        else:
            self._watch_socket_close(victim, report, open_before)
        time.sleep(self.write_seconds)
        report.execution_outlived_transport = victim.proc.poll() is None and hold.held == 1
        hold.release()
        waiter.join(timeout=self.drain_seconds + self.grace_seconds + 30)
        if waiter.is_alive():
            victim.proc.kill()
            waiter.join(timeout=10)
        else:
            report.code = victim.proc.returncode
        exited = exited_at[0] if exited_at else time.monotonic()
        report.seconds_to_exit = exited - signalled
        self.bots.remove(victim)
        report.log = victim.log()

        report.sent_before_exit = self._sent(keys)
        report.request_state = self.request(request_id).state
        written = tenant.stats.count(*PATCHES) - patches
        report.executed = bool((tenant.connector() or {}).get(ANDROID_MAM)) and written == 1
        report.left_claimed = self._claimed_by(worker_id)
        report.lease_left_held = self.lease_holder_pid() == victim.proc.pid

        jobs = subprocess.Popen([sys.executable, "-m", "bot.cli", "jobs", "run", "threat-sweep"], cwd=self.tmp_path,
                                env=self.jobs_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if then is not None and jobs_alongside:
            then()
        out, _ = jobs.communicate(timeout=120)
        report.jobs_code, report.jobs_output = jobs.returncode, out
        report.seconds_exit_to_jobs_done = time.monotonic() - exited
        self.phases["exit"] = exited - began
        self.phases["jobs run (and then)"] = time.monotonic() - began
        if then is not None and not jobs_alongside:
            then()
        if report.envelope is not None:  # Socket Mode with no other process: the next one answers it
            self.slack.socket_mode().wait_ack(report.envelope, timeout=30)
            report.answered_while_stopping = True
        return report

    def execution_in_flight(self, through: LiveBot) -> tuple[int, WriteHold]:
        tenant = self.sandbox.tenant
        tenant.patch_connector({ANDROID_MAM: False})  # what each stop's change turns on again
        hold = tenant.hold_writes(timeout=120)
        payload, _url = through.command(f"connectors enable-android {WHY}")
        assert "Filing a change request" in str(payload), payload
        request_id = wait_until(lambda: self._pending_request(), timeout=30, what="the change request filed")
        card = wait_until(lambda: [m for m in self.slack.messages(DEMO_APPROVER)
                                   if f"Change request #{request_id}" in m.text], timeout=30,
                          what="the approval card")[-1]
        through.click(Action.APPROVE, user=DEMO_APPROVER, value=str(request_id), channel=card.channel,
                      message_ts=card.ts)
        assert hold.wait_for_writes(1, timeout=30), "the approved change's write did not reach the tenant"
        return request_id, hold

    def _executor(self, request_id: int) -> LiveBot:
        """The process running the change: its execution lease names it (host:pid:…)."""
        owner = wait_until(lambda: self.request(request_id).lease_owner, timeout=10, what="the execution's owner")
        pid = int(owner.split(":")[1])
        return next(bot for bot in self.bots if bot.proc.pid == pid)

    def _watch_http_drain(self, victim: LiveBot, report: StopReport) -> None:
        """Until its server stops: /healthz answers, and one command sent while it says 503."""
        deadline = time.monotonic() + self.drain_seconds + 30
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{victim.base}/healthz", timeout=2).status_code
            except httpx.TransportError:
                return  # no longer listening
            report.healthz.append(status)
            if status == 503 and report.answered_while_stopping is None:
                try:
                    payload, _url = victim.command("help")
                    report.answered_while_stopping = "/mam connectors" in str(payload)
                except httpx.TransportError:
                    report.answered_while_stopping = False
            time.sleep(0.05)

    def _watch_socket_close(self, victim: LiveBot, report: StopReport, before: set[int]) -> None:
        """Until its connection (one of those open `before` the signal) closes; then a command, which another
        process answers (or the next one)."""
        server = self.slack.socket_mode()
        wait_until(lambda: len(set(server.connections) & before) < len(before), timeout=30,
                   what="the stopping process's Socket Mode connection closing")
        envelope, _url = server.slash_command("help", user=DEMO_ADMIN)
        if any(bot is not victim for bot in self.bots):
            server.wait_ack(envelope, timeout=10)
            report.answered_while_stopping = True
        else:
            report.envelope = envelope

    # ---- after every stop ----------------------------------------------------------------------

    def wait_delivered(self, timeout: float = 60.0) -> Counter[str]:
        """Once every queued DM is `sent` (by whichever process): how often Slack accepted each."""
        wait_until(lambda: self._sent(self.queued) == len(self.queued), timeout=timeout,
                   what="every queued DM sent")
        return self.delivered()

    def delivered(self) -> Counter[str]:
        wanted = set(self.queued)
        texts = (str(c.args.get("text") or "").split("\n", 1)[0] for c in self.slack.calls_to("chat.postMessage")
                 if c.ok)
        return Counter(text for text in texts if text in wanted)

    # ---- reading the database ------------------------------------------------------------------

    def _queue(self, cycle: int) -> list[str]:
        keys = [f"stop-{cycle}-{i:03d}" for i in range(MESSAGES)]
        store = create_store(self.database_url)
        try:
            queue = OutboxQueue(store)
            for key, user in zip(keys, USERS, strict=True):
                queue.post(key, channel=user, text=key)  # type: ignore[arg-type]  # plain text, no markup
        finally:
            store.close()
        self.queued += keys
        return keys

    def _sent(self, keys: list[str]) -> int:
        return self._count(outbox_table.c.key.in_(keys), outbox_table.c.state == SENT)

    def _claimed_by(self, worker_id: str) -> int:
        return self._count(outbox_table.c.state == SENDING, outbox_table.c.claimed_by == worker_id)

    def _count(self, *where: Any) -> int:
        store = create_store(self.database_url)
        try:
            with store.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(outbox_table).where(*where)).scalar_one())
        finally:
            store.close()

    def request(self, request_id: int) -> ChangeRequest:
        store = create_store(self.database_url)
        try:
            with store.session() as session:
                row = session.get(ChangeRequest, request_id)
                assert row is not None
                return row
        finally:
            store.close()

    def _pending_request(self) -> int | None:
        store = create_store(self.database_url)
        try:
            with store.session() as session:
                found = session.scalar(select(func.max(ChangeRequest.id)).where(ChangeRequest.state == "pending"))
                return int(found) if found is not None else None
        finally:
            store.close()

    def lease_holder_pid(self) -> int | None:
        store = create_store(self.database_url)
        try:
            with store.session() as session:
                lease = session.get(Lease, "scheduler")
                live = lease is not None and _aware(lease.expires_at) > time.time()
                return int(lease.holder.split(":")[1]) if live and lease is not None else None
        finally:
            store.close()

    def jobs_env(self) -> dict[str, str]:
        return bot_env(self.tmp_path, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=self.slack.api_url,
                       PYTHONPATH=str(ROOT), MAM_APPROVERS=DEMO_APPROVER, **self.env())


def _aware(moment: Any) -> float:
    from bot.clock import as_utc

    return float(as_utc(moment).timestamp())


def _hostname() -> str:
    import socket

    return socket.gethostname()

