"""The audit log keeps the bot's `client-request-id` of a Microsoft write beside Microsoft's `request-id`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08

Adding a column with a constant default rewrites nothing: PostgreSQL (11 and later) and SQLite both only
change the table's definition, however long the audit log has grown. Older rows read ''.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("client_request_id", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("client_request_id")
