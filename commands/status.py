"""`/mam status`: the watch and the bot itself, in one card."""

from __future__ import annotations

from bot.clock import as_utc
from bot.errors import UsageError
from bot.mrkdwn import Mrkdwn, cut_plain, md, md_join
from bot.roles import Access, Role
from bot.store.job_requests import RUNNING
from bot.text import count
from commands.blocks import Block, actions, button, context, fields_section, header, section
from commands.context import CommandRequest
from commands.ids import Action
from commands.listen import Listeners
from commands.sweep import asker
from workflows.status import JobLine, Status, gather

listeners = Listeners()


@listeners.command("status", "/mam status",
                   "Last threat sweep, active blocks, pending onboardings, nudges, jobs and the leader.", Access.READ,
                   group="Watch")
def status_command(req: CommandRequest) -> None:
    if req.args:
        raise UsageError("`/mam status` takes no arguments.")
    req.ack(response_type="ephemeral", text=md(":hourglass_flowing_sand: Gathering the bot's status…"))
    can_sweep = Role.ADMIN in req.deps.roles.roles_of(req.user_id)  # the card is ephemeral: only what they may do

    def work() -> None:
        status = gather(req.deps)
        req.answer(summary(status), status_blocks(status, can_sweep=can_sweep), replace=True)

    req.later(work, "status")


def summary(status: Status) -> Mrkdwn:
    return md("mam-bot status: {}, {}, {}", count(status.active_blocks, "active block"),
              count(status.pending_onboarding, "pending onboarding"),
              count(status.open_requests, "open change request"))


def status_blocks(status: Status, *, can_sweep: bool = False) -> list[Block]:
    sweep = status.last_sweep
    if sweep is not None and sweep.finished_at is not None:
        took = (sweep.finished_at - sweep.started_at).total_seconds()
        sweep_text = (f"{sweep.finished_at:%Y-%m-%d %H:%M} UTC in {took:.0f} s: "
                      f"{count(sweep.devices, 'Android device')}, {count(sweep.registrations, 'registration')}, "
                      f"{count(sweep.requests, 'request')}"
                      + (" :x: failed" if not sweep.ok else ""))
    else:
        sweep_text = "none yet"
    leader = (md("`{}` (lease until {:%H:%M:%S} UTC)", status.leader, status.leader_until)
              if status.leader and status.leader_until else "none: no process holds the scheduler lease")
    jobs = []
    for job in status.jobs:
        last = (f"{job.last.started_at:%Y-%m-%d %H:%M} {job.last.outcome}" if job.last else "never")
        upcoming = f"{job.next_run:%Y-%m-%d %H:%M %Z}" if job.next_run else "not scheduled"
        jobs.append(md("`{}`: last {}; next {}{}", job.name, last, upcoming, open_request_text(job)))
    blocks: list[Block] = [
        header("mam-bot status"),
        fields_section([
            md("*Active blocks*\n{}", status.active_blocks),
            md("*Pending onboarding*\n{}", status.pending_onboarding),
            md("*Nudges sent (7 days)*\n{}", status.nudges_sent_7d),
            md("*Open change requests*\n{}", status.open_requests),
        ]),
        section(md("*Last threat sweep:* {}\n*Leader:* {}", sweep_text, leader)),
        section(md("*Jobs*\n{}", md_join("\n", jobs))),
        section(md("*Outbox:* {} waiting{}", count(status.outbox_pending, "message"),
                   f"; {len(status.outbox_failed)} failed recently" if status.outbox_failed else "")),
    ]
    problems = [*status.errors, *status.outbox_failed]
    if problems:
        blocks.append(section(md("*Last errors*\n{}",
                                 md_join("\n", (md("• {}", cut_plain(p, 300)) for p in problems[:8])))))
    if can_sweep:
        blocks.append(actions(button("Sweep now", Action.SWEEP_NOW)))
    blocks.append(context(Mrkdwn("Blocks are inferred from Defender's device threat level and each policy's "
                                 "maximum.")))
    return blocks


def open_request_text(job: JobLine) -> Mrkdwn:
    """"; running now since 10:02 UTC (asked by @alex)", or queued, or nothing."""
    request = job.open_request
    if request is None:
        return Mrkdwn("")
    if request.state == RUNNING and request.started_at is not None:
        return md("; *running now*, since {:%H:%M:%S} UTC (asked by {})", as_utc(request.started_at),
                  asker(request.requested_by))
    return md("; *queued* for the leader (asked by {})", asker(request.requested_by))
