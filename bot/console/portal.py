"""The console's `:portal` command: change the sandbox tenant as an admin in the Intune portal would, outside the
bot, so drift detection has something to find (bot.sandbox.portal records who did it in Intune's audit log).

    :portal policy "<name or id>" maximumAllowedDeviceThreatLevel=high +app=com.microsoft.teams +group=Sales
    :portal connector androidMobileApplicationManagementEnabled=false
    :portal create "<name>" maximumAllowedDeviceThreatLevel=medium
    :portal delete "<name or id>"
    :portal deliver                     (audit events held back by --late arrive now)

Options anywhere after the verb: `--as <upn>` (who did it; default intune.admin@contoso.example) and
`--late <minutes>` (its audit events become visible that much later).
"""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.sandbox import SandboxTenant

USAGE = ("(usage: :portal policy \"<name or id>\" key=value … [+app=<package>] [-app=<package>] [+group=<group>] "
         "[-group=<group>] [exclude=<group>] | :portal connector key=value … | :portal create \"<name>\" "
         "key=value … | :portal delete \"<name or id>\" | :portal deliver; options --as <upn>, --late <minutes>)")


def value_of(text: str) -> Any:
    """A typed value: true/false, a whole number, a comma list for `…=a,b` where lists are meant, else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if lowered.lstrip("-").isdigit():
        return int(lowered)
    return text


def portal(tenant: SandboxTenant | None, arg: str) -> str:
    """Run one `:portal` line against the sandbox tenant; what to print."""
    from bot.sandbox.portal import PortalError

    if tenant is None:
        return "(:portal changes the in-process sandbox tenant; this console talks to another tenant)"
    try:
        words = shlex.split(arg)
    except ValueError as exc:
        return f"({exc}) {USAGE}"
    if not words:
        return USAGE
    verb = words[0].lower()
    try:
        admin, late, rest = _options(words[1:])
        delay = timedelta(minutes=late) if late is not None else None
        if verb == "deliver":
            return f"({tenant.deliver_late_audit_events()} late audit events arrived)"
        if verb == "connector":
            settings = _settings(rest)
            tenant.set_connector_as(admin, audit_delay=delay, **settings)
            return f"(the connector was changed in the Intune portal by {admin or 'the portal admin'}: " \
                   f"{_listed(settings)})"
        if not rest:
            return USAGE
        target, rest = rest[0], rest[1:]
        if verb == "create":
            created = tenant.create_policy_as(admin, target, audit_delay=delay, **_settings(rest))
            return f"(policy {created['displayName']!r} ({created['id']}) was created in the Intune portal)"
        if verb == "delete":
            return f"(policy {tenant.delete_policy_as(admin, target, audit_delay=delay)} was deleted in the portal)"
        if verb != "policy":
            return USAGE
        lists: dict[str, list[str]] = {"+app": [], "-app": [], "+group": [], "-group": [], "exclude": []}
        plain: list[str] = []
        for word in rest:
            key, _, value = word.partition("=")
            if key in lists:
                lists[key].append(value)
            else:
                plain.append(word)
        settings = _settings(plain)
        edited = tenant.edit_policy_as(admin, target, add_apps=lists["+app"], remove_apps=lists["-app"],
                                       include=lists["+group"], remove_groups=lists["-group"],
                                       exclude=lists["exclude"], audit_delay=delay, **settings)
        changed = [_listed(settings)] if settings else []
        changed += [f"{k}={', '.join(v)}" for k, v in lists.items() if v]
        return f"(policy {edited['displayName']!r} was changed in the Intune portal: {'; '.join(changed)})"
    except (PortalError, ValueError) as exc:
        return f"(not changed: {exc})"


def _options(words: list[str]) -> tuple[str, float | None, list[str]]:
    admin, late, rest = "", None, []
    items = iter(words)
    for word in items:
        if word == "--as":
            admin = next(items, "")
        elif word == "--late":
            late = float(next(items, "0") or 0)
        else:
            rest.append(word)
    return admin, late, rest


def _settings(words: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"{word!r} is not key=value")
        settings[key] = value_of(value)
    return settings


def _listed(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "nothing"
