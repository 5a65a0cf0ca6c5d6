"""Slash-command text the way Slack sends it when the command sets `should_escape: true`.

Slack escapes `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;`, and turns what its client recognised
into entities: a picked person into `<@U…|name>`, a channel into `<#C…|name>`, a mail address into
`<mailto:a@b|a@b>`, a URL into `<https://…>`. The console and the tests type commands through this,
so the bot reads exactly what it would read from Slack.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(
    r"(?P<mail>(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<url>https?://[^\s<>\"]+)"
    r"|(?P<user>(?<![\w@])@(?P<name>[A-Za-z0-9][\w.-]*))"
    r"|(?P<channel>(?<![\w#])#(?P<channel_name>[a-z0-9][\w-]*))"
)


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def command_text(
    typed: str,
    *,
    find_user: Callable[[str], str | None] = lambda _name: None,
    find_channel: Callable[[str], str | None] = lambda _name: None,
) -> str:
    """`typed` as Slack would deliver it: people and channels the workspace knows become entities."""
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(typed):
        entity = _entity(match, find_user, find_channel)
        if entity is None:
            continue
        out.append(slack_escape(typed[pos:match.start()]))
        out.append(entity)
        pos = match.end()
    out.append(slack_escape(typed[pos:]))
    return "".join(out)


def _entity(match: re.Match[str], find_user: Callable[[str], str | None],
            find_channel: Callable[[str], str | None]) -> str | None:
    if match.group("mail"):
        mail = match.group("mail")
        return f"<mailto:{mail}|{slack_escape(mail)}>"
    if match.group("url"):
        return f"<{match.group('url')}>"
    if match.group("user"):
        name = match.group("name")
        user_id = find_user(name)
        return f"<@{user_id}|{slack_escape(name)}>" if user_id else None
    name = match.group("channel_name")
    channel_id = find_channel(name)
    return f"<#{channel_id}|{slack_escape(name)}>" if channel_id else None
