"""Tables. Migrations arrive with the fleet work; until then tables are created on start."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


class AuditEntry(SQLModel, table=True):
    """One thing that happened: a command, a refusal, a decision, a Graph write. Never updated."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(index=True, max_length=64)
    action: str = Field(index=True, max_length=128)
    target: str = Field(default="", max_length=512)
    outcome: str = Field(max_length=32)
    detail: str = Field(default="", max_length=4000)
    correlation_id: str = Field(default="", max_length=64)
    graph_request_id: str = Field(default="", max_length=64)  # Microsoft's `request-id` of the call
    client_request_id: str = Field(default="", max_length=64)  # the bot's `client-request-id` of it


class ChangeRequest(SQLModel, table=True):
    """One tenant write, from request to outcome. `state` only moves by guarded UPDATEs."""

    __tablename__ = "change_requests"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=64)
    title: str = Field(max_length=512)
    target: str = Field(default="", max_length=512)
    change: str = Field(default="{}")  # JSON: exactly what is approved
    snapshot: str = Field(default="{}")  # JSON: the state it was asked against
    plan: str = Field(default="[]")  # JSON: the Graph calls it would make, as shown on the card
    requester: str = Field(index=True, max_length=64)
    justification: str = Field(max_length=3000)
    state: str = Field(index=True, max_length=16)
    quorum: int = 1
    created_at: datetime
    expires_at: datetime = Field(index=True)
    decided_at: datetime | None = None
    decided_by: str = Field(default="", max_length=64)
    reject_reason: str = Field(default="", max_length=3000)
    executed_at: datetime | None = None
    attempts: int = 0
    result: str = Field(default="")  # what the executor did, drift included
    error: str = Field(default="")
    reminded_at: datetime | None = None
    version: int = 0  # bumped on every change, so each card edit has its own outbox key
    origin_channel: str = Field(default="", max_length=64)
    card_destinations: str = Field(default="[]")  # JSON: where its approval cards were posted
    # one writer per target: executions of the same target_key run one at a time, oldest approval first
    target_key: str = Field(default="", max_length=512, index=True)
    # who runs it now, and until when without renewal; a live replica takes over an expired lease
    lease_owner: str = Field(default="", max_length=128)
    lease_until: datetime | None = None
    intent: str = Field(default="")  # JSON: what the executor was about to write, before it wrote it
    resumed: int = 0  # times another process took it over


class Approval(SQLModel, table=True):
    """One approver's yes; the unique pair makes an approver count once, however often they click."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_approval_request_approver"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="change_requests.id", index=True)
    approver: str = Field(max_length=64)
    at: datetime


class Lease(SQLModel, table=True):
    """Who leads: the process whose lease on a name has not expired runs that name's jobs."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    acquired_at: datetime
    expires_at: datetime
    token: int = 0  # grows each time the lease passes to a new holder (fencing)


class JobRun(SQLModel, table=True):
    """One run of a scheduled job, for `/mam status` and `mam-bot jobs list`."""

    __tablename__ = "job_runs"

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(index=True, max_length=64)
    holder: str = Field(max_length=128)
    started_at: datetime = Field(index=True)
    finished_at: datetime | None = None
    outcome: str = Field(default="running", max_length=16)  # running, ok, failed, interrupted
    summary: str = Field(default="", max_length=4000)


class SeenRequest(SQLModel, table=True):
    """A request (or an idempotency key: a trigger_id, a click, a form, an event) already handled, kept
    for `bot.store.seen.WINDOW`: a second one with the same key is a replay or a double submit."""

    __tablename__ = "seen_requests"

    key: str = Field(primary_key=True, max_length=80)  # "<kind>:<sha-256 hex>", see bot.store.seen
    seen_at: datetime = Field(index=True)
