"""The watch at scale: enforcement state, the registrations index, Entra users by mail, licences.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "watch_enforcement",
        sa.Column("id", sa.Integer(), nullable=False),
        _str("state", 16), _str("reason", 1000), _str("fix", 1000), _str("link", 1000),
        _ts("checked_at"), _ts("changed_at"), _ts("off_since"), _ts("resumed_at"),
        sa.Column("resume_pending", sa.Boolean(), nullable=False),
        sa.Column("notice_round", sa.Integer(), nullable=False),
        sa.Column("notice_version", sa.Integer(), nullable=False),
        _str("notice_channel", 64),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "registration_index_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("started_at", nullable=False), _ts("finished_at"),
        _str("worker", 255), _str("source", 16),
        sa.Column("ok", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ("rows", "android_rows", "kept", "no_device_id",
                                                                      "unknown_users")),
        *(sa.Column(name, sa.Text(), nullable=False) for name in ("unknown_apps", "unknown_policies",
                                                                   "duplicate_policies", "missing_columns")),
        _str("fallback_reason", 1000),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("export_seconds", sa.Float(), nullable=False),
        _str("error", 2000),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_registration_index_runs_started_at"), "registration_index_runs", ["started_at"])
    op.create_table(
        "registration_index",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        _str("user_id", 64), _str("email", 320), _str("device_id", 64), _str("device_name", 256),
        _str("device_model", 256), _str("manufacturer", 256), _str("app_name", 256), _str("package", 256),
        sa.Column("policies", sa.Text(), nullable=True),
        sa.Column("enrolled", sa.Boolean(), nullable=False),
        _ts("last_sync"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_registration_index_generation"), "registration_index", ["generation"])
    op.create_index("ix_registration_index_generation_user", "registration_index", ["generation", "user_id"])
    op.create_index("ix_registration_index_generation_device", "registration_index", ["generation", "device_id"])
    op.create_table(
        "entra_user_links",
        _str("email", 320), _str("user_id", 64, nullable=True),
        sa.Column("matches", sa.Integer(), nullable=False),
        _str("name", 256), _ts("resolved_at", nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "user_licences",
        _str("user_id", 64),
        sa.Column("intune", sa.Boolean(), nullable=False),
        sa.Column("defender", sa.Boolean(), nullable=False),
        _ts("checked_at", nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "licence_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("started_at", nullable=False), _ts("finished_at"),
        sa.Column("ok", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ("intune_users", "defender_users", "requests")),
        _str("error", 2000),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_licence_runs_started_at"), "licence_runs", ["started_at"])
    with op.batch_alter_table("watch_sweeps") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default=""))
        batch.add_column(sa.Column("enforcement", sa.String(length=16), nullable=False, server_default=""))
        batch.add_column(sa.Column("suppressed", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("unlicensed", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("watch_sweeps") as batch:
        for name in ("unlicensed", "suppressed", "enforcement", "source"):
            batch.drop_column(name)
    op.drop_index(op.f("ix_licence_runs_started_at"), table_name="licence_runs")
    op.drop_table("licence_runs")
    op.drop_table("user_licences")
    op.drop_table("entra_user_links")
    for name in ("ix_registration_index_generation_device", "ix_registration_index_generation_user",
                 op.f("ix_registration_index_generation")):
        op.drop_index(name, table_name="registration_index")
    op.drop_table("registration_index")
    op.drop_index(op.f("ix_registration_index_runs_started_at"), table_name="registration_index_runs")
    op.drop_table("registration_index_runs")
    op.drop_table("watch_enforcement")
