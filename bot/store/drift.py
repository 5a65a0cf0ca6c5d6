"""Tables of drift detection (workflows.drift): the snapshot of every Android app protection policy and of the
MDE connector, the changes made outside the bot that were reported (one card each), and Intune's audit events
read so far.

- `drift_state`: one row; when the first baseline was taken and the last poll read the tenant.
- `drift_baselines`: per policy or connector, what the bot holds as approved (settings, apps, assignments; the
  connector's settings), `lastModifiedDateTime` and `version` as Graph last gave them.
- `drift_reports`: one change outside the bot, from when it was seen until it is accepted, reverted or back to
  the snapshot; one open report per object (`open_key`), and its card in the alert channel.
- `drift_audit_events`: the audit events read, one row per event id (they are read again with an overlap, and
  can arrive late): who did what to which resource, when. The values in them are never used to rebuild a
  setting; the snapshot is.

Timestamps are UTC (`timezone=True`; SQLite hands them back naive, `bot.clock.as_utc` puts the zone back).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel

OPEN = "open"
ACCEPTED = "accepted"  # an admin made the change the new baseline
RESOLVED = "resolved"  # the object is back to its snapshot (reverted through the bot, or by hand)

CHANGED = "changed"
CREATED = "created"
DELETED = "deleted"


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


def _text(default: str = "[]") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=False))


class DriftState(SQLModel, table=True):
    """Drift detection's progress: one row (id 1)."""

    __tablename__ = "drift_state"

    id: int = Field(default=1, primary_key=True)
    baseline_at: datetime | None = _ts()  # the first poll took the baseline silently then
    last_poll_at: datetime | None = _ts()  # when the last good poll read the tenant
    audit_since: datetime | None = _ts()  # the lower bound of the last audit read (activityDateTime ge)
    audit_read_at: datetime | None = _ts()
    audit_error: str = Field(default="", max_length=1000)  # why the last audit read failed ("" when it worked)
    version: int = 0


class DriftBaseline(SQLModel, table=True):
    """What the bot holds as the approved state of one policy or the connector."""

    __tablename__ = "drift_baselines"

    key: str = Field(primary_key=True, max_length=300)  # "policy:<id>" or "connector:<id>", lower case
    kind: str = Field(max_length=16)  # policy or connector
    object_id: str = Field(max_length=256)
    name: str = Field(default="", max_length=512)
    state: str = _text("{}")  # JSON {"settings": {...}, "apps": [...] | null, "assignments": [...] | null}
    last_modified: str = Field(default="", max_length=64)  # lastModifiedDateTime as Graph gave it
    object_version: str = Field(default="", max_length=128)  # the policy's `version` (an etag)
    checked_at: datetime | None = _ts()  # the last poll that read it
    updated_at: datetime | None = _ts()  # when the snapshot last moved
    updated_by: str = Field(default="", max_length=200)  # the first poll, a change of the bot, an admin's Accept
    version: int = 0

    @property
    def snapshot(self) -> dict[str, Any]:
        return dict(json.loads(self.state or "{}"))


class DriftReport(SQLModel, table=True):
    """One change made outside the bot to one object: its card, who did it, and how it ended."""

    __tablename__ = "drift_reports"

    id: int | None = Field(default=None, primary_key=True)
    target_key: str = Field(index=True, max_length=300)
    open_key: str | None = Field(default=None, max_length=300, unique=True)  # the target's key while open
    kind: str = Field(max_length=16)  # policy or connector
    change: str = Field(default=CHANGED, max_length=16)  # changed, created or deleted
    object_id: str = Field(max_length=256)
    name: str = Field(default="", max_length=512)
    before: str = _text("{}")  # JSON: the snapshot's state when this was seen ({} for a policy created)
    after: str = _text("{}")  # JSON: the state seen ({} for a policy deleted)
    names: str = _text("{}")  # JSON {group id: name} for the card
    window_start: datetime | None = _ts()  # the last read before the change: it happened after this
    detected_at: datetime = _ts(nullable=False, index=True)
    updated_at: datetime | None = _ts()
    changed_at: datetime | None = _ts()  # when, per the audit log (else the policy's lastModifiedDateTime)
    actors: str = _text()  # JSON [{"upn", "app", "app_id", "type"}]: who, from the audit log ([]: no event yet)
    events: str = _text()  # JSON [audit event id] the report is attributed to
    state: str = Field(default=OPEN, max_length=16, index=True)  # open, accepted, resolved
    resolution: str = Field(default="", max_length=1000)
    decided_by: str = Field(default="", max_length=64)  # the Slack user who accepted it
    decided_at: datetime | None = _ts()
    revert_requests: str = _text()  # JSON [change request id] filed by Revert
    reverted_by: str = Field(default="", max_length=64)
    reverted_at: datetime | None = _ts()
    channel: str = Field(default="", max_length=64)
    card_key: str = Field(default="", max_length=200)
    version: int = 0  # each change of the card is one edit with its own outbox key

    def loaded(self, name: str) -> Any:
        return json.loads(getattr(self, name) or ("{}" if name in ("before", "after", "names") else "[]"))


class DriftAuditEvent(SQLModel, table=True):
    """An Intune audit event drift detection has read (once, whatever the overlap)."""

    __tablename__ = "drift_audit_events"

    id: str = Field(primary_key=True, max_length=64)
    activity_at: datetime = _ts(nullable=False, index=True)
    component: str = Field(default="", max_length=128)
    activity: str = Field(default="", max_length=256)
    operation: str = Field(default="", max_length=32)
    resource_ids: str = _text()  # JSON [resource id, lower case]
    properties: str = _text()  # JSON [property name] modified (names only)
    actor_type: str = Field(default="", max_length=64)
    actor_app_id: str = Field(default="", max_length=64)
    actor_app: str = Field(default="", max_length=256)
    actor_upn: str = Field(default="", max_length=320)
    ours: bool = False  # made by the bot's own app
    seen_at: datetime = _ts(nullable=False, index=True)
