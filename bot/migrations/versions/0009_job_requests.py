"""Run requests: "run this job now" from the CLI, Slack or the schedule, run by the leader, joined while open.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("open_job", sa.String(length=64), nullable=True),
        sa.Column("runner", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_job"),
    )
    op.create_index(op.f("ix_job_requests_state"), "job_requests", ["state"], unique=False)
    op.create_index(op.f("ix_job_requests_finished_at"), "job_requests", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_requests_finished_at"), table_name="job_requests")
    op.drop_index(op.f("ix_job_requests_state"), table_name="job_requests")
    op.drop_table("job_requests")
