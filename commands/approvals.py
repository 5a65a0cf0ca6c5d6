"""Approval cards and their buttons, the justification and rejection modals, and the request commands.

Cards and DMs go out through the outbox (idempotent keys), so a card is posted once and every
later edit of it is one `chat.update` in order, whichever process made the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.clock import as_utc
from bot.errors import UsageError, UserError
from bot.mrkdwn import Mrkdwn, cut_plain, md, md_join, mention
from bot.roles import Access
from bot.slack_limits import pack_lines
from bot.text import count, whole_number
from commands.blocks import Block, actions, button, context, divider, fields_section, header, section
from commands.context import CommandRequest, Interaction
from commands.ids import Action, View
from commands.listen import Listeners
from commands.payloads import ChangeDraft, RequestRef
from workflows.changes import ChangeService, Result, State

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.store import Approval, ChangeRequest

STATE_LABELS = {
    State.PENDING: Mrkdwn(":hourglass_flowing_sand: Waiting for approval"),
    State.APPROVED: Mrkdwn(":white_check_mark: Approved, about to run"),
    State.EXECUTING: Mrkdwn(":gear: Approved, running now"),
    State.SUCCEEDED: Mrkdwn(":white_check_mark: Done"),
    State.FAILED: Mrkdwn(":x: Failed"),
    State.REJECTED: Mrkdwn(":no_entry: Rejected"),
    State.EXPIRED: Mrkdwn(":hourglass: Expired without a decision"),
    State.CANCELLED: Mrkdwn(":heavy_multiplication_x: Cancelled by the requester"),
}
FINAL_FOR_REQUESTER = {State.SUCCEEDED, State.FAILED, State.REJECTED, State.EXPIRED}
MAX_NOTES, MAX_NOTE = 5, 500  # a section holds 3,000 characters
MAX_CALLS_TEXT = 2600  # a section holds 3000 characters; leave room for the fences and the note
REQUESTS_SHOWN = 20  # newest first; the list says how many more are open
AUDIT_SECTIONS = 5  # `/mam audit 50` of long entries: five sections of 3,000 characters, then "…and N more"
ALL_REQUESTS = Mrkdwn("`mam-bot audit export` records every request")
WHOLE_LOG = Mrkdwn("`mam-bot audit export --format csv|jsonl` has the whole log")


# ---- rendering (pure) ---------------------------------------------------------------------------


def request_card(request: ChangeRequest, approvals: list[Approval]) -> list[Block]:
    state = State(request.state)
    snapshot = json.loads(request.snapshot or "{}")
    blocks: list[Block] = [
        header(f"Change request #{request.id}"),
        section(md("*{}*\n{}", request.title, STATE_LABELS[state])),
        fields_section([
            md("*Requested by*\n{}", mention(request.requester)),
            md("*Target*\n{}", request.target),
            md("*Before*\n{}", snapshot.get("_before", "?")),
            md("*After*\n{}", snapshot.get("_after", "?")),
        ]),
        section(md("*Why*\n{}", quoted(request.justification))),
        *notes_section(snapshot.get("_notes")),
        section(md("*Graph calls it will make*\n{}", calls_text(request.plan))),
    ]
    blocks += decision_blocks(request, approvals)
    blocks.append(context(md(
        "{} of {} · requested {:%Y-%m-%d %H:%M} UTC · expires {:%Y-%m-%d %H:%M} UTC · the requester cannot approve",
        len(approvals), count(request.quorum, "approval"), as_utc(request.created_at), as_utc(request.expires_at))))
    ref = RequestRef(id=request.id or 0).encode()
    if state is State.PENDING:
        blocks.append(actions(
            button("Approve", Action.APPROVE, ref, style="primary"),
            button("Reject", Action.REJECT, ref, style="danger"),
        ))
    elif state is State.FAILED:
        blocks.append(actions(button("Retry", Action.RETRY, ref)))
    return blocks


def notes_section(notes: object) -> list[Block]:
    """What the change kind said the approver should know (`Plan.notes`), as it was when it was filed."""
    if not isinstance(notes, list) or not notes:
        return []
    lines = md_join("\n", (md(":information_source: {}", str(note)[:MAX_NOTE]) for note in notes[:MAX_NOTES]))
    return [section(md("*Before you approve*\n{}", lines))]


def decision_blocks(request: ChangeRequest, approvals: list[Approval]) -> list[Block]:
    lines = [md(":ballot_box_with_check: Approved by {} at {:%H:%M} UTC", mention(a.approver), as_utc(a.at))
             for a in approvals]
    if request.state == State.REJECTED:
        lines.append(md(":no_entry: Rejected by {}: {}", mention(request.decided_by or ""), request.reject_reason))
    if request.state == State.CANCELLED:
        lines.append(md("Cancelled by {}.", mention(request.decided_by or "")))
    lines += run_lines(request)
    if request.result:
        lines.append(md("*Result:* {}", request.result))
    if request.error:
        lines.append(md("*Error:* {}", request.error))
        lines.append(md("Retry runs the same approved change again (no new approval) while the approval is valid."))
    return [divider(), section(md_join("\n", lines))] if lines else []


def run_lines(request: ChangeRequest, now: datetime | None = None) -> list[Mrkdwn]:
    """An execution taken over from a process that stopped, or stuck because no live process has taken it yet."""
    if request.state != State.EXECUTING:
        return []
    until = as_utc(request.lease_until)
    if until is not None and until < (now or datetime.now(UTC)):
        return [md(":warning: The mam-bot process running it stopped answering at {:%H:%M} UTC. A running mam-bot "
                   "takes it over within about a minute; if none is running, start one (`mam-bot jobs run "
                   "change-takeover` does it once).", until)]
    if request.resumed:
        return [md(":arrows_counterclockwise: Taken over by another mam-bot process after the first one stopped "
                   "mid-run; it re-reads the tenant and writes only what is still missing.")]
    return []


def quoted(text: str) -> Mrkdwn:
    """A block quote of outside text: every line quoted, so a line break cannot end the quote."""
    return md_join("\n", (md(">{}", line) for line in (text or "").splitlines() or [""]))


def calls_text(plan_json: str) -> Mrkdwn:
    lines: list[str] = []
    for call in json.loads(plan_json or "[]"):
        lines.append(f"{call['method']} {call['path']}")
        if call.get("body") is not None:
            lines.append(json.dumps(call["body"], separators=(", ", ": ")))
    text = "\n".join(lines)
    if len(text) > MAX_CALLS_TEXT:
        text = text[:MAX_CALLS_TEXT] + "\n… (truncated; `mam-bot audit export` has the whole plan)"
    # inside a code block Slack still reads &, < and >, so they are escaped here too
    return md("```{}```", text)


def summary_line(request: ChangeRequest) -> Mrkdwn:
    line = md("#{} {}: {} (by {}, {:%Y-%m-%d %H:%M} UTC)", request.id, request.title,
              STATE_LABELS[State(request.state)], mention(request.requester), as_utc(request.created_at))
    return md_join(" ", [line, *run_lines(request)])


def justification_modal(kind: str, change: dict[str, Any], title: str, channel: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": View.JUSTIFY,
        "private_metadata": ChangeDraft(kind=kind, change=change, channel=channel).encode(),
        "title": {"type": "plain_text", "text": "Request a change"},
        "submit": {"type": "plain_text", "text": "Send for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(md("*{}*\nAn approver (not you) has to approve it before it runs.", title)),
            {"type": "input", "block_id": "justification", "label": {"type": "plain_text", "text": "Why?"},
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": True,
                         "min_length": 5, "max_length": 3000,
                         "placeholder": {"type": "plain_text", "text": "e.g. roll out MAM threat signals (CHG0042)"}}},
        ],
    }


def reject_modal(request_id: int, title: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": View.REJECT,
        "private_metadata": RequestRef(id=request_id).encode(),
        "title": {"type": "plain_text", "text": f"Reject #{request_id}"[:24]},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "blocks": [
            section(md("*{}*", title)),
            {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000}},
        ],
    }


# ---- Slack listeners ----------------------------------------------------------------------------

listeners = Listeners()


def _card_button(ctx: Interaction, decide: Callable[[int, str], Result], what: str) -> None:
    """Approve and Retry: ack, decide after the ack, answer a refusal to the clicker alone."""
    ctx.ack()
    request_id = ctx.data(RequestRef).id

    def work() -> None:
        result = decide(request_id, ctx.user_id)
        if not result.ok:
            ctx.tell(md(":x: {}", result.message))

    ctx.later(work, what)


@listeners.action(Action.APPROVE, Access.APPROVER, what="approve change requests")
def approve_clicked(ctx: Interaction) -> None:
    _card_button(ctx, ctx.deps.changes.approve, "approve")


# the workflow admits the requester or an approver
@listeners.action(Action.RETRY, Access.READ, what="retry a failed change")
def retry_clicked(ctx: Interaction) -> None:
    _card_button(ctx, ctx.deps.changes.retry, "retry")


@listeners.action(Action.REJECT, Access.APPROVER, what="reject change requests")
def reject_clicked(ctx: Interaction) -> None:
    ctx.ack()
    request_id = ctx.data(RequestRef).id

    def work() -> None:
        request = ctx.deps.changes.require(request_id)
        if request.state != State.PENDING:
            raise UserError(f"#{request_id} is already {request.state}.")
        ctx.client.views_open(trigger_id=ctx.trigger_id, view=reject_modal(request_id, request.title))

    ctx.later(work, "open the reject modal")


@listeners.view(View.REJECT, Access.APPROVER, what="reject change requests")
def reject_submitted(ctx: Interaction) -> None:
    reason = ctx.required_text("reason", 3, "Say why, so the requester can act on it.")
    if reason is None:
        return
    request_id = ctx.data(RequestRef).id
    ctx.ack()

    def work() -> None:
        result = ctx.deps.changes.reject(request_id, ctx.user_id, reason)
        if not result.ok:
            ctx.dm(md(":x: {}", result.message))

    ctx.later(work, "reject")


@listeners.view(View.JUSTIFY, Access.ADMIN, what="request changes")
def justified(ctx: Interaction) -> None:
    justification = ctx.required_text("justification", 5, "Say why this change is needed (5+ characters).")
    if justification is None:
        return
    draft = ctx.data(ChangeDraft)
    ctx.ack()
    ctx.later(lambda: file_request(ctx.deps, draft.kind, draft.change, ctx.user_id, justification, draft.channel,
                                   tell=ctx.dm), "file a change request")


def file_request(deps: Deps, kind: str, change: dict[str, Any], user: str, justification: str, channel: str,
                 *, tell: Callable[[Mrkdwn], Any] | None = None) -> ChangeRequest:
    request = deps.changes.file(kind, change, requester=user, justification=justification, origin_channel=channel)
    if tell is not None and not json.loads(request.card_destinations):
        tell(md(":warning: #{} has no approver to go to: set MAM_APPROVERS or MAM_APPROVAL_CHANNEL.", request.id))
    return request


def ask_or_file(req: CommandRequest, kind: str, change: dict[str, Any], title: str, justification: str) -> None:
    """With a justification on the command line, file at once; without one, ask for it in a modal."""
    if not justification:
        req.ack()
        modal = justification_modal(kind, change, title, req.channel_id)
        req.open_form(modal, "open the justification modal")
        return
    req.ack(response_type="ephemeral", text=md(":inbox_tray: Filing a change request: {}…", title))

    def work() -> None:
        request = file_request(req.deps, kind, change, req.user_id, justification, req.channel_id)
        req.answer(md(":inbox_tray: Filed change request #{}: {}. An approver (not you) has to approve it; "
                      "you'll get a DM with the outcome. `/mam cancel {}` withdraws it.",
                      request.id, request.title, request.id), replace=True)

    req.later(work, "file a change request")

@listeners.command("requests", "/mam requests", "Open change requests, and yours.", Access.READ, group="Approvals")
def list_requests(req: CommandRequest) -> None:
    if req.args:
        raise UsageError("`/mam requests` takes no arguments.")
    service: ChangeService = req.deps.changes
    open_requests = service.open_requests(REQUESTS_SHOWN)
    mine = [r for r in service.requests_by(req.user_id) if r.id not in {o.id for o in open_requests}]
    blocks = [listed_section(md("*Open change requests*"), [summary_line(r) for r in open_requests],
                             service.count_open(), ALL_REQUESTS),
              listed_section(md("*Your recent requests*"), [summary_line(r) for r in mine], len(mine), ALL_REQUESTS)]
    req.ack(response_type="ephemeral", text=md("Change requests"), blocks=blocks)


def listed_section(title: Mrkdwn, lines: list[Mrkdwn], total: int, how_to_see: Mrkdwn) -> Block:
    """`title` and as many `lines` as one section holds; when some of the `total` are left out, a last
    line says how many and `how_to_see` them."""
    if not lines:
        return section(md("{}\nNone.", title))

    def more(n: int) -> Mrkdwn:
        return md("…and {:,} more: {}.", n, how_to_see)

    texts, left_out = pack_lines([title, *lines], reserve=len(more(total)) + 1)
    text, missing = Mrkdwn(texts[0]), left_out + max(total - len(lines), 0)
    return section(md("{}\n{}", text, more(missing)) if missing else text)


@listeners.command("cancel", "/mam cancel <request id>", "Cancel a pending request you made.", Access.ADMIN,
                   group="Approvals")
def cancel_request(req: CommandRequest) -> None:
    request_id = whole_number(req.args[0]) if len(req.args) == 1 else None
    if request_id is None:
        raise UsageError("Name the request by its number, e.g. `/mam cancel 12`.")
    # One read by primary key before the ack: an unknown number is answered at once, not after a
    # "Cancelling…" that stays on screen.
    if req.deps.changes.get(request_id) is None:
        raise UsageError(f"There is no request #{request_id}; `/mam requests` lists the open ones.")
    req.ack(response_type="ephemeral", text=md("Cancelling #{}…", request_id))

    def work() -> None:
        result = req.deps.changes.cancel(request_id, req.user_id)
        req.answer(md("{} {}", Mrkdwn(":heavy_multiplication_x:" if result.ok else ":x:"), result.message),
                   replace=True)

    req.later(work, "cancel")


@listeners.command("audit", "/mam audit [count]", "The latest audit log entries (default 10).", Access.READ,
                   group="Audit")
def show_audit(req: CommandRequest) -> None:
    asked = whole_number(req.args[0]) if len(req.args) == 1 else 10 if not req.args else None
    if asked is None:
        raise UsageError("Give a number of entries, e.g. `/mam audit 20`.")
    count = min(asked, 50)
    entries = req.deps.audit.recent(count)
    lines = [md("`{:%m-%d %H:%M}` {} {} → *{}*{}", as_utc(e.at), _actor(e.actor), e.action, e.outcome,
                md(" ({})", cut_plain(e.detail, 120)) if e.detail else "") for e in entries]
    texts, left_out = pack_lines(lines, max_texts=AUDIT_SECTIONS)
    shown = len(entries) - left_out
    blocks = [section(md("*Last {} audit entries* (newest first)", shown))] if entries else []
    blocks += [section(Mrkdwn(t)) for t in texts] or [section(md("The audit log is empty."))]
    if left_out:
        blocks.append(context(md("…and {:,} older entries not shown: {}.", left_out, WHOLE_LOG)))
    else:
        blocks.append(context(md("{}.", WHOLE_LOG)))
    req.ack(response_type="ephemeral", text=md("Last {} audit entries", shown), blocks=blocks)


def _actor(actor: str) -> Mrkdwn:
    return mention(actor)
