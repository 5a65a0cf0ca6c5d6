"""`/mam policy list | show <name or id>`: Android app protection policies, read-only.

Each read-only verb is one entry in `VERBS` (`new`, `edit` and `delete` are registry verbs: admins only,
their forms in `commands.policy_new` and `commands.policy_edit`); the command acks at once and fills the
answer in with one `response_url` update after Graph has answered. The list offers "Set threat level"
beside each policy that ignores Defender, and `show` an Edit button: both open the edit form.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bot import slack_limits
from bot.command_text import command_name
from bot.errors import UsageError
from bot.microsoft.models import AndroidPolicy
from bot.mrkdwn import Mrkdwn, md, md_join
from bot.registry import Verb
from bot.roles import Access
from commands.blocks import Block, actions, button, context, fields_section, header, section
from commands.context import CommandRequest, Interaction
from commands.ids import Action
from commands.listen import Listeners
from commands.payloads import PolicyRef
from commands.policy_edit import DELETE_USAGE, EDIT_USAGE, EditAction, delete_command, edit_command
from commands.policy_new import new_command
from workflows.policies import (
    PARTNER_PRIORITY_LABELS,
    PolicyDetail,
    PolicyLookup,
    PolicyPage,
    action_label,
    apps_label,
    assignment_counts,
    ignores_defender,
    label,
    list_policies,
    management_level_labels,
    show_policy,
    show_policy_by_id,
    threat_level_label,
)
from workflows.resolve import Ambiguous, NotFound

USAGE = "/mam policy list [part of a name] | show <name or id>"
NEW_USAGE = "/mam policy new"
MAX_MESSAGE_BLOCKS = slack_limits.MESSAGE_BLOCKS
LIST_LIMIT = MAX_MESSAGE_BLOCKS - 3  # header, summary and the "more" note take the other three
PICK_LIMIT = 10
APPS_SHOWN = 15
TARGETS_SHOWN = 30
DESCRIPTION_MAX = 500
LIST_TITLE = "Android app protection policies"
SHOW_TITLE = "Android app protection policy"
WHERE_TO_SET_IT = ("Intune admin center: Apps > App protection policies > (the policy) > Properties > "
                   "Conditional launch > Device conditions > Max allowed device threat level")


listeners = Listeners()


@listeners.command(
    "policy", USAGE, "Android app protection policies: Defender threat level, action, apps and groups.",
    Access.READ, group="Policies",
    verbs=(Verb("new", NEW_USAGE, "A form for a new Android app protection policy with a max device threat level "
                                  "(an approver approves).", Access.ADMIN, lambda req: new_command(req, req.args),
                what="ask for a new app protection policy"),
           Verb("edit", EDIT_USAGE, "A form to change a policy's name, apps, device types, max device threat level "
                                    "and action (an approver approves).", Access.ADMIN,
                lambda req: edit_command(req, req.args), what="ask to edit app protection policies"),
           Verb("delete", DELETE_USAGE, "Ask to delete a policy: type its name to confirm (an approver approves).",
                Access.ADMIN, lambda req: delete_command(req, req.args),
                what="ask to delete app protection policies")))
def policy_command(req: CommandRequest) -> None:
    verb, *rest = req.args or ["list"]
    handler = VERBS.get(command_name(verb))
    if handler is None:
        known = ", ".join(f"`{v}`" for v in (*VERBS, "new"))
        raise UsageError(f"I don't know `/mam policy {verb}`; try {known}. Admins can also `edit` and `delete` a "
                         "policy.")
    handler(req, rest)


def list_command(req: CommandRequest, args: list[str]) -> None:
    query = " ".join(" ".join(args).split())  # `/mam policy list pilot`: the policies with "pilot" in the name
    req.ack(response_type="ephemeral", text=md(":hourglass_flowing_sand: Reading Android app protection policies…"))

    def work() -> None:
        page = list_policies(req.deps.microsoft.graph, limit=LIST_LIMIT, query=query)
        req.answer(list_summary(page), list_blocks(page), replace=True)

    req.later(work, "policy list")


def show_command(req: CommandRequest, args: list[str]) -> None:
    # Unquoted words are one name too: `show Android BYOD App Protection`.
    query = " ".join(args).strip()
    if not query:
        raise UsageError("Which policy? Give its name (in quotes if it has spaces) or its id.")
    req.ack(response_type="ephemeral", text=md(":hourglass_flowing_sand: Reading the policy *{}*…", query))

    def work() -> None:
        text, blocks = lookup_message(show_policy(req.deps.microsoft.graph, query))
        req.answer(text, blocks, replace=True)

    req.later(work, "policy show")


VERBS: dict[str, Callable[[CommandRequest, list[str]], None]] = {
    "list": list_command,
    "show": show_command,
}  # `new`, `edit` and `delete` are verbs of their own in the registry: they need an admin


@listeners.action(Action.POLICY_SHOW, Access.READ, what="read policy details")
def details_clicked(ctx: Interaction) -> None:
    """A policy list's Details button: the picture in a new message."""
    _show_clicked(ctx, replace=False)


