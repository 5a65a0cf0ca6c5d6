"""Running approved changes: one writer per target, leased executions, and what a resumed run knows.

- **One writer per target.** A change names what it writes (`Plan.key`: a policy, the connector).
  Executions of one target run one at a time, across threads and replicas, under a lease on
  `target:<key>` (`bot.store.leases`). The holder runs the target's approved changes oldest approval
  first until none is left, so two changes approved at the same moment on two replicas both take
  effect, in approval order, each reading what the one before it wrote. No database transaction
  stays open across a Graph call: the lease is a row, renewed by a heartbeat thread.
- **Fenced writes.** Before each write the change kind calls `Execution.intend(...)`: it checks that
  this tenure still holds the target's lease (a token that grows with every new holder) and records
  the write it is about to make on the change request. A holder that stalled past its lease stops
  there instead of writing over the process that took over.
- **Leased executions, taken over live.** An executing change carries `lease_owner` and `lease_until`,
  renewed with the target's lease. When a process dies its lease runs out and any live replica takes
  the change over (`ChangeService.take_over`, run every few seconds by the leader), in one guarded
  UPDATE that checks the lease. The resumed run sees the intent the dead one recorded
  (`Execution.earlier_intent`), so it tells its own earlier write from someone else's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from bot.errors import UserError
from bot.store import ChangeRequest, Store
from bot.store.leases import LeaderLease, process_id

log = logging.getLogger(__name__)

# An executing change whose process stopped renewing is taken over after this long; a live executor
# renews every third of it, so a Graph call that waits out Retry-After for minutes keeps its lease.
EXECUTION_LEASE = timedelta(seconds=45)
PROCESS = process_id()


class LeaseLost(UserError):
    """This execution no longer holds its target's lease: another process took the change over."""


class Execution:
    """One claimed change being applied: the fence before each write, and what an earlier attempt intended."""

    def __init__(self, store: Store, request: ChangeRequest, lease: LeaderLease,
                 now: Callable[[], datetime]) -> None:
        assert request.id is not None
        self.store, self.request_id, self.lease, self.now = store, request.id, lease, now
        self.earlier_intent: dict[str, Any] = json.loads(request.intent) if request.intent else {}
        self.resumed = request.resumed > 0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ---- what a change kind calls --------------------------------------------------------------

    def intend(self, what: Mapping[str, Any]) -> None:
        """Just before a write: still ours? Then record what is about to be written, and go ahead."""
        self.fence()
        with self.store.session() as session:
            recorded = session.exec(
                update(ChangeRequest).where(col(ChangeRequest.id) == self.request_id,
                                            col(ChangeRequest.lease_owner) == self.lease.holder)
                .values(intent=json.dumps(dict(what), default=str))).rowcount
            session.commit()
        if recorded != 1:
            self._lose()

    def fence(self) -> None:
        if self._lost.is_set() or not self.lease.still_held():
            self._lose()

    def _lose(self) -> None:
        self._lost.set()
        raise LeaseLost("This run lost its lease (another mam-bot process took the change over), so it stopped "
                        "before writing; that process finishes the change.")

    # ---- the heartbeat -------------------------------------------------------------------------

    def __enter__(self) -> Execution:
        self._beat = threading.Thread(target=self._renew, name=f"lease-#{self.request_id}", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()

    def _renew(self) -> None:
        every = EXECUTION_LEASE.total_seconds() / 3
        while not self._stop.wait(every):
            try:
                if not (self.lease.renew() and self._renew_request()):
                    log.warning("change #%s lost its lease; stopping before the next write", self.request_id)
                    self._lost.set()
                    return
            except Exception:  # a database blip: try again at the next beat, the lease has slack
                log.exception("renewing the lease of change #%s failed", self.request_id)

    def _renew_request(self) -> bool:
        with self.store.session() as session:
            renewed = session.exec(
                update(ChangeRequest).where(col(ChangeRequest.id) == self.request_id,
                                            col(ChangeRequest.lease_owner) == self.lease.holder)
                .values(lease_until=self.now() + EXECUTION_LEASE)).rowcount
            session.commit()
        return bool(renewed == 1)


def target_lease(store: Store, key: str, now: Callable[[], datetime]) -> LeaderLease:
    """A fresh holder for one target: two executions in one process are two holders, so they take turns too."""
    name = f"target:{key}"
    if len(name) > 64:  # a lease's name holds 64 characters; a long key (a policy's name) is hashed
        name = f"target:{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return LeaderLease(store, f"{PROCESS}:{uuid.uuid4().hex[:6]}", name=name,
                       seconds=EXECUTION_LEASE.total_seconds(), now=now)
