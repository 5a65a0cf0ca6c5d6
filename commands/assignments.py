"""`/mam assign` and `/mam unassign`: change a policy's groups, behind an approval.

With arguments (`/mam assign "<policy>" "<group>" [--exclude] [--why "…"]`) names are resolved
(exact name or id; a pick list when ambiguous; the closest names when there is none) and the
admin sees the group's member count and the policy's current groups before asking. Without
arguments a modal with a policy picker and a group picker does the same.

Assigning (including) a group also previews how many of its members lack an Intune or a Defender licence
and so can't be protected (`workflows.licences`): the summary is answered first, and that line replaces
its placeholder once the members are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.errors import UsageError
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import AndroidPolicy, Group
from bot.mrkdwn import Mrkdwn, md, md_join
from bot.roles import Access
from bot.store.drafts import Drafts
from bot.text import count
from commands.approvals import file_request, justification_modal
from commands.blocks import Block, actions, button, context, section
from commands.context import CommandRequest, Interaction
from commands.ids import Action, View
from commands.listen import Listeners
from commands.payloads import DraftRef
from workflows.licences import GROUP_MEMBER_CAP, MEMBERS_UNREAD, GroupLicences, group_licences, last_licence_run
from workflows.policy_changes import ASSIGN
from workflows.resolve import Ambiguous, Found, NotFound, resolve, resolve_group

if TYPE_CHECKING:
    from bot.deps import Deps

Mode = Literal["include", "exclude", "remove"]
ASSIGN_USAGE = '/mam assign "<policy>" "<group>" [--exclude] [--why "<reason>"]'
UNASSIGN_USAGE = '/mam unassign "<policy>" "<group>" [--why "<reason>"]'
PICK_MAX = 10
WHY_MAX = 3000  # what a change request keeps, and what the justification modal takes
DRAFT_KIND = "assign"
LICENCES_PENDING = "licences_pending"  # the block the licence line replaces once the members are read
LICENCES = "licences"
MEMBER_CAP = GROUP_MEMBER_CAP  # members the licence line reads at most; beyond, it says "at least"


@dataclass(frozen=True)
class Ask:
    """What the admin asked for; policy and group are names or ids until resolved."""

    policy: str
    group: str
    mode: Mode
    why: str = ""

    def to_value(self, drafts: Drafts, user: str) -> str:
        """A button's value: the id of a draft holding this ask. Names and the reason have no bound a
        button's 2,000 characters could hold, so they stay server-side; only `user` may use the button."""
        draft = drafts.save(DRAFT_KIND, {"p": self.policy, "g": self.group, "m": self.mode, "w": self.why}, user)
        return DraftRef(draft=draft).encode()

    @classmethod
    def clicked(cls, ctx: Interaction) -> Ask:
        """The ask behind a clicked button; UserError (in words) when it expired or the clicker didn't make it."""
        data = ctx.deps.drafts.load(ctx.data(DraftRef).draft, kind=DRAFT_KIND, user=ctx.user_id)
        return cls(data["p"], data["g"], data["m"], data.get("w", ""))


def parse_ask(args: list[str], *, unassign: bool) -> Ask:
    words, mode, why = [], "remove" if unassign else "include", ""
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--exclude" and not unassign:
            mode = "exclude"
        elif word == "--why":
            if i + 1 >= len(args):
                raise UsageError('`--why` needs the reason after it, in quotes: `--why "pilot rollout"`.')
            why, i = args[i + 1], i + 1
        elif word.startswith("--"):
            raise UsageError(f"I don't know the option `{word}`.")
        else:
            words.append(word)
        i += 1
    if len(words) != 2:
        raise UsageError("Name the policy and the group, each in quotes if it has spaces.")
    if len(why) > WHY_MAX:
        raise UsageError(f"The reason can be at most {WHY_MAX:,} characters; this one has {len(why):,}.")
    return Ask(words[0], words[1], mode, why)  # type: ignore[arg-type]


def change_for(policy_id: str, group_id: str, mode: Mode) -> dict[str, Any]:
    return {"policy_id": policy_id, mode: [group_id]}


VERB_TEXT = {"include": "assign {policy} to {group}", "exclude": "exclude {group} from {policy}",
             "remove": "remove {group} from {policy}"}


# ---- resolving, then asking ---------------------------------------------------------------------


