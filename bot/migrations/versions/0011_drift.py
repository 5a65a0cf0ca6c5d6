"""Drift detection: the snapshot of policies and the connector, the changes reported, the audit events read.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "drift_state",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("baseline_at"), _ts("last_poll_at"), _ts("audit_since"), _ts("audit_read_at"),
        _str("audit_error", 1000),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "drift_baselines",
        _str("key", 300), _str("kind", 16), _str("object_id", 256), _str("name", 512),
        _text("state"),
        _str("last_modified", 64), _str("object_version", 128),
        _ts("checked_at"), _ts("updated_at"),
        _str("updated_by", 200),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        _str("target_key", 300), _str("open_key", 300, nullable=True),
        _str("kind", 16), _str("change", 16), _str("object_id", 256), _str("name", 512),
        _text("before"), _text("after"), _text("names"),
        _ts("window_start"), _ts("detected_at", nullable=False), _ts("updated_at"), _ts("changed_at"),
        _text("actors"), _text("events"),
        _str("state", 16), _str("resolution", 1000), _str("decided_by", 64), _ts("decided_at"),
        _text("revert_requests"), _str("reverted_by", 64), _ts("reverted_at"),
        _str("channel", 64), _str("card_key", 200),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index(op.f("ix_drift_reports_target_key"), "drift_reports", ["target_key"])
    op.create_index(op.f("ix_drift_reports_detected_at"), "drift_reports", ["detected_at"])
    op.create_index(op.f("ix_drift_reports_state"), "drift_reports", ["state"])
    op.create_table(
        "drift_audit_events",
        _str("id", 64),
        _ts("activity_at", nullable=False),
        _str("component", 128), _str("activity", 256), _str("operation", 32),
        _text("resource_ids"), _text("properties"),
        _str("actor_type", 64), _str("actor_app_id", 64), _str("actor_app", 256), _str("actor_upn", 320),
        sa.Column("ours", sa.Boolean(), nullable=False),
        _ts("seen_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_drift_audit_events_activity_at"), "drift_audit_events", ["activity_at"])
    op.create_index(op.f("ix_drift_audit_events_seen_at"), "drift_audit_events", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_drift_audit_events_seen_at"), table_name="drift_audit_events")
    op.drop_index(op.f("ix_drift_audit_events_activity_at"), table_name="drift_audit_events")
    op.drop_table("drift_audit_events")
    for name in ("state", "detected_at", "target_key"):
        op.drop_index(op.f(f"ix_drift_reports_{name}"), table_name="drift_reports")
    op.drop_table("drift_reports")
    op.drop_table("drift_baselines")
    op.drop_table("drift_state")
