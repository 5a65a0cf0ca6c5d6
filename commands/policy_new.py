"""`/mam policy new`: a modal for an Android app protection policy with a max device threat level.

The modal opens within the trigger's 3 seconds. Its submission is checked with what the bot
already knows (a short-lived cache of policy names), never a slow call; the change request's plan
checks everything again against the tenant, and so does the executor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import UserError
from bot.microsoft.errors import MicrosoftError
from bot.mrkdwn import Mrkdwn, escape, md
from bot.roles import Access
from bot.slack_limits import SELECT_OPTIONS, TEXT_INPUT_LENGTH
from commands.blocks import section
from commands.context import CommandRequest, Form, Interaction
from commands.ids import Action, View
from commands.listen import Listeners
from commands.pickers import option
from workflows.policies import (
    ACTION_LABELS,
    APP_GROUP_LABELS,
    MANAGEMENT_LEVEL_LABELS,
    PACKAGE_EXAMPLE,
    PACKAGE_ID_MAX,
    PICKER_APPS,
    RETIRED_APPS,
    THREAT_LEVEL_LABELS,
    app_label,
    bad_package_ids,
    split_package_ids,
)
from workflows.policies import APP_SETS as APP_GROUPS
from workflows.policy_changes import CREATE

SET_PREFIX = "set:"  # an app set's value in the app picker: "set:allMicrosoftApps"
APP_SETS = {f"{SET_PREFIX}{group}": name for group, name in APP_GROUPS.items()}
DEFAULT_APPS = ("com.microsoft.office.outlook", "com.microsoft.teams", "com.microsoft.emmx")
DEVICE_TYPES = ("unmanaged", "androidEnterprise", "mdm", "unspecified")
THREAT_LEVELS = ("secured", "low", "medium", "high")
# For the max allowed device threat level on Android, Intune offers Block access and Wipe data only (warn and
# blockWhenSettingIsSupported belong to the shared enum of other settings); an existing policy shows what it has.
ACTIONS = ("block", "wipe")
WIPE_CONFIRMED = "wipe-understood"
DEVICE_TYPE_HINT = {"unmanaged": "unmanaged (MAM without enrollment)", "mdm": "Android device administrator"}
NAME_MAX = 256  # Intune's limit on a policy's name
DESCRIPTION_MAX = 1000
SELECTED = "selectedPublicApps"


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _select(block_id: str, label: str, options: list[dict[str, Any]], initial: str | None,
            hint: str | None = None, focus: bool = False) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": options}
    chosen = [o for o in options if o["value"] == initial]
    if chosen:
        element["initial_option"] = chosen[0]
    if focus:
        element["focus_on_load"] = True
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "element": element,
                             "label": {"type": "plain_text", "text": label}}
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def text_input(block_id: str, label: str, *, initial: str = "", multiline: bool = False, optional: bool = False,
               max_length: int = 3000, placeholder: str = "", hint: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline,
                               "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = {"type": "plain_text", "text": placeholder}
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "optional": optional, "element": element,
                             "label": {"type": "plain_text", "text": label}}
    if hint:
        block["hint"] = {"type": "plain_text", "text": hint}
    return block


def _group_picker(block_id: str, label: str, initial: list[dict[str, Any]]) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "multi_external_select", "action_id": Action.PICK_GROUP,
                               "min_query_length": 2, "max_selected_items": 25,
                               "placeholder": {"type": "plain_text", "text": "Type part of a group name"}}
    if initial:
        element["initial_options"] = initial
    return {"type": "input", "block_id": block_id, "optional": True, "element": element,
            "label": {"type": "plain_text", "text": label}}


# ---- the form's parts, shared by a new policy and an edit (commands.policy_edit) ---------------------


@dataclass(frozen=True)
class Current:
    """What an existing policy has that a new one is not offered: kept selectable in its edit form, so the
    form shows the policy as it is (a retired app it lists, a `warn` action, an `allApps` app group)."""

    threat: str | None = None
    action: str | None = None
    app_group: str | None = None
    device_types: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()


NEW = Current()


def name_blocks(v: dict[str, Any], *, name_fits: bool = True, description_fits: bool = True) -> list[dict[str, Any]]:
    """Name and description; an existing one longer than a text input holds is left out (and left as it is)."""
    blocks: list[dict[str, Any]] = []
    if name_fits:
        name = v.get("name") or ""
        blocks.append(text_input("name", "Policy name", initial=name, max_length=max(NAME_MAX, len(name)),
                                 placeholder="e.g. Android MAM - block above low threat"))
    if description_fits:
        description = v.get("description") or ""
        blocks.append(text_input("description", "Description", initial=description, multiline=True, optional=True,
                                 max_length=max(DESCRIPTION_MAX, len(description))))
    return blocks


def app_options(current: Current = NEW) -> list[dict[str, Any]]:
    """The option groups of the app picker: the app sets, then Microsoft's apps (retired ones only where the policy
    lists them), within a select's 100 options."""
    groups = dict(APP_SETS)
    if current.app_group and current.app_group != SELECTED and f"{SET_PREFIX}{current.app_group}" not in groups:
        groups[f"{SET_PREFIX}{current.app_group}"] = _first_upper(APP_GROUP_LABELS.get(current.app_group,
                                                                                      current.app_group))
    set_options = [option(name, value) for value, name in groups.items()]
    apps = dict(PICKER_APPS)
    apps.update({p: f"{app_label(p)} (retired)" for p in current.apps if p in RETIRED_APPS})
    app_opts = [option(name, package) for package, name in apps.items()][:SELECT_OPTIONS - len(set_options)]
    return [{"label": {"type": "plain_text", "text": "App sets"}, "options": set_options},
            {"label": {"type": "plain_text", "text": "Microsoft apps"}, "options": app_opts}]


