"""The one way text becomes mrkdwn: outside text made inert wherever Slack parses it.

Slack parses two kinds of field: mrkdwn text objects (section text, fields, context elements) and a
message's top-level `text`. There `&`, `<` and `>` are control characters, so text from outside
(device, user, group, policy and app names, justifications, Microsoft's error messages) must be
escaped or a device named `<!channel>` pings a whole channel. `plain_text` objects (headers, button
labels, modal titles, options) are not parsed, and escaping them would show `&amp;` to people.

`Mrkdwn` is text that is already safe to put where Slack parses: the builders that make mrkdwn
objects and every message `text` parameter take it, so the type checker refuses a raw `str` there.
It comes from `escape()`, from `md()` (a template written by the bot whose arguments are escaped),
from `md_join()`, or from an explicit `Mrkdwn("...")` for text the bot itself writes.

This is the kernel's part: the workflows and the outbox word messages too. The Block Kit builders
that put `Mrkdwn` into blocks live with the Slack surfaces, in `commands/blocks.py`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

MESSAGE_TEXT_MAX = 4000  # Slack truncates longer top-level text; 4,000 is its recommended maximum
ELLIPSIS = "…"


class Mrkdwn(str):
    """Text safe to show where Slack parses mrkdwn: its `&`, `<` and `>` are markup the bot meant."""

    __slots__ = ()


# ---- showing outside text ----------------------------------------------------------------------------

# Bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) reorder what follows them:
# `\u202egnp.exe` shows as `exe.png`. Invisible characters that carry no meaning in any script
# (zero width space, word joiner, BOM, invisible operators, Mongolian vowel separator) can hide
# inside a name that looks like another. Both go. ZWJ and ZWNJ (U+200D, U+200C) are real letters'
# glue in Persian, Arabic, Indic scripts and emoji sequences: they stay between two non-ASCII
# characters and go elsewhere (in Latin text they only disguise).
_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\u200b\u2060\u2061\u2062\u2063\u2064\ufeff\u180e"
_DROP = re.compile(f"[{_BIDI_CONTROLS}{_INVISIBLE}\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]")
_JOINERS = re.compile("[\u200c\u200d]+")


def _joiner_kept(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    return all(c and not c.isascii() and not c.isspace() and unicodedata.category(c)[0] != "Z"
               for c in (before, after))


def clean(text: object) -> str:
    """Outside text as it may be shown: no bidi overrides or isolates, no invisible disguises."""
    raw = _DROP.sub("", str(text))
    if "\u200c" not in raw and "\u200d" not in raw:
        return raw
    return _JOINERS.sub(lambda m: m.group(0) if _joiner_kept(m.string, m.start(), m.end()) else "", raw)


def escape(text: object) -> Mrkdwn:
    """Outside text made inert in mrkdwn: `<!channel>` must not ping anyone. Already-`Mrkdwn` stays as it is."""
    if isinstance(text, Mrkdwn):
        return text
    return Mrkdwn(clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


_SAFE_AS_IS = (int, float, Decimal, datetime, date, timedelta)


def _arg(value: object) -> object:
    # numbers and times keep their format specs (`{:,}`, `{:%H:%M}`) and hold no markup
    return value if isinstance(value, (Mrkdwn, *_SAFE_AS_IS)) else escape(value)


def md(template: str, /, *args: object, **kwargs: object) -> Mrkdwn:
    """The bot's own mrkdwn `template` with its arguments escaped: `md("*{}* on {}", app, device)`.

    Arguments that are `Mrkdwn` already (a mention, a link, another `md()`) go in as they are.
    """
    return Mrkdwn(template.format(*(_arg(a) for a in args), **{k: _arg(v) for k, v in kwargs.items()}))


def md_join(separator: str, parts: Iterable[object]) -> Mrkdwn:
    """`separator.join(parts)`, each part escaped unless it is `Mrkdwn` already."""
    return Mrkdwn(separator.join(escape(p) for p in parts))


_USER_ID = re.compile(r"[UWB][A-Z0-9]{2,20}")


def mention(user_id: str) -> Mrkdwn:
    """A Slack user mention, for an id Slack gave the bot; anything else is shown as text."""
    return Mrkdwn(f"<@{user_id}>") if _USER_ID.fullmatch(user_id or "") else escape(user_id or "someone")


def link(url: str, label: object) -> Mrkdwn:
    """`<url|label>`: the label escaped, and the URL unable to end the link early (`|`, `>`) or start one."""
    safe_url = quote(clean(url), safe=":/?#[]@!$&'()*+,;=%~").replace("&", "&amp;")
    return Mrkdwn(f"<{safe_url}|{escape(label)}>")


# ---- cutting at Slack's limits -------------------------------------------------------------------------

# What must not be cut in two: an entity (`&amp;`, `&lt;`, `&gt;`) and a `<…>` link, mention or date.
_ATOM = re.compile(r"&(?:amp|lt|gt);|<[^<>\n]*>")
_LOOKBACK = 3000  # how far before the cut an atom may start (a link is shorter than a section's text)


def cut_mrkdwn(text: Mrkdwn, limit: int) -> Mrkdwn:
    """At most `limit` characters, cut between entities and links and ended with `…`."""
    if len(text) <= limit:
        return text
    end = max(limit - len(ELLIPSIS), 0)
    for atom in _ATOM.finditer(text, max(0, end - _LOOKBACK)):
        if atom.start() >= end:
            break
        if atom.end() > end:
            end = atom.start()
            break
    return Mrkdwn(text[:end].rstrip() + ELLIPSIS)


def cut_plain(text: str, limit: int) -> str:
    """At most `limit` characters, ended with `…` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS
