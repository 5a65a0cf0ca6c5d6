"""`/mam help`: what the caller may run, grouped, with usage lines."""

from __future__ import annotations

from bot.errors import UsageError
from bot.mrkdwn import Mrkdwn, md, md_join
from bot.registry import Registry
from bot.roles import Access, Role
from bot.text import count
from commands.blocks import context, divider, header, section
from commands.context import CommandRequest
from commands.listen import Listeners

GROUP_ORDER = ["General", "Connectors", "Policies", "Approvals", "Watch", "Audit"]


listeners = Listeners()


@listeners.command("help", "/mam help [command]", "What you can run here, and how.", Access.ANYONE, aliases=("?",))
def show_help(req: CommandRequest) -> None:
    roles = req.deps.roles.roles_of(req.user_id)
    if req.args:
        sub = req.deps.registry.lookup(req.args[0])
        if sub is None:
            raise UsageError(f"There is no `/mam {req.args[0]}` to explain.")
        req.ack(response_type="ephemeral", text=md("`{}`: {}", sub.usage, sub.summary))
        return
    blocks = cached_help_blocks(req.deps.registry, roles, req.deps.roles.has_admins)
    req.ack(response_type="ephemeral", text=md("mam-bot commands"), blocks=blocks)


_cache: dict[tuple[int, frozenset[Role], bool], list[dict[str, object]]] = {}


def cached_help_blocks(registry: Registry, roles: frozenset[Role], has_admins: bool) -> list[dict[str, object]]:
    """Help is the same for everyone with the same roles; the registry does not change after start."""
    key = (id(registry), roles, has_admins)
    if key not in _cache:
        _cache[key] = help_blocks(registry, roles, has_admins=has_admins)
    return _cache[key]


def describe_roles(roles: frozenset[Role]) -> Mrkdwn:
    if not roles:
        return Mrkdwn("You have no mam-bot role yet: you can see your own devices and work apps with `/mam me`, "
                      "and read this help.")
    return md("You are a mam-bot {}.", " and ".join(sorted(r.value for r in roles)))


def help_blocks(registry: Registry, roles: frozenset[Role], *, has_admins: bool) -> list[dict[str, object]]:
    visible = registry.visible_to(roles)
    groups: dict[str, list[tuple[str, str]]] = {}
    for sub, usage, summary in visible:
        groups.setdefault(sub.group, []).append((usage, summary))
    blocks: list[dict[str, object]] = [
        header("mam-bot: Defender risk signals in Intune app protection"),
        context(describe_roles(roles)),
    ]
    for group in sorted(groups, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else 99):
        lines = md_join("\n", (md("`{}`  {}", usage, summary) for usage, summary in groups[group]))
        blocks.append(section(md("*{}*\n{}", group, lines)))
    hidden = registry.entry_count() - len(visible)
    notes: list[Mrkdwn] = []
    if hidden:
        missing = " / ".join(setting for role, setting in ((Role.ADMIN, "MAM_ADMINS"), (Role.APPROVER, "MAM_APPROVERS"))
                             if role not in roles)
        notes.append(md("{} need a role you don't have ({}).", count(hidden, "more command"), missing))
    if not has_admins:
        notes.append(Mrkdwn(":warning: No admins are configured (MAM_ADMINS), so nobody can request changes."))
    if notes:
        blocks += [divider(), context(*notes)]
    return blocks