def app_blocks(v: dict[str, Any], current: Current = NEW) -> list[dict[str, Any]]:
    """The app picker and a text field for any other app by its package id."""
    groups = app_options(current)
    chosen: list[str] = list(DEFAULT_APPS) if v.get("apps") is None else list(v["apps"])
    initial = [o for g in groups for o in g["options"] if o["value"] in chosen]
    picker: dict[str, Any] = {"type": "multi_static_select", "action_id": "value", "option_groups": groups}
    if initial:
        picker["initial_options"] = initial
    custom = v.get("custom_apps") or ""
    return [
        {"type": "input", "block_id": "apps", "optional": True, "element": picker,
         "label": {"type": "plain_text", "text": "Apps to protect"},
         "hint": {"type": "plain_text", "text": "Pick apps, or one app set (an app set can't be mixed with apps)."}},
        text_input("custom_apps", "Other apps (Android package ids)", initial=custom, multiline=True, optional=True,
                   max_length=max(TEXT_INPUT_LENGTH, len(custom)), placeholder=f"e.g. {PACKAGE_EXAMPLE}",
                   hint="Any Android app by its package id, as in its Play Store address (…?id=com.contoso.app): "
                        "separate several with commas or new lines."),
    ]


def settings_blocks(v: dict[str, Any], current: Current = NEW, *, focus_threat: bool = False) -> list[dict[str, Any]]:
    """Device types, the max allowed device threat level and the action above it."""
    types = list(DEVICE_TYPES) + [d for d in current.device_types if d not in DEVICE_TYPES]
    device_options = [option(_first_upper(DEVICE_TYPE_HINT.get(d, MANAGEMENT_LEVEL_LABELS.get(d, d))), d)
                      for d in types]
    chosen_types = v.get("device_types") or ["unmanaged"]
    levels = list(THREAT_LEVELS) + ([current.threat] if current.threat and current.threat not in THREAT_LEVELS
                                    else [])
    actions = list(ACTIONS) + ([current.action] if current.action and current.action not in ACTIONS else [])
    device_element: dict[str, Any] = {"type": "multi_static_select", "action_id": "value", "options": device_options}
    initial_types = [o for o in device_options if o["value"] in chosen_types]
    if initial_types:
        device_element["initial_options"] = initial_types
    return [
        {"type": "input", "block_id": "device_types", "label": {"type": "plain_text", "text": "Device types"},
         "element": device_element},
        _select("threat", "Max allowed device threat level",
                [option(_first_upper(THREAT_LEVEL_LABELS.get(t, t)), t) for t in levels], v.get("threat", "low"),
                hint="Above this level (as Defender reports it) the action below applies.", focus=focus_threat),
        _select("action", "Action above that level", [option(ACTION_LABELS.get(a, a), a) for a in actions],
                v.get("action", "block")),
    ]


def justification_block(v: dict[str, Any]) -> dict[str, Any]:
    return text_input("justification", "Why? (for the approver)", initial=v.get("justification", ""),
                      multiline=True, placeholder="e.g. protect pilot users' mail on risky phones (CHG0042)")


