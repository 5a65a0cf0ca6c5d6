"""Tables of the watch: block episodes, sweep runs, onboarding cases, nudges and the Slack-user cache.

Everything a sweep or a nudge run must remember across restarts and leaders lives here; the jobs
themselves hold nothing between runs. Timestamps are UTC (`timezone=True` columns; SQLite hands
them back naive, `as_utc` puts the zone back).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, DateTime, Index, Text, func
from sqlmodel import Field, SQLModel, col, select

from bot.clock import as_utc

if TYPE_CHECKING:
    from bot.store.engine import Store

OPEN = "open"
RESOLVED = "resolved"

PENDING = "pending"  # onboarding: waiting for Defender to list the user's device as onboarded
ONBOARDED = "onboarded"
CLOSED = "closed"  # no longer applies (app removed, policy unassigned) without onboarding
STOPPED = "stopped"  # the user asked the bot to stop reminding them
UNLICENSED = "unlicensed"  # waiting, but without an Intune or Defender licence: can't onboard, never nudged


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


def _text(default: str = "[]") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=False))


class Episode(SQLModel, table=True):
    """One (device, policy) block, from the sweep that first saw it to the one that saw it end.

    `open_key` is `device|policy` while the episode is open and NULL after: the unique index on it
    lets exactly one process open an episode, however many sweeps or leaders race for it.
    """

    __tablename__ = "watch_episodes"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(index=True, max_length=64)
    policy_id: str = Field(index=True, max_length=128)
    open_key: str | None = Field(default=None, max_length=200, unique=True)
    state: str = Field(default=OPEN, index=True, max_length=16)
    machine_id: str = Field(default="", max_length=64)
    device_name: str = Field(default="", max_length=256)
    device_model: str = Field(default="", max_length=256)
    policy_name: str = Field(default="", max_length=256)
    maximum: str = Field(default="", max_length=16)  # the policy's maximumAllowedDeviceThreatLevel
    action: str = Field(default="", max_length=32)
    level: str = Field(default="", max_length=16)  # the device's level now, Graph's spelling
    risk_score: str = Field(default="", max_length=16)  # Defender's own word for it
    users: str = _text()  # JSON [{"id", "name", "mail"}]
    apps: str = _text()  # JSON [packageId]
    opened_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)  # the last sweep that found it blocked
    defender_last_seen: datetime | None = _ts()
    resolved_at: datetime | None = _ts()
    resolution: str = Field(default="", max_length=256)
    version: int = 0  # bumped on every change the card shows: one outbox key per edit
    card_key: str | None = Field(default=None, max_length=255)  # its own card, when it has one
    digest_key: str | None = Field(default=None, max_length=255)  # the digest it was announced in
    resolved_in_digest: bool = False
    acknowledged_by: str = Field(default="", max_length=64)
    acknowledged_at: datetime | None = _ts()
    snoozed_until: datetime | None = _ts()
    snoozed_by: str = Field(default="", max_length=64)
    snoozes: int = 0

    @property
    def user_list(self) -> list[dict[str, str]]:
        return list(json.loads(self.users or "[]"))

    @property
    def app_list(self) -> list[str]:
        return list(json.loads(self.apps or "[]"))


class SweepRun(SQLModel, table=True):
    """One threat sweep and what it found; the newest is what `/mam status` shows."""

    __tablename__ = "watch_sweeps"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(nullable=False, index=True)
    finished_at: datetime | None = _ts()
    worker: str = Field(default="", max_length=255)
    ok: bool = False
    devices: int = 0  # Android machines Defender listed
    registrations: int = 0  # registrations read (all platforms)
    android_registrations: int = 0
    active_blocks: int = 0
    new_episodes: int = 0
    updated_episodes: int = 0
    resolved_episodes: int = 0
    pending_onboarding: int = 0
    warned: int = 0
    unmatched: int = 0  # Android registrations with no azureADDeviceId to join on
    requests: int = 0
    digests: int = 0
    error: str = Field(default="", max_length=2000)
    source: str = Field(default="", max_length=16)  # where the registrations came from: export, paged, index
    enforcement: str = Field(default="", max_length=16)  # on, off or unknown, as this sweep read the connector
    suppressed: int = 0  # blocks not claimed because Intune isn't evaluating Defender's signal
    unlicensed: int = 0  # waiting users left out of onboarding for lack of a licence


class SlackUserLink(SQLModel, table=True):
    """users.lookupByEmail answers (about 50 a minute), kept: found or not, and when asked."""

    __tablename__ = "watch_slack_users"

    email: str = Field(primary_key=True, max_length=320)
    slack_user_id: str | None = Field(default=None, max_length=32)
    looked_up_at: datetime = _ts(nullable=False)


class OnboardingCase(SQLModel, table=True):
    """A user whose managed app waits for Defender on their device, and the nudges they got.

    `round` counts how often the case reopened (a new device months later): nudge keys include it,
    so a new round nudges again and a repeat of a round never does.
    """

    __tablename__ = "watch_onboarding"
    __table_args__ = (Index("ix_watch_onboarding_state_nudges", "state", "nudges_sent"),)

    user_id: str = Field(primary_key=True, max_length=64)  # Entra user id, lower case
    kind: str = Field(default="registered", max_length=16)  # or "unregistered": assigned, no app yet
    state: str = Field(default=PENDING, max_length=16)
    round: int = 1
    user_name: str = Field(default="", max_length=256)
    user_mail: str = Field(default="", max_length=320)
    devices: str = _text()  # JSON [{"id", "name", "model"}]
    apps: str = _text()  # JSON [packageId]
    policies: str = _text()  # JSON [policy name]
    first_pending_at: datetime = _ts(nullable=False)
    last_pending_at: datetime = _ts(nullable=False)
    onboarded_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    nudges_sent: int = 0
    last_nudge_at: datetime | None = _ts()
    paused_until: datetime | None = _ts()  # "Done" holds reminders while Defender catches up
    done_at: datetime | None = _ts()
    stopped_at: datetime | None = _ts()
    thanked_at: datetime | None = _ts()
    slack_user_id: str = Field(default="", max_length=32)

    @property
    def device_list(self) -> list[dict[str, str]]:
        return list(json.loads(self.devices or "[]"))

    @property
    def app_list(self) -> list[str]:
        return list(json.loads(self.apps or "[]"))

    @property
    def policy_list(self) -> list[str]:
        return list(json.loads(self.policies or "[]"))


class NudgeLog(SQLModel, table=True):
    """Every nudge, reminder and thank-you sent: append-only, for counts and the audit trail."""

    __tablename__ = "watch_nudge_log"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=64)
    slack_user_id: str = Field(default="", max_length=32)
    kind: str = Field(max_length=16)  # nudge, reminder, thanks
    number: int = 0
    at: datetime = _ts(nullable=False, index=True)


# ---- what `/mam status` and App Home read ------------------------------------------------------------


def last_sweep(store: Store) -> SweepRun | None:
    """The newest finished sweep (successful or not)."""
    query = (select(SweepRun).where(col(SweepRun.finished_at).is_not(None))
             .order_by(col(SweepRun.id).desc()).limit(1))
    with store.session() as session:
        return session.exec(query).first()


def active_blocks(store: Store, user: str | None = None) -> list[Episode]:
    """Open episodes, worst first; `user` matches an Entra id, or part of a mail or name."""
    query = select(Episode).where(Episode.state == OPEN)
    with store.session() as session:
        episodes = list(session.exec(query))
    if user:
        wanted = user.strip().lower()
        episodes = [e for e in episodes if any(
            wanted == u.get("id", "").lower() or wanted in u.get("mail", "").lower()
            or wanted in u.get("name", "").lower() for u in e.user_list)]
    order = {"high": 0, "medium": 1, "low": 2}
    return sorted(episodes, key=lambda e: (order.get(e.level, 3), as_utc(e.opened_at) or datetime.min.replace(
        tzinfo=UTC), e.id or 0))


def is_warning(episode: Episode) -> bool:
    """A `warn` episode: the app warns and lets the user in; it is never counted or shown as a block."""
    return episode.action == "warn"


def pending_onboardings(store: Store) -> int:
    """Users whose managed app waits for Defender on their device (as of the last sweep)."""
    query = select(func.count()).select_from(OnboardingCase).where(OnboardingCase.state == PENDING)
    with store.session() as session:
        return int(session.exec(query).one())


def unlicensed_users(store: Store, limit: int | None = None) -> list[OnboardingCase]:
    """Users whose app would wait for Defender but who lack a licence to get there (as of the last sweep)."""
    query = select(OnboardingCase).where(OnboardingCase.state == UNLICENSED).order_by(col(OnboardingCase.user_id))
    if limit is not None:
        query = query.limit(limit)
    with store.session() as session:
        return list(session.exec(query))


def unlicensed_count(store: Store) -> int:
    """How many users `unlicensed_users` would list, counted by the database."""
    query = select(func.count()).select_from(OnboardingCase).where(OnboardingCase.state == UNLICENSED)
    with store.session() as session:
        return int(session.exec(query).one())


def nudges_sent(store: Store, since: datetime) -> int:
    """Nudges and reminders sent since `since` (thank-yous not counted)."""
    query = (select(func.count()).select_from(NudgeLog)
             .where(col(NudgeLog.at) >= since, col(NudgeLog.kind).in_(("nudge", "reminder"))))
    with store.session() as session:
        return int(session.exec(query).one())
