"""The bot's own database: engine, tables and the append-only audit log."""

from bot.store.audit import AuditLog
from bot.store.db import Store, create_store
from bot.store.drafts import Drafts
from bot.store.models import Approval, AuditEntry, ChangeRequest

__all__ = ["Approval", "AuditEntry", "AuditLog", "ChangeRequest", "Drafts", "Store", "create_store"]
