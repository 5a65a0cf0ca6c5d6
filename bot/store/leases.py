"""Leases: a row per name that one process holds at a time, with a fencing token.

The scheduler's leader holds `scheduler`; an execution holds `target:<what it changes>` while it
writes. A lease is taken when free or expired, renewed by its holder, never held by two. Each time
it passes to a new holder its `token` grows, so a holder that stalled past its expiry (a long
garbage collection, a frozen VM) finds out before its next write (`still_held`) instead of writing
over the process that took over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import case, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from bot.clock import as_utc, utcnow
from bot.store.db import Store
from bot.store.models import Lease

LEASE_NAME = "scheduler"
LEASE_SECONDS = 30.0  # a dead leader is replaced within this long


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaderLease:
    """One named lease, seen from one holder."""

    def __init__(self, store: Store, holder: str, *, name: str = LEASE_NAME, seconds: float = LEASE_SECONDS,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.store, self.holder, self.name, self.seconds, self.now = store, holder, name, seconds, now
        self.token = 0  # the fencing token of this holder's tenure, once acquired

    def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = self.now()
        until = now + timedelta(seconds=self.seconds)
        with self.store.session() as session:
            taken = session.exec(  # guarded: only if ours already, or nobody's any more
                update(Lease).where(col(Lease.name) == self.name)
                .where((col(Lease.holder) == self.holder) | (col(Lease.expires_at) < now))
                .values(holder=self.holder, expires_at=until,
                        token=case((col(Lease.holder) == self.holder, Lease.token), else_=Lease.token + 1))
            ).rowcount
            session.commit()
            if taken == 1:
                row = session.get(Lease, self.name, populate_existing=True)
                self.token = row.token if row is not None else 0
                return True
        try:
            with self.store.session() as session:
                session.add(Lease(name=self.name, holder=self.holder, acquired_at=now, expires_at=until, token=1))
                session.commit()
            self.token = 1
            return True
        except IntegrityError:
            return False  # someone else holds it

    def renew(self) -> bool:
        """Extend this tenure only: False once anyone else has held the lease since (it is never taken back
        here, so a holder that lost it stays fenced off)."""
        with self.store.session() as session:
            renewed = session.exec(
                update(Lease).where(col(Lease.name) == self.name, col(Lease.holder) == self.holder,
                                    col(Lease.token) == self.token)
                .values(expires_at=self.now() + timedelta(seconds=self.seconds))
            ).rowcount
            session.commit()
        return bool(renewed == 1)

    def release(self) -> None:
        with self.store.session() as session:
            session.exec(update(Lease).where(col(Lease.name) == self.name, col(Lease.holder) == self.holder)
                         .values(expires_at=self.now() - timedelta(seconds=1)))
            session.commit()

    def current(self) -> Lease | None:
        with self.store.session() as session:
            return session.get(Lease, self.name)

    def live(self) -> Lease | None:
        """The lease if someone holds it now (an expired row means nobody leads)."""
        lease = self.current()
        return lease if lease is not None and as_utc(lease.expires_at) > self.now() else None

    def held_by_me(self) -> bool:
        lease = self.live()
        return lease is not None and lease.holder == self.holder

    def still_held(self) -> bool:
        """True while this tenure holds the lease: ours, not expired, and nobody held it in between."""
        lease = self.live()
        return lease is not None and lease.holder == self.holder and lease.token == self.token