def resolve_ask(deps: Deps, ask: Ask, user: str) -> tuple[list[Block], Mrkdwn, Ask | None]:
    """The answer to an assign/unassign request: a summary to confirm (with the ask, resolved to ids),
    or a pick list or the closest names (and None). Buttons made here are for `user` only."""
    graph = deps.microsoft.graph
    policy = resolve(ask.policy, graph.iter_android_policies())
    group = resolve_group(ask.group, graph)
    problems: list[Block] = []
    for what, result, kind in (("policy", policy, "Android app protection policy"), ("group", group, "group")):
        if isinstance(result, NotFound):
            closest = md_join(", ", (md("*{}*", n) for n in result.closest))
            problems.append(section(md(":grey_question: No {} called *{}*.{}", kind, result.query,
                                       md(" Closest: {}.", closest) if closest else "")))
        elif isinstance(result, Ambiguous):
            problems += pick_blocks(deps, ask, what, result.items, user)
    if problems:
        return problems, Mrkdwn("Which one?"), None
    assert isinstance(policy, Found) and isinstance(group, Found)
    resolved = Ask(policy.item.id, group.item.id, ask.mode, ask.why)
    return confirm_blocks(deps, ask, policy.item, group.item), Mrkdwn("Ready to ask for approval"), resolved


def pick_blocks(deps: Deps, ask: Ask, what: str, items: Sequence[Any], user: str) -> list[Block]:
    shown = items[:PICK_MAX]
    buttons = []
    for item in shown:
        choice = Ask(item.id if what == "policy" else ask.policy, item.id if what == "group" else ask.group,
                     ask.mode, ask.why)
        buttons.append(button((item.displayName or item.id)[:70], f"{Action.ASSIGN_PICK}:{what}:{item.id}"[:255],
                              choice.to_value(deps.drafts, user)))
    more = (f" (showing {len(shown)} of {len(items)}; type more of the name to narrow)"
            if len(items) > len(shown) else "")
    query = ask.policy if what == "policy" else ask.group
    return [section(md("Several {}s match *{}*{}. Which one?", what, query, more)), actions(*buttons)]


def confirm_blocks(deps: Deps, ask: Ask, policy: AndroidPolicy, group: Group) -> list[Block]:
    graph = deps.microsoft.graph
    try:
        members = count(graph.group_member_count(group.id), "direct member")
    except MicrosoftError:
        members = "member count unavailable"
    current = []
    for assignment in graph.get_assignments(policy.id):
        target = assignment.target
        if target.groupId:
            current.append(("exclude " if target.is_exclusion else "include ") + _group_name(deps, target.groupId))
    verb = md(VERB_TEXT[ask.mode], policy=md("*{}*", policy.displayName),
              group=md("*{}*", group.displayName or group.id))
    blocks = [
        section(md("You are about to ask to {}.", verb)),
        section(md("*Group:* {} ({}{})\n*The policy's groups now:* {}", group.displayName or group.id, members,
                   ", dynamic" if group.is_dynamic else "", ", ".join(current) or "none")),
    ]
    if ask.mode == "include":
        blocks.append(licence_placeholder(deps))
    blocks.append(context(Mrkdwn("`assign` replaces all of a policy's assignments: the bot writes back every other "
                                 "group as it is.")))
    return blocks


def licence_placeholder(deps: Deps) -> Block:
    """Until a licence refresh has succeeded, the final line (licences not checked yet); else a placeholder
    that `licence_block` replaces once the group's members are read."""
    if last_licence_run(deps.store) is None:
        return section(md(":grey_question: {}", GroupLicences(checked=False).text()), block_id=LICENCES)
    return section(Mrkdwn(":hourglass_flowing_sand: Checking the licences of the group's members…"),
                   block_id=LICENCES_PENDING)


def licence_block(deps: Deps, group_id: str) -> Block:
    """How many of the group's members lack a licence and can't be protected (slow: reads the members)."""
    try:
        found = group_licences(deps.store, deps.microsoft.graph, group_id, cap=MEMBER_CAP)
    except MicrosoftError as exc:
        return section(md(":grey_question: {} {}", MEMBERS_UNREAD, exc.message), block_id=LICENCES)
    icon = ":warning:" if found.lacking else ":grey_question:" if not found.checked else ":white_check_mark:"
    return section(md("{} {}", Mrkdwn(icon), found.text()), block_id=LICENCES)


def request_button(deps: Deps, resolved: Ask, user: str) -> Block:
    """"Ask for approval…": its value is a draft of `resolved` that only `user` can use."""
    return actions(button("Ask for approval…", Action.ASSIGN_REQUEST, resolved.to_value(deps.drafts, user),
                          style="primary"))


def _group_name(deps: Deps, group_id: str) -> str:
    try:
        return deps.microsoft.graph.get_group(group_id).displayName or group_id
    except MicrosoftError:
        return f"{group_id} (not found)"


