"""The outbox: everything the bot posts on its own goes through one durable, paced queue.

`queue` is what callers use (post, update, upload, get); `worker` delivers it (claim, send, retry,
pace, give up), with `claims` (its writes to the table), `send` (the Slack calls), `errors` (what a
failed call means), `pace` and `fleet` (Slack's limits, in one process and across replicas);
`outbox.Outbox` is the two together; `table` holds the table and `OutboxMessage`, a row's snapshot.
"""

from bot.outbox.fleet import FleetPace, fleet_pace
from bot.outbox.outbox import Outbox
from bot.outbox.pace import Pace
from bot.outbox.send import outbox_client
from bot.outbox.table import FAILED, PENDING, SENDING, SENT, SKIPPED, OutboxMessage, OutboxRow
from bot.outbox.worker import OutboxSettings

__all__ = [
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "FleetPace",
    "Outbox",
    "OutboxMessage",
    "OutboxRow",
    "OutboxSettings",
    "Pace",
    "fleet_pace",
    "outbox_client",
]
