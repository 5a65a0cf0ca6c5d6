"""The shared request budget: one row per batch of Microsoft API calls granted to a replica.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_budget",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("api", sa.String(length=32), nullable=False),
        # Epoch seconds as a double: microseconds stay exact until long after 2100.
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("write", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_request_budget_api_at", "request_budget", ["api", "at"])


def downgrade() -> None:
    op.drop_table("request_budget")
