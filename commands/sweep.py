"""`/mam sweep` and the Sweep now button of `/mam status`: the threat sweep now, the job the schedule runs.

Both ask the scheduler for a run (`Scheduler.request`): the leader picks the request up within a second
or two and runs it as the schedule would, and a sweep already running (the schedule's, or someone
else's) is joined rather than started twice. While no bot process leads, the process that got the
command runs the sweep itself and says so. The answer shows the sweep's progress and then its result;
reading the tenant costs Microsoft quota, so only admins may ask.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from bot.clock import as_utc
from bot.errors import UsageError
from bot.mrkdwn import Mrkdwn, cut_plain, md, mention
from bot.roles import Access
from bot.scheduler import NotPickedUp, Requested
from bot.store.job_requests import RUNNING, SCHEDULE
from commands.blocks import Block, context, section
from commands.context import CommandRequest, Interaction
from commands.ids import Action
from commands.listen import Listeners

JOB = "threat-sweep"
INDEX_JOB = "registrations-index"
LICENCE_JOB = "licences"
WHAT = "run the threat sweep"
# `/mam sweep [what]`: the job each word asks for, and its name in the answers
KINDS = {"": (JOB, "threat sweep"), "index": (INDEX_JOB, "registrations index refresh"),
         "licences": (LICENCE_JOB, "licence check"), "licenses": (LICENCE_JOB, "licence check")}
# A response_url takes 5 posts in 30 minutes: the answer changes when the sweep starts, at these
# elapsed times (seconds), and once more with the result.
PROGRESS_AT = (30, 120)
RESPONSE_URL_SECONDS = 29 * 60  # after this long the result goes by DM: the response_url has expired

listeners = Listeners()


@listeners.command("sweep", "/mam sweep [index|licences]",
                   "Run the threat sweep now (or refresh the registrations index from Intune's report export, or "
                   "re-read licences) and show what it found.", Access.ADMIN, group="Watch")
def sweep_command(req: CommandRequest) -> None:
    word = " ".join(str(a) for a in req.args).strip().lower()
    if word not in KINDS or len(req.args) > 1:
        raise UsageError("`/mam sweep` runs the threat sweep; `/mam sweep index` refreshes the registrations index "
                         "from Intune's report export; `/mam sweep licences` re-reads who holds the licences.")
    job, name = KINDS[word]
    req.ack(response_type="ephemeral", text=md(":hourglass_flowing_sand: Asking for a {}…", name))
    req.later(lambda: sweep_now(req, lambda text, blocks: req.answer(text, blocks, replace=True), updates=True,
                                job=job, name=name), name)


@listeners.action(Action.SWEEP_NOW, Access.ADMIN, what=WHAT)
def sweep_now_clicked(ctx: Interaction) -> None:
    ctx.ack()
    # the button sits on the status card: each step is a new message under it, the card stays
    ctx.later(lambda: sweep_now(ctx, lambda text, blocks: _new_message(ctx, text, blocks), updates=False),
              "threat sweep")


Show = Callable[[Mrkdwn, list[Block]], None]


def sweep_now(ctx: Interaction, show: Show, *, updates: bool, job: str = JOB, name: str = "threat sweep") -> None:
    """Ask for the job, show it start (and, with `updates`, its progress) and then its result."""
    deps = ctx.deps
    scheduler = deps.scheduler()
    asked = time.monotonic()
    requested = scheduler.request(job, ctx.user_id)
    shown: set[object] = set()

    def progress(seen: Requested) -> None:
        if seen.request.state != RUNNING:
            return
        elapsed = _elapsed(seen, deps.now())
        marks = {mark for mark in PROGRESS_AT if elapsed >= mark}
        if "started" in shown and (not updates or marks <= shown):
            return
        shown.update({"started", *marks})
        show(*running_message(seen, elapsed, name))

    try:
        done = scheduler.wait(requested, on_progress=progress, poll_seconds=1.0)
    except NotPickedUp as exc:
        show(md(":warning: The {} was not started: {}.", name, str(exc)), [])
        return
    text, blocks = result_message(done, name)
    if time.monotonic() - asked < RESPONSE_URL_SECONDS:
        show(text, blocks)
    else:
        ctx.dm(text)


def _new_message(ctx: Interaction, text: Mrkdwn, blocks: list[Block]) -> None:
    if ctx.has_response_url and ctx.respond is not None:
        ctx.answer(text, blocks)
    else:
        ctx.dm(text)


def _elapsed(seen: Requested, now: datetime) -> float:
    started = seen.started_at
    return max(0.0, (now - started).total_seconds()) if started else 0.0


# ---- what the person sees ----------------------------------------------------------------------------


def running_message(seen: Requested, elapsed: float, name: str = "threat sweep") -> tuple[Mrkdwn, list[Block]]:
    started = seen.started_at
    text = md(":hourglass_flowing_sand: {} running… started {} ({} so far)", name.capitalize(), clock(started),
              took_text(elapsed))
    return text, [section(text), context(how(seen))]


def result_message(done: Requested, name: str = "threat sweep") -> tuple[Mrkdwn, list[Block]]:
    run = done.run
    summary = cut_plain(run.summary if run else "", 2500)
    took = took_text((as_utc(run.finished_at) - as_utc(run.started_at)).total_seconds()
                     if run and run.finished_at else 0.0)
    if done.outcome == "ok":
        text = md(":white_check_mark: {} done in {}: {}", name.capitalize(), took, summary)
        blocks = [section(text),
                  section(Mrkdwn("`/mam blocked` lists who is blocked now; `/mam status` shows the watch."))]
    elif done.outcome == "failed":
        text = md(":x: The {} failed after {}: {}", name, took, summary)
        blocks = [section(text), section(Mrkdwn("`/mam status` shows the last errors; `/mam sweep` tries again."))]
    else:
        text = md(":warning: The {} was interrupted: {}. `/mam sweep` asks again.", name, summary)
        blocks = [section(text)]
    return text, [*blocks, context(how(done))]


def how(seen: Requested) -> Mrkdwn:
    """Who runs it, and whether this request joined one already open."""
    run_number = md(" (run #{})", seen.run.id) if seen.run is not None and seen.run.id else Mrkdwn("")
    if seen.here:
        where = md("No bot process was leading the scheduler, so the process that got your command ran it{}.",
                   run_number)
    else:
        runner = seen.run.holder if seen.run is not None else seen.request.runner
        where = md("Run by the scheduler's leader, `{}`{}.", runner or "the leader", run_number)
    if not seen.joined:
        return where
    by = seen.request.requested_by
    joined = (Mrkdwn("You joined the scheduled sweep, already running") if by == SCHEDULE
              else md("You joined the sweep {} asked for", asker(by)))
    return md("{}; {}", joined, Mrkdwn(where[0].lower() + where[1:]))


def asker(requested_by: str) -> Mrkdwn:
    """Who asked for a run, in words."""
    if requested_by == SCHEDULE:
        return Mrkdwn("the schedule")
    if requested_by.startswith("cli:"):
        return md("`mam-bot jobs run` on {}", requested_by.removeprefix("cli:"))
    return mention(requested_by)


def clock(moment: datetime | None) -> Mrkdwn:
    """A time of day each reader sees in their own time zone (UTC where Slack can't)."""
    when = as_utc(moment)
    if when is None:
        return Mrkdwn("just now")
    return md("<!date^{}^{{time_secs}}|{:%H:%M:%S} UTC>", int(when.timestamp()), when)


def took_text(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
