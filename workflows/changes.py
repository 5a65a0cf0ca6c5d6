"""Change requests: ask, approve (four eyes), execute exactly once, on record.

Every tenant write is a `ChangeRequest` row. Its state moves only by guarded transitions
(`UPDATE … WHERE id = ? AND state = ?`), so double clicks, two approvers at once, Slack retries
and two bot processes all end with one execution. What is approved is the *change* (a delta); the
executor re-reads the tenant and applies that delta to whatever is there now, reporting drift.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.clock import as_utc
from bot.errors import UserError
from bot.logs import bind
from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import md, mention
from bot.store import Approval, AuditLog, ChangeRequest, Store
from bot.store.audit import LastWrite
from bot.store.leases import LeaderLease
from workflows.execution import EXECUTION_LEASE, Execution, LeaseLost, target_lease

log = logging.getLogger(__name__)



class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


OPEN_STATES = (State.PENDING, State.APPROVED, State.EXECUTING)


@dataclass(frozen=True)
class GraphCall:
    method: str
    path: str
    body: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body}


@dataclass(frozen=True)
class Plan:
    """What a change kind says about a requested change, read against the tenant now."""

    title: str
    target: str
    change: Mapping[str, Any]
    snapshot: Mapping[str, Any]
    calls: list[GraphCall]
    before: str
    after: str
    key: str = ""  # what it writes ("policy:<id>", "connector"): executions of one key run one at a time
    notes: tuple[str, ...] = ()  # what the approver should know beside the calls (who lacks a licence)


@dataclass(frozen=True)
class Outcome:
    applied: bool  # False: the change was already in place, a recorded no-op
    summary: str
    drift: list[str] = field(default_factory=list)


class ChangeKind(Protocol):
    """One kind of tenant write. `apply` must be safe to run again: it re-reads and applies the delta, calling
    `run.intend(...)` just before each write (`workflows.execution`)."""

    name: str

    def plan(self, change: Mapping[str, Any]) -> Plan: ...

    def apply(self, change: Mapping[str, Any], snapshot: Mapping[str, Any], run: Execution) -> Outcome: ...


class Notifier(Protocol):
    """Tells people about a request: cards for approvers, a DM for the requester."""

    def filed(self, request: ChangeRequest) -> None: ...

    def changed(self, request: ChangeRequest) -> None: ...

    def reminded(self, request: ChangeRequest) -> None: ...


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str  # for people: a plain str is escaped when shown, a `Mrkdwn` is shown as it is
    request: ChangeRequest | None = None


class ChangeService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        kinds: Mapping[str, ChangeKind],
        notifier: Notifier,
        *,
        is_approver: Callable[[str], bool],
        now: Callable[[], datetime],
        quorum: int = 1,
        expiry: timedelta = timedelta(hours=24),
        destinations: Callable[[], list[str]] = list,
    ) -> None:
        self.store = store
        self.audit = audit
        self.kinds = dict(kinds)
        self.notifier = notifier
        self.is_approver = is_approver
        self.now = now
        self.quorum = max(1, quorum)
        self.expiry = expiry
        self.destinations = destinations

    # ---- reading ------------------------------------------------------------------------------

    def get(self, request_id: int) -> ChangeRequest | None:
        with self.store.session() as session:
            return session.get(ChangeRequest, request_id)

    def require(self, request_id: int) -> ChangeRequest:
        request = self.get(request_id)
        if request is None:
            raise UserError(f"There is no change request #{request_id}.")
        return request

    def approvals(self, request_id: int) -> list[Approval]:
        return approvals_of(self.store, request_id)

    def open_requests(self, limit: int = 20) -> list[ChangeRequest]:
        return self._list(col(ChangeRequest.state).in_([s.value for s in OPEN_STATES]), limit)

    def count_open(self, state: State | None = None) -> int:
        """How many requests are open (or in `state`): lists show some, and say how many more there are."""
        states = [state.value] if state is not None else [s.value for s in OPEN_STATES]
        with self.store.session() as session:
            return int(session.exec(select(func.count()).select_from(ChangeRequest).where(
                col(ChangeRequest.state).in_(states))).one())

    def requests_by(self, user_id: str, limit: int = 10) -> list[ChangeRequest]:
        return self._list(col(ChangeRequest.requester) == user_id, limit)

    def _list(self, where: Any, limit: int) -> list[ChangeRequest]:
        with self.store.session() as session:
            return list(session.exec(
                select(ChangeRequest).where(where).order_by(col(ChangeRequest.id).desc()).limit(limit)))

    # ---- asking -------------------------------------------------------------------------------

    def file(self, kind: str, change: Mapping[str, Any], *, requester: str, justification: str,
             origin_channel: str = "") -> ChangeRequest:
        """Read the tenant, record the request with its snapshot and planned calls, notify approvers."""
        justification = justification.strip()
        if not justification:
            raise UserError("A justification is required: say why this change is needed.")
        plan = self._kind(kind).plan(change)
        now = self.now()
        request = ChangeRequest(
            kind=kind, title=plan.title, target=plan.target, change=json.dumps(dict(plan.change)),
            snapshot=json.dumps({**plan.snapshot, "_before": plan.before, "_after": plan.after,
                                 **({"_notes": list(plan.notes)} if plan.notes else {})}, default=str),
            plan=json.dumps([c.to_json() for c in plan.calls]), requester=requester,
            justification=justification[:3000], state=State.PENDING, quorum=self.quorum,
            created_at=now, expires_at=now + self.expiry, origin_channel=origin_channel,
            card_destinations=json.dumps(self.destinations()), target_key=(plan.key or plan.target)[:512],
        )
        with self.store.session() as session:
            session.add(request)
            session.commit()
            session.refresh(request)
        assert request.id is not None
        self.audit.record(actor=requester, action=f"requested #{request.id} {kind}", outcome="pending",
                          target=plan.target, detail=f"{plan.title}; why: {justification}"[:4000])
        self.notifier.filed(request)
        return request

    # ---- deciding -----------------------------------------------------------------------------

    def approve(self, request_id: int, approver: str) -> Result:
        request = self.require(request_id)
        refusal = self._refuse_decision(request, approver, "approve")
        if refusal:
            self.audit.record(actor=approver, action=f"approve #{request_id}", outcome="refused", detail=refusal)
            return Result(False, refusal, request)
        try:
            with self.store.session() as session:
                session.add(Approval(request_id=request_id, approver=approver, at=self.now()))
                session.commit()
        except IntegrityError:
            return Result(False, f"You have already approved #{request_id}; an approver counts once.", request)
        count = len(self.approvals(request_id))
        if count < request.quorum:
            self.audit.record(actor=approver, action=f"approve #{request_id}", outcome="approval recorded",
                              detail=f"{count} of {request.quorum}")
            self._touch(request_id)
            current = self.require(request_id)
            self.notifier.changed(current)
            return Result(True, f"Approval recorded ({count} of {request.quorum}).", current)
        if not self._transition(request_id, [State.PENDING], State.APPROVED, decided_by=approver,
                                decided_at=self.now()):
            # another approver (or process) completed the quorum at the same moment: theirs is the decision
            # (one "approved" row per decision), this approval is on record beside it
            self.audit.record(actor=approver, action=f"approve #{request_id}", outcome="approval recorded",
                              detail=f"{count} of {request.quorum}; approved by another approver at the same time")
            return Result(True, f"Approval recorded; #{request_id} is already {self.require(request_id).state}.")
        self.audit.record(actor=approver, action=f"approve #{request_id}", outcome="approved",
                          detail=f"{count} of {request.quorum}")
        approved = self.require(request_id)
        self.notifier.changed(approved)
        executed = self.execute(request_id)
        return Result(True, f"Approved #{request_id}.", executed or approved)

    def reject(self, request_id: int, approver: str, reason: str) -> Result:
        request = self.require(request_id)
        reason = reason.strip()
        if not reason:
            return Result(False, "A reason is required to reject a request.", request)
        refusal = self._refuse_decision(request, approver, "reject")
        if refusal:
            self.audit.record(actor=approver, action=f"reject #{request_id}", outcome="refused", detail=refusal)
            return Result(False, refusal, request)
        if not self._transition(request_id, [State.PENDING], State.REJECTED, decided_by=approver,
                                decided_at=self.now(), reject_reason=reason[:3000]):
            return Result(False, f"#{request_id} is already {self.require(request_id).state}.")
        self.audit.record(actor=approver, action=f"reject #{request_id}", outcome="rejected", detail=reason)
        rejected = self.require(request_id)
        self.notifier.changed(rejected)
        return Result(True, f"Rejected #{request_id}.", rejected)

    def cancel(self, request_id: int, user: str) -> Result:
        request = self.require(request_id)
        if request.requester != user:
            return Result(False, md("Only the requester ({}) can cancel #{}.", mention(request.requester), request_id),
                          request)
        if not self._transition(request_id, [State.PENDING], State.CANCELLED, decided_by=user,
                                decided_at=self.now()):
            return Result(False, f"#{request_id} is {request.state}; only pending requests can be cancelled.")
        self.audit.record(actor=user, action=f"cancel #{request_id}", outcome="cancelled")
        cancelled = self.require(request_id)
        self.notifier.changed(cancelled)
        return Result(True, f"Cancelled #{request_id}.", cancelled)

    def _refuse_decision(self, request: ChangeRequest, user: str, verb: str) -> str | None:
        if request.requester == user:
            return f"You asked for #{request.id}, so you can't {verb} it: another approver has to."
        if not self.is_approver(user):
            return f"Only approvers (MAM_APPROVERS) can {verb} change requests."
        if request.state != State.PENDING:
            return f"#{request.id} is already {request.state}."
        if as_utc(request.expires_at) <= self.now():
            return f"#{request.id} has expired; ask for a new request."
        return None

    # ---- executing ----------------------------------------------------------------------------

    def execute(self, request_id: int) -> ChangeRequest | None:
        """Run an approved change once, after the approved changes of its target that are older. Returns the
        request as it ended, or None when another thread or process runs its target now (and will run it)."""
        request = self.get(request_id)
        if request is None or request.state != State.APPROVED:
            return None
        key, ran = request.target_key or f"request:{request_id}", None
        while True:
            lease = target_lease(self.store, key, self.now)
            if not lease.acquire():
                return ran  # the holder runs every approved change of this target, ours included
            try:
                while (next_id := self._oldest_approved(key)) is not None and lease.still_held():
                    done = self._run(next_id, lease)
                    if next_id == request_id:
                        ran = done
                    if done is None and not lease.still_held():
                        return ran  # it passed to another process, which runs the rest of this target
            finally:
                lease.release()
            # approved while we held the lease, by someone whose own attempt found it held: ours to run
            if self._oldest_approved(key) is None:
                return ran

    def _oldest_approved(self, key: str) -> int | None:
        with self.store.session() as session:
            if key.startswith("request:"):  # rows from before targets were recorded
                request_id = int(key.split(":", 1)[1])
                row = session.get(ChangeRequest, request_id)
                return request_id if row is not None and row.state == State.APPROVED else None
            return session.exec(
                select(ChangeRequest.id).where(col(ChangeRequest.target_key) == key,
                                               col(ChangeRequest.state) == State.APPROVED)
                .order_by(col(ChangeRequest.decided_at), col(ChangeRequest.id)).limit(1)).first()

    def _run(self, request_id: int, lease: LeaderLease) -> ChangeRequest | None:
        """Execute one claimed change. Its Microsoft writes and log lines, the notifier's included, carry its id
        (the log context), and its outcome row the ids of the last write it made: what Microsoft support asks
        for."""
        with bind(change_request=request_id), self.audit.last_write_of(request_id) as last_write:
            return self._run_bound(request_id, lease, last_write)

    def _run_bound(self, request_id: int, lease: LeaderLease, last_write: LastWrite) -> ChangeRequest | None:
        now = self.now()
        if not self._transition(request_id, [State.APPROVED], State.EXECUTING, executed_at=now,
                                attempts=ChangeRequest.attempts + 1, lease_owner=lease.holder,
                                lease_until=now + EXECUTION_LEASE):
            return None
        request = self.require(request_id)
        # the intent is on record before any Graph call, so a crash here is found again and taken over
        self.audit.record(actor="mam-bot", action=f"execute #{request_id} {request.kind}",
                          outcome="resumed" if request.resumed else "executing", target=request.target,
                          detail=request.plan[:4000])
        self.notifier.changed(request)
        try:
            with Execution(self.store, request, lease, self.now) as run:
                outcome = self._kind(request.kind).apply(json.loads(request.change), json.loads(request.snapshot),
                                                         run)
        except LeaseLost:
            log.warning("change #%s: lease lost mid-run; the process that took it over finishes it", request_id)
            return None
        except MicrosoftError as exc:  # the ids of the call that failed
            return self._fail(request, str(exc), exc.request_id or "", exc.client_request_id or "")
        except UserError as exc:  # found wrong after its last write, if it made one
            return self._fail(request, str(exc), last_write.request_id, last_write.client_request_id)
        except Exception as exc:
            log.exception("change #%s failed", request_id)
            return self._fail(request, f"unexpected error ({type(exc).__name__}); see the bot's log",
                              last_write.request_id, last_write.client_request_id)
        result = outcome.summary + "".join(f"\n• {d}" for d in outcome.drift)
        if request.resumed:
            result += "\n• resumed by another mam-bot process after the first one stopped mid-run"
        if not self._transition(request_id, [State.EXECUTING], State.SUCCEEDED, owner=lease.holder,
                                result=result[:8000], error="", lease_owner="", lease_until=None):
            return None  # taken over meanwhile: the process that took it over records the outcome
        self.audit.flush()  # the rows of its writes, queued as they were made, go before its outcome
        self.audit.record(actor="mam-bot", action=f"execute #{request_id} {request.kind}",
                          outcome="succeeded" if outcome.applied else "no-op", target=request.target,
                          detail=result[:4000], graph_request_id=last_write.request_id,
                          client_request_id=last_write.client_request_id)
        done = self.require(request_id)
        self.notifier.changed(done)
        return done

    def _fail(self, request: ChangeRequest, error: str, graph_request_id: str,
              client_request_id: str) -> ChangeRequest | None:
        assert request.id is not None
        if not self._transition(request.id, [State.EXECUTING], State.FAILED, owner=request.lease_owner,
                                error=error[:8000], lease_owner="", lease_until=None):
            return None  # taken over meanwhile: a late error of a stalled run must not overwrite that run
        self.audit.flush()  # the rows of its writes, queued as they were made, go before its outcome
        self.audit.record(actor="mam-bot", action=f"execute #{request.id} {request.kind}", outcome="failed",
                          target=request.target, detail=error[:4000], graph_request_id=graph_request_id,
                          client_request_id=client_request_id)
        failed = self.require(request.id)
        self.notifier.changed(failed)
        return failed

    def retry(self, request_id: int, user: str) -> Result:
        """Run a failed change again: the same approved change, no new approval, while it is valid."""
        request = self.require(request_id)
        if user != request.requester and not self.is_approver(user):
            return Result(False, f"Only the requester or an approver can retry #{request_id}.", request)
        if request.state != State.FAILED:
            return Result(False, f"#{request_id} is {request.state}; only a failed change can be retried.", request)
        if as_utc(request.expires_at) <= self.now():
            return Result(False, f"The approval of #{request_id} has expired; file a new request.", request)
        # a new attempt: what an earlier one intended, or that it was taken over, no longer describes it
        if not self._transition(request_id, [State.FAILED], State.APPROVED, intent="", resumed=0):
            return Result(False, f"#{request_id} is already being retried.")
        self.audit.record(actor=user, action=f"retry #{request_id}", outcome="approved")
        done = self.execute(request_id)
        return Result(True, f"Retried #{request_id}.", done)

    def take_over(self) -> int:
        """Run what was approved but not run, and take over executions whose process stopped renewing their
        lease. Any live process may call it (the leader does, every few seconds); returns how many it ran."""
        now = self.now()
        with self.store.session() as session:
            stuck = list(session.exec(select(ChangeRequest.id).where(
                col(ChangeRequest.state) == State.EXECUTING, self._lease_expired(now))))
        for request_id in stuck:
            assert request_id is not None
            with self.store.session() as session:  # guarded: only while its lease is still expired
                taken = session.exec(
                    update(ChangeRequest).where(col(ChangeRequest.id) == request_id,
                                                col(ChangeRequest.state) == State.EXECUTING,
                                                self._lease_expired(now))
                    .values(state=State.APPROVED.value, version=ChangeRequest.version + 1, lease_owner="",
                            resumed=ChangeRequest.resumed + 1)).rowcount
                session.commit()
            if taken == 1:
                self.audit.record(actor="mam-bot", action=f"take over #{request_id}", outcome="approved",
                                  detail="its process stopped renewing the execution lease")
        with self.store.session() as session:
            waiting = list(session.exec(select(ChangeRequest.id).where(col(ChangeRequest.state) == State.APPROVED)
                                        .order_by(col(ChangeRequest.decided_at), col(ChangeRequest.id))))
        ran = 0
        for request_id in waiting:
            assert request_id is not None
            # `apply` re-reads the tenant and knows its earlier intent, so a half-done change finishes once
            if self.execute(request_id) is not None:
                ran += 1
        return ran

    @staticmethod
    def _lease_expired(now: datetime) -> Any:
        return or_(col(ChangeRequest.lease_until) < now,
                   and_(col(ChangeRequest.lease_until).is_(None),
                        col(ChangeRequest.executed_at) < now - EXECUTION_LEASE))

    # ---- timers -------------------------------------------------------------------------------

    def expire_due(self) -> int:
        now = self.now()
        with self.store.session() as session:
            ids = list(session.exec(select(ChangeRequest.id).where(
                ChangeRequest.state == State.PENDING, col(ChangeRequest.expires_at) <= now)))
        expired = 0
        for request_id in ids:
            assert request_id is not None
            if self._transition(request_id, [State.PENDING], State.EXPIRED, decided_at=now):
                expired += 1
                self.audit.record(actor="mam-bot", action=f"expire #{request_id}", outcome="expired")
                self.notifier.changed(self.require(request_id))
        return expired

    def remind_due(self) -> int:
        """One reminder per request, half-way to its expiry."""
        now = self.now()
        reminded = 0
        with self.store.session() as session:
            candidates = list(session.exec(select(ChangeRequest).where(
                ChangeRequest.state == State.PENDING, col(ChangeRequest.reminded_at).is_(None))))
        for request in candidates:
            halfway = as_utc(request.created_at) + (as_utc(request.expires_at) - as_utc(request.created_at)) / 2
            if now < halfway or as_utc(request.expires_at) <= now:
                continue
            with self.store.session() as session:
                claimed = session.exec(
                    update(ChangeRequest).where(col(ChangeRequest.id) == request.id,
                                                col(ChangeRequest.reminded_at).is_(None),
                                                col(ChangeRequest.state) == State.PENDING)
                    .values(reminded_at=now)).rowcount
                session.commit()
            if claimed == 1:
                reminded += 1
                self.notifier.reminded(request)
        return reminded

    # ---- internals ----------------------------------------------------------------------------

    def _kind(self, kind: str) -> ChangeKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise UserError(f"I don't know how to make a {kind!r} change.") from None

    def _transition(self, request_id: int, from_states: Iterable[State], to_state: State, *, owner: str | None = None,
                    **values: Any) -> bool:
        """The only way state changes: succeeds for exactly one caller, whatever the concurrency. `owner`: only
        while that execution still owns the request (not after another process took it over)."""
        guard = [col(ChangeRequest.lease_owner) == owner] if owner is not None else []
        with self.store.session() as session:
            rowcount = session.exec(
                update(ChangeRequest)
                .where(col(ChangeRequest.id) == request_id,
                       col(ChangeRequest.state).in_([s.value for s in from_states]), *guard)
                .values(state=to_state.value, version=ChangeRequest.version + 1, **values)
            ).rowcount
            session.commit()
        return bool(rowcount == 1)

    def _touch(self, request_id: int) -> None:
        with self.store.session() as session:
            session.exec(update(ChangeRequest).where(col(ChangeRequest.id) == request_id)
                         .values(version=ChangeRequest.version + 1))
            session.commit()


def approvals_of(store: Store, request_id: int) -> list[Approval]:
    with store.session() as session:
        return list(session.exec(select(Approval).where(Approval.request_id == request_id).order_by(col(Approval.id))))
