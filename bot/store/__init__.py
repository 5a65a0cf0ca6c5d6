"""The bot's own database: engine, tables and the append-only audit log."""

from bot.store.audit import AuditLog
from bot.store.db import Store, create_store
from bot.store.models import AuditEntry

__all__ = ["AuditEntry", "AuditLog", "Store", "create_store"]
