"""Baseline: the audit log, change requests, approvals and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Databases made before migrations existed (tables created on start with `create_all`, the outbox by
its own `ensure_table`) already hold some or all of these tables: every CREATE here is
IF NOT EXISTS, so upgrading such a database adopts it instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=4000), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("graph_request_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"], if_not_exists=True)
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"], if_not_exists=True)
    op.create_index("ix_audit_log_at", "audit_log", ["at"], if_not_exists=True)

    op.create_table(
        "change_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("change", sa.String(), nullable=False),
        sa.Column("snapshot", sa.String(), nullable=False),
        sa.Column("plan", sa.String(), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("justification", sa.String(length=3000), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("reject_reason", sa.String(length=3000), nullable=False),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("error", sa.String(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("origin_channel", sa.String(length=64), nullable=False),
        sa.Column("card_destinations", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_change_requests_expires_at", "change_requests", ["expires_at"], if_not_exists=True)
    op.create_index("ix_change_requests_kind", "change_requests", ["kind"], if_not_exists=True)
    op.create_index("ix_change_requests_requester", "change_requests", ["requester"], if_not_exists=True)
    op.create_index("ix_change_requests_state", "change_requests", ["state"], if_not_exists=True)

    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["change_requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "approver", name="uq_approval_request_approver"),
        if_not_exists=True,
    )
    op.create_index("ix_approvals_request_id", "approvals", ["request_id"], if_not_exists=True)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.String(length=257), nullable=False),
        sa.Column("depends_on", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("throttled", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("claim_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_channel", sa.String(length=64), nullable=True),
        sa.Column("result_ts", sa.String(length=32), nullable=True),
        sa.Column("result_file", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        if_not_exists=True,
    )
    op.create_index("ix_outbox_lane_id", "outbox", ["lane", "id"], if_not_exists=True)
    op.create_index("ix_outbox_state_id", "outbox", ["state", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("approvals")
    op.drop_table("change_requests")
    op.drop_table("audit_log")