def wipe_block(v: dict[str, Any]) -> dict[str, Any]:
    return {"type": "input", "block_id": "confirm_wipe", "optional": True,
            "label": {"type": "plain_text", "text": "Only with Wipe data"},
            "element": {"type": "checkboxes", "action_id": "value", "options": [WIPE_OPTION],
                        **({"initial_options": [WIPE_OPTION]} if v.get("wipe_confirmed") else {})}}


def new_policy_modal(values: dict[str, Any] | None = None, error: Mrkdwn | None = None) -> dict[str, Any]:
    """The form; `values` refills it after a failed filing, so nothing typed is lost."""
    v = values or {}
    blocks: list[dict[str, Any]] = []
    if error:
        blocks.append(section(md(":x: {}", error)))
    blocks += [
        *name_blocks(v),
        *app_blocks(v),
        *settings_blocks(v),
        _group_picker("include", "Assign to groups", v.get("include_options", [])),
        _group_picker("exclude", "Exclude groups", v.get("exclude_options", [])),
        justification_block(v),
        wipe_block(v),
    ]
    return {
        "type": "modal", "callback_id": View.POLICY_NEW,
        "title": {"type": "plain_text", "text": "New app protection"},
        "submit": {"type": "plain_text", "text": "Send for approval"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


WIPE_OPTION = option("I understand: Wipe data removes the work data (mail, files, accounts) from these apps on "
                     "every device above the level", WIPE_CONFIRMED)


def read_values(form: Form) -> dict[str, Any]:
    include, exclude = form.options("include"), form.options("exclude")
    return {
        "name": " ".join(form.text("name").split()),
        "description": form.text("description"),
        "apps": form.choices("apps"),
        "custom_apps": form.text("custom_apps"),
        "device_types": form.choices("device_types"),
        "threat": form.choice("threat"),
        "action": form.choice("action"),
        "include": [str(o["value"]) for o in include if o["value"] != "error"],
        "exclude": [str(o["value"]) for o in exclude if o["value"] != "error"],
        "include_options": include,
        "exclude_options": exclude,
        "justification": form.text("justification"),
        "wipe_confirmed": WIPE_CONFIRMED in form.choices("confirm_wipe"),
    }


def chosen_apps(values: dict[str, Any]) -> tuple[str, list[str]]:
    """(app group type, package ids): an app set alone, or the picked apps and the typed package ids."""
    app_set = next((a.removeprefix(SET_PREFIX) for a in values["apps"] if a.startswith(SET_PREFIX)), None)
    if app_set:
        return app_set, []
    typed = split_package_ids(values.get("custom_apps") or "")
    return SELECTED, list(dict.fromkeys([*values["apps"], *typed]))


def package_error(packages: Sequence[str]) -> str | None:
    """What to say beside the package-id field when something typed there is not a package id."""
    wrong = bad_package_ids(packages)
    if not wrong:
        return None
    shown = wrong[0] if len(wrong[0]) <= 60 else wrong[0][:59] + "…"
    too_long = len(wrong[0]) > PACKAGE_ID_MAX
    return (f"“{shown}” is not an Android package id{f' (at most {PACKAGE_ID_MAX} characters)' if too_long else ''}"
            f": type ids like {PACKAGE_EXAMPLE} (letters, digits and _, in two or more parts separated by dots, each "
            "starting with a letter), separated by commas or new lines.")


def check_settings(values: dict[str, Any], errors: dict[str, str], *, wipe_needs_confirming: bool = True) -> None:
    """Apps, device types, threat level, action, wipe and justification: the same rules for a new policy and an
    edit, said beside the field."""
    typed = split_package_ids(values.get("custom_apps") or "")
    sets = [a for a in values["apps"] if a.startswith(SET_PREFIX)]
    wrong = package_error(typed)
    if wrong:
        errors["custom_apps"] = wrong
    elif not values["apps"] and not typed:
        errors["apps"] = "Pick at least one app or an app set, or type an app's package id below."
    elif sets and len(values["apps"]) + len(typed) > 1:
        errors["apps"] = "Pick one app set on its own, or individual apps (here or below), not both."
    if "unspecified" in values["device_types"] and len(values["device_types"]) > 1:
        errors["device_types"] = "'All device types' already covers the others: pick it alone."
    elif not values["device_types"]:
        errors["device_types"] = "Pick at least one device type."
    if not values["threat"]:
        errors["threat"] = "Pick the highest threat level to allow."
    if not values["action"]:
        errors["action"] = "Pick what happens above that level."
    if values["action"] == "wipe" and wipe_needs_confirming and not values.get("wipe_confirmed"):
        errors["confirm_wipe"] = ("Wipe data removes the work data from these apps on every device above the level: "
                                  "tick the box to confirm, or choose Block access.")
    if len(values["justification"]) < 5:
        errors["justification"] = "Say why this change is needed (5+ characters)."


def name_taken(name: str, names: Iterable[tuple[str, str]] | None, *, except_id: str = "") -> bool:
    """Whether another policy (by the bot's cache of (id, name) pairs) has this name, any case."""
    if names is None:
        return False
    wanted = name.casefold()
    return any(n.casefold() == wanted and pid.lower() != except_id.lower() for pid, n in names)


def validate(values: dict[str, Any], taken: set[str] | None) -> dict[str, str]:
    """What can be said within the ack: with what the bot knows, never a Graph call."""
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Give the policy a name."
    elif len(values["name"]) > NAME_MAX:
        errors["name"] = f"A policy's name holds at most {NAME_MAX} characters."
    elif taken is not None and values["name"].casefold() in taken:
        errors["name"] = "An Android app protection policy already has this name; choose another."
    check_settings(values, errors)
    if len(values["justification"]) < 5:
        errors["justification"] = "Say why this policy is needed (5+ characters)."
    both = set(values["include"]) & set(values["exclude"])
    if both:
        errors["exclude"] = "A group can't be both assigned and excluded."
    elif values["exclude"] and not values["include"]:
        errors["include"] = ("Excluded groups only take people out of the groups a policy is assigned to: with no "
                             "group to assign it to, it protects nobody. Add one, or leave both empty.")
    return errors


def change_from(values: dict[str, Any]) -> dict[str, Any]:
    group, packages = chosen_apps(values)
    draft = {
        "displayName": values["name"],
        "description": values["description"],
        "maximumAllowedDeviceThreatLevel": values["threat"],
        "mobileThreatDefenseRemediationAction": values["action"],
        "targetedAppManagementLevels": values["device_types"],
        "appGroupType": group,
        "packageIds": packages,
    }
    return {"draft": draft, "include": values["include"], "exclude": values["exclude"]}


def _message_view(title: str, text: Mrkdwn) -> dict[str, Any]:
    return {"type": "modal", "callback_id": f"{View.POLICY_NEW}_done",
            "title": {"type": "plain_text", "text": title[:24]}, "close": {"type": "plain_text", "text": "Close"},
            "blocks": [section(text)]}


def new_command(req: CommandRequest, args: list[str]) -> None:
    if args:
        raise UserError("`/mam policy new` takes no arguments: it opens a form.")
    req.ack()
    req.deps.runner.submit(req.deps.policy_names.refresh)  # warm, so the submission can check names at once
    req.open_form(new_policy_modal(), "open the new-policy form")


listeners = Listeners()


@listeners.view(View.POLICY_NEW, Access.ADMIN, what="ask for a new app protection policy")
def submitted(ctx: Interaction) -> None:
    deps, values = ctx.deps, read_values(ctx.form())
    cached = deps.policy_names.get()
    errors = validate(values, {name.casefold() for _, name in cached} if cached is not None else None)
    if errors:
        ctx.ack(response_action="errors", errors=errors)
        return
    ctx.ack(response_action="update", view=_message_view("Filing…", Mrkdwn(":hourglass_flowing_sand: Checking the "
                                                             "tenant and filing your change request…")))
    view_id = ctx.view["id"]

    def show(view: dict[str, Any]) -> None:
        ctx.client.views_update(view_id=view_id, view=view)

    def work() -> None:
        try:
            request = deps.changes.file(CREATE, change_from(values), requester=ctx.user_id,
                                        justification=values["justification"])
        except (UserError, MicrosoftError) as exc:
            # back to the form with everything as typed, and the reason on top
            show(new_policy_modal(values, error=exc.mrkdwn if isinstance(exc, UserError) else escape(str(exc))))
            return
        deps.policy_names.invalidate()
        show(_message_view(f"Request #{request.id}", md(":inbox_tray: Filed change request #{}: {}.\nAn approver "
                                                        "(not you) has to approve it; you'll get a DM with the "
                                                        "outcome.", request.id, request.title)))

    ctx.later(work, "file a new policy", tell=lambda text: show(_message_view("Something went wrong", text)))

