"""The outbox: everything the bot posts on its own goes through one durable, paced queue."""

from bot.outbox.core import DEFAULT_PACE, Outbox, OutboxMessage, outbox_client, utcnow
from bot.outbox.fleet import FleetPace, fleet_pace
from bot.outbox.pace import Pace
from bot.outbox.table import FAILED, PENDING, SENDING, SENT, SKIPPED, OutboxRow

__all__ = [
    "DEFAULT_PACE",
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "FleetPace",
    "Outbox",
    "OutboxMessage",
    "OutboxRow",
    "Pace",
    "fleet_pace",
    "outbox_client",
    "utcnow",
]
