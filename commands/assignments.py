"""`/mam assign` and `/mam unassign`: change a policy's groups, behind an approval.

With arguments (`/mam assign "<policy>" "<group>" [--exclude] [--why "…"]`) names are resolved
(exact name or id; a pick list when ambiguous; the closest names when there is none) and the
admin sees the group's member count and the policy's current groups before asking. Without
arguments a modal with a policy picker and a group picker does the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.blocks import Block, actions, button, context, escape, section
from bot.errors import UsageError, new_correlation_id, run_guarded
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import AndroidPolicy, Group
from bot.registry import Subcommand
from bot.roles import Access
from bot.text import count
from commands.approvals import file_request, justification_modal
from commands.context import CommandRequest
from commands.ids import Action, View
from workflows.policy_changes import ASSIGN
from workflows.resolve import Ambiguous, Found, NotFound, resolve, resolve_group

if TYPE_CHECKING:
    from bot.deps import Deps

Mode = Literal["include", "exclude", "remove"]
ASSIGN_USAGE = '/mam assign "<policy>" "<group>" [--exclude] [--why "<reason>"]'
UNASSIGN_USAGE = '/mam unassign "<policy>" "<group>" [--why "<reason>"]'
PICK_MAX = 10


@dataclass(frozen=True)
class Ask:
    """What the admin asked for; policy and group are names or ids until resolved."""

    policy: str
    group: str
    mode: Mode
    why: str = ""

    def to_value(self) -> str:
        return json.dumps({"p": self.policy, "g": self.group, "m": self.mode, "w": self.why})[:2000]

    @classmethod
    def from_value(cls, value: str) -> Ask:
        data = json.loads(value)
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
            raise UsageError(f"I don't know the option `{escape(word)}`.")
        else:
            words.append(word)
        i += 1
    if len(words) != 2:
        raise UsageError("Name the policy and the group, each in quotes if it has spaces.")
    return Ask(words[0], words[1], mode, why)  # type: ignore[arg-type]


def change_for(policy_id: str, group_id: str, mode: Mode) -> dict[str, Any]:
    return {"policy_id": policy_id, mode: [group_id]}


VERB_TEXT = {"include": "assign {policy} to {group}", "exclude": "exclude {group} from {policy}",
             "remove": "remove {group} from {policy}"}


# ---- resolving, then asking ---------------------------------------------------------------------


def resolve_ask(deps: Deps, ask: Ask) -> tuple[list[Block], str]:
    """The answer to an assign/unassign request: a summary to confirm, a pick list, or closest names."""
    graph = deps.microsoft.graph
    policy = resolve(ask.policy, graph.iter_android_policies())
    group = resolve_group(ask.group, graph)
    problems: list[Block] = []
    for what, result, kind in (("policy", policy, "Android app protection policy"), ("group", group, "group")):
        if isinstance(result, NotFound):
            closest = ", ".join(f"*{escape(n)}*" for n in result.closest)
            problems.append(section(f":grey_question: No {kind} called *{escape(result.query)}*."
                                    + (f" Closest: {closest}." if closest else "")))
        elif isinstance(result, Ambiguous):
            problems += pick_blocks(ask, what, result.items)
    if problems:
        return problems, "Which one?"
    assert isinstance(policy, Found) and isinstance(group, Found)
    return confirm_blocks(deps, ask, policy.item, group.item), "Ready to ask for approval"


def pick_blocks(ask: Ask, what: str, items: Sequence[Any]) -> list[Block]:
    shown = items[:PICK_MAX]
    buttons = []
    for item in shown:
        choice = Ask(item.id if what == "policy" else ask.policy, item.id if what == "group" else ask.group,
                     ask.mode, ask.why)
        buttons.append(button((item.displayName or item.id)[:70], f"{Action.ASSIGN_PICK}:{what}:{item.id}"[:255],
                              choice.to_value()))
    more = (f" (showing {len(shown)} of {len(items)}; type more of the name to narrow)"
            if len(items) > len(shown) else "")
    query = ask.policy if what == "policy" else ask.group
    return [section(f"Several {what}s match *{escape(query)}*{more}. Which one?"), actions(*buttons)]


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
    verb = VERB_TEXT[ask.mode].format(policy=f"*{escape(policy.displayName)}*",
                                      group=f"*{escape(group.displayName or group.id)}*")
    resolved = Ask(policy.id, group.id, ask.mode, ask.why)
    return [
        section(f"You are about to ask to {verb}."),
        section(f"*Group:* {escape(group.displayName or group.id)} ({members}{', dynamic' if group.is_dynamic else ''})"
                f"\n*The policy's groups now:* {escape(', '.join(current) or 'none')}"),
        context("`assign` replaces all of a policy's assignments: the bot writes back every other group as it is."),
        actions(button("Ask for approval…", Action.ASSIGN_REQUEST, resolved.to_value(), style="primary")),
    ]


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


def register(app: App, deps: Deps) -> None:
    deps.registry.add_command(Subcommand(
        name="assign", usage=ASSIGN_USAGE, summary="Ask to assign a policy to a group (or exclude it); no "
        "arguments opens a form.", access=Access.ADMIN, handler=assign_command, group="Policies"))
    deps.registry.add_command(Subcommand(
        name="unassign", usage=UNASSIGN_USAGE, summary="Ask to remove a group from a policy.",
        access=Access.ADMIN, handler=unassign_command, group="Policies"))
    deps.registry.add_interaction("action", Action.ASSIGN_PICK, Access.ADMIN)
    deps.registry.add_interaction("action", Action.ASSIGN_REQUEST, Access.ADMIN)
    deps.registry.add_interaction("view", View.ASSIGN, Access.ADMIN)

    @app.action({"action_id": re.compile(f"^{Action.ASSIGN_PICK}(:.*)?$")})
    def picked(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        ask = Ask.from_value(body["actions"][0]["value"])
        _answer(deps, respond, ask, new_correlation_id(), replace=True, user=body["user"]["id"],
                channel=(body.get("channel") or {}).get("id", ""))

    @app.action(Action.ASSIGN_REQUEST)
    def request_clicked(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        ask = Ask.from_value(body["actions"][0]["value"])
        channel = (body.get("channel") or {}).get("id", "")
        title = VERB_TEXT[ask.mode].format(policy="the policy", group="the group").capitalize()
        modal = justification_modal(ASSIGN, change_for(ask.policy, ask.group, ask.mode), title, channel)
        deps.runner.submit(run_guarded, lambda: client.views_open(trigger_id=body["trigger_id"], view=modal),
                           tell=lambda text: respond(text=text, response_type="ephemeral", replace_original=False),
                           correlation_id=new_correlation_id(), what="open the justification modal")

    @app.view(View.ASSIGN)
    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        state: dict[str, dict[str, dict[str, Any]]] = view["state"]["values"]
        policy = (state["policy"]["pick_policy"].get("selected_option") or {}).get("value")
        group = (state["group"]["pick_group"].get("selected_option") or {}).get("value")
        mode = (state["mode"]["value"].get("selected_option") or {}).get("value", "include")
        why = str(state["justification"]["value"].get("value") or "").strip()
        errors = {}
        if not policy or policy == "error":
            errors["policy"] = "Pick a policy."
        if not group or group == "error":
            errors["group"] = "Pick a group."
        if len(why) < 5:
            errors["justification"] = "Say why (5+ characters)."
        if errors or policy is None or group is None:
            ack(response_action="errors", errors=errors)
            return
        ack()
        user = body["user"]["id"]

        def dm(text: str) -> None:
            deps.outbox.post(f"note:{new_correlation_id()}", channel=user, text=text)

        deps.runner.submit(run_guarded, lambda: file_request(deps, ASSIGN, change_for(policy, group, mode), user, why,
                                                             "", tell=dm),
                           tell=dm, correlation_id=new_correlation_id(), what="file an assignment change")


def assign_command(req: CommandRequest) -> None:
    _command(req, unassign=False)


def unassign_command(req: CommandRequest) -> None:
    _command(req, unassign=True)


def _command(req: CommandRequest, *, unassign: bool) -> None:
    if not req.args and not unassign:
        req.ack()
        req.deps.runner.submit(req.deps.policy_names.refresh)
        req.later(lambda: req.client.views_open(trigger_id=req.trigger_id, view=assign_modal()),
                  "open the assignment form")
        return
    ask = parse_ask(req.args, unassign=unassign)
    req.ack(response_type="ephemeral", text=f":mag: Looking up *{escape(ask.policy)}* and *{escape(ask.group)}*…")
    _answer(req.deps, req.respond, ask, req.correlation_id, replace=True, user=req.user_id, channel=req.channel_id)


def _answer(deps: Deps, respond: Respond, ask: Ask, correlation_id: str, *, replace: bool,
            user: str = "", channel: str = "") -> None:
    def work() -> None:
        blocks, text = resolve_ask(deps, ask)
        ready = any(b.get("type") == "actions" and b["elements"][0]["action_id"] == Action.ASSIGN_REQUEST
                    for b in blocks)
        if ready and ask.why and user:
            resolved = Ask.from_value(blocks[-1]["elements"][0]["value"])
            request = file_request(deps, ASSIGN, change_for(resolved.policy, resolved.group, resolved.mode),
                                   user, ask.why, channel)
            blocks = [*blocks[:2], section(f":inbox_tray: Filed change request #{request.id}. An approver (not you) "
                                           "has to approve it; you'll get a DM with the outcome.")]
            text = f"Filed change request #{request.id}"
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=replace)

    deps.runner.submit(run_guarded, work, tell=lambda t: respond(text=t, response_type="ephemeral",
                                                                 replace_original=False),
                       correlation_id=correlation_id, what="assignment lookup")

