"""Tables. Migrations arrive with the fleet work; until then tables are created on start."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class AuditEntry(SQLModel, table=True):
    """One thing that happened: a command, a refusal, a decision, a Graph write. Never updated."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(index=True, max_length=64)
    action: str = Field(index=True, max_length=128)
    target: str = Field(default="", max_length=512)
    outcome: str = Field(max_length=32)
    detail: str = Field(default="", max_length=4000)
    correlation_id: str = Field(default="", max_length=64)
    graph_request_id: str = Field(default="", max_length=64)
