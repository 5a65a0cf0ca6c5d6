"""The watch: block episodes, sweep runs, onboarding cases, nudges and the Slack-user cache.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

IF NOT EXISTS: until this migration, the bot created these tables on start (`create_all`), so
databases from that time already have them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watch_episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("policy_id", sa.String(length=128), nullable=False),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("machine_id", sa.String(length=64), nullable=False),
        sa.Column("device_name", sa.String(length=256), nullable=False),
        sa.Column("device_model", sa.String(length=256), nullable=False),
        sa.Column("policy_name", sa.String(length=256), nullable=False),
        sa.Column("maximum", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("risk_score", sa.String(length=16), nullable=False),
        sa.Column("users", sa.Text(), nullable=False),
        sa.Column("apps", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("defender_last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("card_key", sa.String(length=255), nullable=True),
        sa.Column("digest_key", sa.String(length=255), nullable=True),
        sa.Column("resolved_in_digest", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_by", sa.String(length=64), nullable=False),
        sa.Column("snoozes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_watch_episodes_device_id"), "watch_episodes", ["device_id"], unique=False, if_not_exists=True
    )
    op.create_index(
        op.f("ix_watch_episodes_policy_id"), "watch_episodes", ["policy_id"], unique=False, if_not_exists=True
    )
    op.create_index(op.f("ix_watch_episodes_state"), "watch_episodes", ["state"], unique=False, if_not_exists=True)
    op.create_table(
        "watch_nudge_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_watch_nudge_log_at"), "watch_nudge_log", ["at"], unique=False, if_not_exists=True)
    op.create_index(
        op.f("ix_watch_nudge_log_user_id"), "watch_nudge_log", ["user_id"], unique=False, if_not_exists=True
    )
    op.create_table(
        "watch_onboarding",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=256), nullable=False),
        sa.Column("user_mail", sa.String(length=320), nullable=False),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("apps", sa.Text(), nullable=False),
        sa.Column("policies", sa.Text(), nullable=False),
        sa.Column("first_pending_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_pending_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("onboarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nudges_sent", sa.Integer(), nullable=False),
        sa.Column("last_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("thanked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_watch_onboarding_state_nudges",
        "watch_onboarding",
        ["state", "nudges_sent"],
        unique=False,
        if_not_exists=True,
    )
    op.create_table(
        "watch_slack_users",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("slack_user_id", sa.String(length=32), nullable=True),
        sa.Column("looked_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email"),
        if_not_exists=True,
    )
    op.create_table(
        "watch_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("registrations", sa.Integer(), nullable=False),
        sa.Column("android_registrations", sa.Integer(), nullable=False),
        sa.Column("active_blocks", sa.Integer(), nullable=False),
        sa.Column("new_episodes", sa.Integer(), nullable=False),
        sa.Column("updated_episodes", sa.Integer(), nullable=False),
        sa.Column("resolved_episodes", sa.Integer(), nullable=False),
        sa.Column("pending_onboarding", sa.Integer(), nullable=False),
        sa.Column("warned", sa.Integer(), nullable=False),
        sa.Column("unmatched", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("digests", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_watch_sweeps_started_at"), "watch_sweeps", ["started_at"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    op.drop_table("watch_sweeps")
    op.drop_table("watch_slack_users")
    op.drop_table("watch_onboarding")
    op.drop_table("watch_nudge_log")
    op.drop_table("watch_episodes")