@listeners.action(Action.POLICY_PICK, Access.READ, what="read policy details")
def pick_clicked(ctx: Interaction) -> None:
    """A pick list's button: the picture replaces the pick list."""
    _show_clicked(ctx, replace=True)


def _show_clicked(ctx: Interaction, *, replace: bool) -> None:
    ctx.ack()
    policy_id = ctx.data(PolicyRef).id

    def work() -> None:
        text, blocks = lookup_message(show_policy_by_id(ctx.deps.microsoft.graph, policy_id))
        ctx.answer(text, blocks, replace=replace)

    ctx.later(work, "policy show")


# ---- Block Kit: the list ------------------------------------------------------------------------------


def list_summary(page: PolicyPage) -> Mrkdwn:
    if not page.total:
        return md("{}: none yet.", LIST_TITLE)
    return md("{}: {}, {} ignoring Defender.", LIST_TITLE, _count(page.total, "policy", "policies"),
              page.ignoring_defender)


def list_blocks(page: PolicyPage) -> list[Block]:
    blocks: list[Block] = [header(LIST_TITLE)]
    if not page.total:
        blocks.append(section(md("No Android app protection policy has *{}* in its name. `/mam policy list` "
                                 "lists them all.", page.query) if page.query else
                              Mrkdwn("There are no Android app protection policies in this tenant yet.")))
        return blocks
    summary = _count(page.total, "policy", "policies")
    if page.query:
        summary += f" with “{page.query}” in the name"
    # a "Set threat level" button under each policy that ignores Defender, as many as the message has room for
    # (one block each, after the summary, a row per policy and the "more" line)
    room = MAX_MESSAGE_BLOCKS - len(blocks) - 1 - len(page.policies) - (1 if page.more else 0)
    if page.ignoring_defender:
        ignore = "ignores" if page.ignoring_defender == 1 else "ignore"
        summary += (f"; :warning: {page.ignoring_defender} {ignore} Defender's signal "
                    "(max allowed device threat level not configured)")
        if sum(ignores_defender(p) for p in page.policies) > room:
            summary += "; Details, then Edit…, sets it"
    blocks.append(context(md("{}.", summary)))
    for policy in page.policies:
        blocks.append(policy_row(policy))
        if ignores_defender(policy) and room > 0:
            blocks.append(actions(set_threat_button(policy)))
            room -= 1
    if page.more:
        blocks.append(context(more_line(page)))
    return blocks[:MAX_MESSAGE_BLOCKS]


def set_threat_button(policy: AndroidPolicy) -> dict[str, object]:
    """Opens the edit form with the max device threat level preset to Low and the action to Block access."""
    return button("Set threat level", EditAction.SET_THREAT, PolicyRef(id=policy.id).encode(), style="primary")


def more_line(page: PolicyPage) -> Mrkdwn:
    """How many policies the list leaves out (a message holds 50 blocks) and how to see them."""
    narrow = "more of the name" if page.query else "part of a name"
    return md("…and {:,} more: `/mam policy list &lt;{}&gt;` narrows it down; `/mam policy show &lt;name or id&gt;` "
              "shows one in full.", page.more, narrow)


def policy_row(policy: AndroidPolicy) -> Block:
    text = md("*{}*\n{}\nDevices: {}\nApps: {} · Assigned: {}", policy.displayName, _threat_line(policy),
              ", ".join(management_level_labels(policy)), apps_label(policy), _assignment_summary(policy))
    return section(text, accessory=button("Details", Action.POLICY_SHOW, PolicyRef(id=policy.id).encode()))


def _threat_line(policy: AndroidPolicy) -> Mrkdwn:
    if ignores_defender(policy):
        return Mrkdwn(":warning: Max device threat level *not configured*: ignores Defender's signal")
    return md(":shield: Max device threat level *{}*, above it: {}", threat_level_label(policy), action_label(policy))


def _assignment_summary(policy: AndroidPolicy) -> str:
    included, excluded = assignment_counts(policy)
    if not included and not excluded:
        return "not assigned"
    return f"{included} included, {excluded} excluded"


# ---- Block Kit: one policy, a pick list, not found -----------------------------------------------------


