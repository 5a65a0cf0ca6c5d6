"""Execution leases: a fencing token on leases, and each change request's lease, target and intent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("token", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("change_requests") as batch:
        batch.add_column(sa.Column("target_key", sa.String(length=512), nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("intent", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("resumed", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_change_requests_target_key", ["target_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("change_requests") as batch:
        batch.drop_index("ix_change_requests_target_key")
        for column in ("resumed", "intent", "lease_until", "lease_owner", "target_key"):
            batch.drop_column(column)
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("token")
