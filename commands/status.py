"""`/mam status`: the watch and the bot itself, in one card."""

from __future__ import annotations

from bot.clock import as_utc
from bot.errors import UsageError
from bot.mrkdwn import Mrkdwn, cut_plain, md, md_join
from bot.roles import Access, Role
from bot.store.index import OFF
from bot.store.job_requests import RUNNING
from bot.text import count
from commands.alerts import enforcement_off_blocks
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
    if status.enforcement.state == OFF:
        return md("mam-bot status: threat-level enforcement is OFF in Intune (nobody is blocked for it), {}, {}",
                  count(status.pending_onboarding, "pending onboarding"),
                  count(status.open_requests, "open change request"))
    return md("mam-bot status: {}, {}, {}", count(status.active_blocks, "active block"),
              count(status.pending_onboarding, "pending onboarding"),
              count(status.open_requests, "open change request"))


def status_blocks(status: Status, *, can_sweep: bool = False) -> list[Block]:
    sweep = status.last_sweep
    if sweep is not None and sweep.finished_at is not None:
        took = (sweep.finished_at - sweep.started_at).total_seconds()
        source = f" from the index ({sweep.source})" if sweep.source in ("export", "paged") else ""
        sweep_text = (f"{sweep.finished_at:%Y-%m-%d %H:%M} UTC in {took:.0f} s: "
                      f"{count(sweep.devices, 'Android device')}, {count(sweep.registrations, 'registration')}"
                      f"{source}, {count(sweep.requests, 'request')}"
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
    off = status.enforcement.state == OFF
    blocks: list[Block] = [
        header("mam-bot status"),
        *(enforcement_off_blocks(status.enforcement) if off else []),
        fields_section([
            md("*Active blocks*\n{}", "none enforced (enforcement off)" if off else status.active_blocks),
            md("*Pending onboarding*\n{}", status.pending_onboarding),
            md("*Nudges sent (7 days)*\n{}", status.nudges_sent_7d),
            md("*Open change requests*\n{}", status.open_requests),
        ]),
        section(md("*Last threat sweep:* {}\n*Registrations index:* {}\n*Licences:* {}\n*Leader:* {}", sweep_text,
                   index_text(status), licences_text(status), leader)),
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


def index_text(status: Status) -> Mrkdwn:
    """Where the registrations came from (Intune's report export, or the paged fallback, and why), how old."""
    run = status.index
    if run is None or run.finished_at is None:
        return Mrkdwn("not built yet (the first threat sweep builds it)")
    how = ("Intune's report export" if run.source == "export"
           else md("the paged registrations read (fallback: {})", cut_plain(run.fallback_reason or "", 300)))
    notes = []
    if run.no_device_id:
        notes.append(f"{count(run.no_device_id, 'registration')} without an Entra device id (can't be matched "
                     "with Defender)")
    if run.unknown_users:
        notes.append(f"{count(run.unknown_users, 'mail')} no Entra user has")
    for name, what in (("unknown_apps", "app names not in any policy"), ("duplicate_policies",
                                                                       "policy names shared by two policies"),
                       ("unknown_policies", "unknown policy names")):
        listed = run.listed(name)
        if listed:
            more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
            notes.append(f"{what}: {', '.join(listed[:5])}{more}")
    extra = md(" · {}", cut_plain("; ".join(notes), 600)) if notes else Mrkdwn("")
    return md("{} registrations from {}, {:%Y-%m-%d %H:%M} UTC{}", run.kept, how, as_utc(run.finished_at), extra)


def licences_text(status: Status) -> Mrkdwn:
    run = status.licences
    if run is None or run.finished_at is None:
        return Mrkdwn("not checked yet: nobody is called unlicensed until they are (`/mam sweep licences`)")
    lacking = md("; {} waiting without one (not nudged)", count(status.unlicensed, "user")) if status.unlicensed \
        else Mrkdwn("")
    return md("{} with Intune, {} with Defender for Endpoint, checked {:%Y-%m-%d %H:%M} UTC{}",
              count(run.intune_users, "user"), count(run.defender_users, "user"), as_utc(run.finished_at), lacking)