def lookup_message(result: PolicyLookup | NotFound) -> tuple[Mrkdwn, list[Block]]:
    """(notification text, blocks) for whatever a lookup found."""
    if isinstance(result, PolicyDetail):
        return md("{}: {}", SHOW_TITLE, result.policy.displayName), detail_blocks(result)
    if isinstance(result, Ambiguous):
        return md("Several policies match {}.", result.query), pick_list_blocks(result)
    text = not_found_text(result)
    return text, [section(text)]


def detail_blocks(detail: PolicyDetail) -> list[Block]:
    policy = detail.policy
    title = md("*{}*", policy.displayName)
    if policy.description and policy.description.strip():
        title = md("{}\n{}", title, _shorten(policy.description.strip(), DESCRIPTION_MAX))
    blocks: list[Block] = [header(SHOW_TITLE), section(title)]
    if detail.partly_matched:
        blocks.append(context(md(":mag: The only policy whose name matches *{}*.", detail.partly_matched)))
    if ignores_defender(policy):
        blocks.append(section(md(
            ":warning: *Max allowed device threat level is not configured*: this policy ignores Defender's "
            "signal, so a device at high risk keeps its managed apps.\n*Set it in:* {}", WHERE_TO_SET_IT
        )))
    blocks.append(fields_section(settings_fields(policy)))
    blocks.append(section(apps_text(detail)))
    blocks.append(section(targets_text(detail)))
    blocks.append(context(md("Id `{}` · Read-only: nothing was changed.", policy.id)))
    ref = PolicyRef(id=policy.id).encode()
    buttons = [button("Edit…", EditAction.EDIT, ref)]
    if ignores_defender(policy):
        buttons.insert(0, set_threat_button(policy))
    blocks.append(actions(*buttons))
    return blocks


def settings_fields(policy: AndroidPolicy) -> list[Mrkdwn]:
    fields = [
        md("*Max allowed device threat level*\n{}", threat_level_label(policy)),
        md("*Action above it*\n{}", action_label(policy)),
        md("*Device types*\n{}", ", ".join(management_level_labels(policy))),
        md("*Apps*\n{}", apps_label(policy)),
        md("*Assigned*\n{}", _yes_no(policy.isAssigned)),
        md("*Last modified*\n{}", _when(policy.lastModifiedDateTime)),
    ]
    if policy.mobileThreatDefensePartnerPriority:
        priority = label(PARTNER_PRIORITY_LABELS, policy.mobileThreatDefensePartnerPriority)
        fields.append(md("*Primary MTD service*\n{}", priority))
    return fields


def apps_text(detail: PolicyDetail) -> Mrkdwn:
    names = detail.apps
    if not names:
        return Mrkdwn("*Apps*: none. The policy protects no app until apps are added.")
    rest = len(names) - APPS_SHOWN
    return md("*Apps* ({}): {}{}", len(names), ", ".join(names[:APPS_SHOWN]), f" and {rest} more" if rest > 0 else "")


def targets_text(detail: PolicyDetail) -> Mrkdwn:
    if not detail.targets:
        return Mrkdwn("*Groups*: not assigned to any group, so it applies to nobody yet.")
    lines = [Mrkdwn("*Groups*")]
    for target in detail.targets[:TARGETS_SHOWN]:
        verb = Mrkdwn(":no_entry_sign: Excluded" if target.excluded else ":busts_in_silhouette: Included")
        if not target.found:
            lines.append(md("{}: group `{}`, not found (deleted?)", verb, target.group_id))
            continue
        members = "" if target.members is None else f" · {_count(target.members, 'member', 'members')}"
        lines.append(md("{}: *{}*{}", verb, target.name, members))
    rest = len(detail.targets) - TARGETS_SHOWN
    if rest > 0:
        lines.append(md("…and {} more", rest))
    return md_join("\n", lines)


def pick_list_blocks(result: Ambiguous[AndroidPolicy]) -> list[Block]:
    blocks: list[Block] = [section(md(
        ":mag: {} Android app protection policies match *{}*: pick one.", len(result.items), result.query
    ))]
    for policy in result.items[:PICK_LIMIT]:
        text = md("*{}*\n{}", policy.displayName, _threat_line(policy))
        blocks.append(section(text, accessory=button("Show", Action.POLICY_PICK, PolicyRef(id=policy.id).encode())))
    rest = len(result.items) - PICK_LIMIT
    if rest > 0:
        blocks.append(context(md("…and {} more: type more of the name, or give the policy id.", rest)))
    return blocks


def not_found_text(result: NotFound) -> Mrkdwn:
    text = md(":grey_question: No Android app protection policy called *{}*.", result.query)
    if result.closest:
        return md("{} Closest: {}.", text, md_join(", ", (md("*{}*", name) for name in result.closest)))
    return md("{} `/mam policy list` shows them all.", text)


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "unknown"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
