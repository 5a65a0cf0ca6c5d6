"""The outbox: everything the bot posts on its own goes through one durable, paced queue."""

from bot.outbox.core import DEFAULT_PACE, Outbox, OutboxMessage, outbox_client, utcnow
from bot.outbox.pace import Pace
from bot.outbox.table import FAILED, PENDING, SENDING, SENT, SKIPPED, OutboxRow

__all__ = [
    "DEFAULT_PACE",
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "Outbox",
    "OutboxMessage",
    "OutboxRow",
    "Pace",
    "outbox_client",
    "utcnow",
]