def assign_modal() -> dict[str, Any]:
    def picker(block_id: str, label: str, action_id: str, placeholder: str) -> dict[str, Any]:
        return {"type": "input", "block_id": block_id, "label": {"type": "plain_text", "text": label},
                "element": {"type": "external_select", "action_id": action_id, "min_query_length": 0,
                            "placeholder": {"type": "plain_text", "text": placeholder}}}

    modes = [("include", "Assign (include)"), ("exclude", "Exclude"), ("remove", "Remove from the policy")]
    radio = [{"text": {"type": "plain_text", "text": label}, "value": value} for value, label in modes]
    return {
        "type": "modal", "callback_id": View.ASSIGN,
        "title": {"type": "plain_text", "text": "Policy groups"},
        "submit": {"type": "plain_text", "text": "Send for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            picker("policy", "Policy", Action.PICK_POLICY, "Type part of the policy's name"),
            picker("group", "Group", Action.PICK_GROUP, "Type part of the group's name"),
            {"type": "input", "block_id": "mode", "label": {"type": "plain_text", "text": "Change"},
             "element": {"type": "radio_buttons", "action_id": "value", "options": radio, "initial_option": radio[0]}},
            {"type": "input", "block_id": "justification", "label": {"type": "plain_text", "text": "Why?"},
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000}},
        ],
    }


# ---- Slack listeners ----------------------------------------------------------------------------

listeners = Listeners()


@listeners.command("assign", ASSIGN_USAGE, "Ask to assign a policy to a group (or exclude it); no arguments opens a "
                   "form.", Access.ADMIN, group="Policies")
def assign_command(req: CommandRequest) -> None:
    if not req.args:
        req.ack()
        req.deps.runner.submit(req.deps.policy_names.refresh)
        req.open_form(assign_modal(), "open the assignment form")
        return
    _command(req, parse_ask(req.args, unassign=False))


@listeners.command("unassign", UNASSIGN_USAGE, "Ask to remove a group from a policy.", Access.ADMIN,
                   group="Policies")
def unassign_command(req: CommandRequest) -> None:
    _command(req, parse_ask(req.args, unassign=True))


def _command(req: CommandRequest, ask: Ask) -> None:
    req.ack(response_type="ephemeral", text=md(":mag: Looking up *{}* and *{}*…", ask.policy, ask.group))
    _answer(req, ask)


@listeners.action(Action.ASSIGN_PICK, Access.ADMIN, what="ask to change a policy's groups", family=True)
def picked(ctx: Interaction) -> None:
    ctx.ack()
    _answer(ctx, Ask.clicked(ctx))


@listeners.action(Action.ASSIGN_REQUEST, Access.ADMIN, what="ask to change a policy's groups")
def request_clicked(ctx: Interaction) -> None:
    ctx.ack()
    ask = Ask.clicked(ctx)
    title = VERB_TEXT[ask.mode].format(policy="the policy", group="the group").capitalize()
    ctx.open_form(justification_modal(ASSIGN, change_for(ask.policy, ask.group, ask.mode), title, ctx.channel_id),
                  "open the justification modal")


@listeners.view(View.ASSIGN, Access.ADMIN, what="ask to change a policy's groups")
def submitted(ctx: Interaction) -> None:
    form = ctx.form()
    policy, group, why = form.choice("policy"), form.choice("group"), form.text("justification")
    mode: Mode = form.choice("mode") or "include"  # type: ignore[assignment]
    errors = {}
    if not policy or policy == "error":
        errors["policy"] = "Pick a policy."
    if not group or group == "error":
        errors["group"] = "Pick a group."
    if mode not in VERB_TEXT:
        errors["mode"] = "Pick a change."
    if len(why) < 5:
        errors["justification"] = "Say why (5+ characters)."
    if errors or policy is None or group is None:
        ctx.ack(response_action="errors", errors=errors)
        return
    ctx.ack()
    ctx.later(lambda: file_request(ctx.deps, ASSIGN, change_for(policy, group, mode), ctx.user_id, why, "",
                                   tell=ctx.dm), "file an assignment change")


def _answer(ctx: Interaction, ask: Ask) -> None:
    """Resolve the names after the ack and answer in place: a summary with "Ask for approval…", a pick list,
    or, with a reason already given, the filed request."""
    deps, user = ctx.deps, ctx.user_id

    def work() -> None:
        blocks, text, resolved = resolve_ask(deps, ask, user)
        if resolved is not None and not ask.why:
            blocks.append(request_button(deps, resolved, user))
        elif resolved is not None:
            request = file_request(deps, ASSIGN, change_for(resolved.policy, resolved.group, resolved.mode),
                                   user, ask.why, ctx.channel_id)
            blocks = [*(b for b in blocks if b["type"] == "section"),
                      section(md(":inbox_tray: Filed change request #{}. An approver (not you) has to approve it; "
                                 "you'll get a DM with the outcome.", request.id))]
            text = md("Filed change request #{}", request.id)
        ctx.answer(text, blocks, replace=True)
        pending = next((i for i, b in enumerate(blocks) if b.get("block_id") == LICENCES_PENDING), None)
        if resolved is not None and pending is not None:
            blocks[pending] = licence_block(deps, resolved.group)
            ctx.answer(text, blocks, replace=True)

    ctx.later(work, "assignment lookup")
