"""Tables of the watch at scale: enforcement state, the registrations index, Entra users by mail, licences.

- `watch_enforcement`: one row, whether Intune evaluates Defender's signal on Android now (the
  connector), since when, why not, and the notice the alert channel shows about it.
- `registration_index` + `registration_index_runs`: (user, device, app, policies) rows from Intune's
  report export (or the paged fallback), one generation per run; the newest successful run is the
  index. It lives here, so a new leader alerts at once instead of after a cold cycle.
- `entra_user_links`: a report row's Email → the Entra user, asked once and kept.
- `user_licences` + `licence_runs`: who holds an enabled Intune and Defender for Endpoint service plan.

Timestamps are UTC (`timezone=True`; SQLite hands them back naive, `bot.clock.as_utc` puts the zone back).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from bot.clock import as_utc
from bot.text import count

ON = "on"
OFF = "off"
UNKNOWN = "unknown"

EXPORT = "export"  # Intune's report export (MAMAppProtectionStatus)
PAGED = "paged"  # GET managedAppRegistrations, page after page: the fallback


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


def _text(default: str = "[]") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=False))


class Enforcement(SQLModel, table=True):
    """Is Intune evaluating Defender's threat level in Android app protection? One row (id 1)."""

    __tablename__ = "watch_enforcement"

    id: int = Field(default=1, primary_key=True)
    state: str = Field(default=UNKNOWN, max_length=16)  # on, off, unknown (not read yet, or the read failed)
    reason: str = Field(default="", max_length=1000)  # why it is off, in words
    fix: str = Field(default="", max_length=1000)
    link: str = Field(default="", max_length=1000)
    checked_at: datetime | None = _ts()
    changed_at: datetime | None = _ts()  # when `state` last changed
    off_since: datetime | None = _ts()  # the start of the current (or last) stretch off
    resumed_at: datetime | None = _ts()  # the sweep that saw it back on sets this; the next announces one digest
    resume_pending: bool = False  # the first sweep after it came back on announces what it finds as one digest
    notice_round: int = 0  # one notice per stretch off: its outbox key carries the round
    notice_version: int = 0  # each edit of that notice has its own key
    notice_channel: str = Field(default="", max_length=64)
    suppressed: int = 0  # blocks the sweep would have claimed, had Intune been evaluating
    version: int = 0  # guarded updates: two leaders never both announce a change


class IndexRun(SQLModel, table=True):
    """One refresh of the registrations index: where it came from and what it could not join."""

    __tablename__ = "registration_index_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(nullable=False, index=True)
    finished_at: datetime | None = _ts()
    worker: str = Field(default="", max_length=255)
    source: str = Field(default="", max_length=16)  # export or paged
    ok: bool = False
    rows: int = 0  # report rows (or registrations) read, every platform
    android_rows: int = 0
    kept: int = 0  # index rows written
    no_device_id: int = 0  # Android rows without an Entra device id: Defender can't be matched with them
    unknown_users: int = 0  # mails no Entra user has
    unknown_apps: str = _text()  # JSON [app name] the policies' app lists don't name
    unknown_policies: str = _text()  # JSON [policy name] no Android policy has
    duplicate_policies: str = _text()  # JSON [policy name] two or more Android policies share
    missing_columns: str = _text()  # JSON [column] the report didn't have
    fallback_reason: str = Field(default="", max_length=1000)  # why the export wasn't used
    requests: int = 0
    export_seconds: float = 0.0  # from creating the export job to its file downloaded
    error: str = Field(default="", max_length=2000)

    def listed(self, name: str) -> list[str]:
        return list(json.loads(getattr(self, name) or "[]"))

    def summary(self) -> str:
        """One line for the job's log, `mam-bot jobs run` and `/mam sweep index`."""
        if not self.ok:
            return f"failed: {self.error or self.fallback_reason or 'unknown error'}"
        fallback = f" (fallback: {self.fallback_reason})" if self.fallback_reason else ""
        return (f"{count(self.kept, 'Android registration')} indexed from {count(self.rows, 'row')} via "
                f"{self.source}{fallback}; {self.no_device_id} without an Entra device id, {self.unknown_users} "
                f"unknown mails, {count(self.requests, 'request')}")


class IndexRow(SQLModel, table=True):
    """One (user, device, app) with the policies that apply, as of one index run (`generation`)."""

    __tablename__ = "registration_index"
    __table_args__ = (
        Index("ix_registration_index_generation_user", "generation", "user_id"),
        Index("ix_registration_index_generation_device", "generation", "device_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    generation: int = Field(index=True)  # the IndexRun's id
    user_id: str = Field(default="", max_length=64)  # Entra user id, lower case; "" when the mail matched no one
    email: str = Field(default="", max_length=320)
    device_id: str = Field(default="", max_length=64)  # Entra device id, lower case; "" when the report had none
    device_name: str = Field(default="", max_length=256)
    device_model: str = Field(default="", max_length=256)
    manufacturer: str = Field(default="", max_length=256)
    app_name: str = Field(default="", max_length=256)
    package: str = Field(default="", max_length=256)  # "" when the app's name is not in any policy's list
    policies: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON [policy id]; None: unknown
    enrolled: bool = False  # MDM / Android Enterprise (a managed device id)
    last_sync: datetime | None = _ts()

    @property
    def policy_ids(self) -> frozenset[str] | None:
        return None if self.policies is None else frozenset(json.loads(self.policies))


class EntraUserLink(SQLModel, table=True):
    """A mail (or user principal name) → the one Entra user it names; `matches` 0 or 2+: none, or can't tell."""

    __tablename__ = "entra_user_links"

    email: str = Field(primary_key=True, max_length=320)
    user_id: str | None = Field(default=None, max_length=64)
    matches: int = 0
    name: str = Field(default="", max_length=256)
    resolved_at: datetime = _ts(nullable=False)


class UserLicence(SQLModel, table=True):
    """A user holding at least one enabled plan the watch cares about (absent: holds neither)."""

    __tablename__ = "user_licences"

    user_id: str = Field(primary_key=True, max_length=64)  # Entra user id, lower case
    intune: bool = False
    defender: bool = False
    checked_at: datetime = _ts(nullable=False)


class LicenceRun(SQLModel, table=True):
    """One licence refresh; until one succeeds, nobody is called unlicensed."""

    __tablename__ = "licence_runs"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(nullable=False, index=True)
    finished_at: datetime | None = _ts()
    ok: bool = False
    intune_users: int = 0
    defender_users: int = 0
    requests: int = 0
    error: str = Field(default="", max_length=2000)

    def summary(self) -> str:
        """One line for the job's log, `mam-bot jobs run` and `/mam sweep licences`."""
        if not self.ok:
            return self.error or "Licences were not read."
        took = ""
        if self.finished_at is not None and self.started_at is not None:
            took = f", {(as_utc(self.finished_at) - as_utc(self.started_at)).total_seconds():.1f} s"
        return (f"licences: {count(self.intune_users, 'user')} with an Intune plan, "
                f"{count(self.defender_users, 'user')} with a Defender for Endpoint plan "
                f"({count(self.requests, 'request')}{took})")
