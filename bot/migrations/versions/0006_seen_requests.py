"""Replays and double submits: the keys of requests already handled, kept ten minutes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        # "<kind>:<sha-256 hex>": a signature, a slash command's trigger_id, a click, a form, an event_id
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_seen_requests_seen_at"), "seen_requests", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_seen_requests_seen_at"), table_name="seen_requests")
    op.drop_table("seen_requests")
