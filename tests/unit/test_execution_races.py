"""Races between a run that stalled past its lease and the process that took its change over (found by review):
the stalled run neither overwrites the outcome nor claims the next change of the target."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from bot.errors import UserError
from tests.databases import database_url  # noqa: F401  (fixture)
from tests.unit.test_execution import APPROVER, Hooked, World
from tests.unit.test_execution import world as world
from workflows.changes import State
from workflows.execution import EXECUTION_LEASE
from workflows.policy_changes import PolicyAssignments


def test_a_late_error_of_a_stalled_run_does_not_overwrite_the_run_that_took_over(world: World) -> None:
    a_kind, s_kind = Hooked(PolicyAssignments(world.graph)), Hooked(PolicyAssignments(world.graph))
    a, s = world.service(a_kind), world.service(s_kind)
    rid = world.include(a, "Finance")
    a_failed = threading.Event()

    def s_before():  # S (the takeover) is running; it re-reads only after A's late error lands
        assert a_failed.wait(10)

    s_kind.before = s_before

    def a_after():  # A wrote, then froze past its lease; S takes over; A's next Graph call errors
        world.clock.offset += EXECUTION_LEASE + timedelta(seconds=1)
        threading.Thread(target=s.take_over, daemon=True).start()
        deadline = time.monotonic() + 10
        while a.require(rid).state != State.EXECUTING or a.require(rid).resumed == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        raise UserError("Graph: the request timed out")

    a_kind.after = a_after
    real_fail = a._fail

    def fail_then_signal(*args, **kw):
        try:
            return real_fail(*args, **kw)
        finally:
            a_failed.set()

    a._fail = fail_then_signal
    a.approve(rid, APPROVER)
    time.sleep(1.5)
    r = a.require(rid)
    audit = [e.outcome for e in a.audit.recent(50) if e.action.startswith(f"execute #{rid}")]
    assert r.state == State.SUCCEEDED
    audit = [e.outcome for e in a.audit.recent(50) if e.action.startswith(f"execute #{rid}")]
    assert world.assign_posts() == 1 and audit.count("failed") == 0


def test_a_run_that_lost_its_lease_leaves_the_next_change_to_the_new_holder(world: World) -> None:
    a_kind, s_kind = Hooked(PolicyAssignments(world.graph)), Hooked(PolicyAssignments(world.graph))
    a, s, c = world.service(a_kind), world.service(s_kind), world.service()
    first, second = world.include(a, "Finance"), world.include(c, "Sales EMEA")
    s_wrote = threading.Event()
    takeover = threading.Thread(target=s.take_over, daemon=True)

    def s_after():  # S has written #1 under the target's lease; #2 is approved meanwhile (C's execute finds T held)
        c.approve(second, APPROVER)
        assert c.require(second).state == State.APPROVED
        s_wrote.set()
        deadline = time.monotonic() + 5
        while c.require(second).state == State.APPROVED and time.monotonic() < deadline:
            time.sleep(0.02)

    s_kind.after = s_after

    def a_stalls():  # A freezes past its lease; the leader's takeover job (S) takes #1 over
        world.clock.offset += EXECUTION_LEASE + timedelta(seconds=1)
        takeover.start()
        assert s_wrote.wait(10)

    a_kind.before = a_stalls
    a.approve(first, APPROVER)
    r2 = a.require(second)
    assert r2.state != State.EXECUTING, "#2 stranded in executing with nobody running it"
    deadline = time.monotonic() + 20  # the new holder runs #1 and then #2 of the target
    while {a.require(i).state for i in (first, second)} != {State.SUCCEEDED} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.require(first).state == a.require(second).state == State.SUCCEEDED
    assert a.require(second).resumed == 0  # run by the holder, not rescued from a stranded claim
    takeover.join(10)  # its last look for approved changes done before the test's database goes
    assert not takeover.is_alive()
