"""The text of `/mam`, read once, by this one function, for the role check and the router alike.

With `should_escape: true` in the manifest Slack sends the text escaped: `&`, `<` and `>` arrive as
`&amp;`, `&lt;` and `&gt;`, and what Slack recognised arrives as an entity: a user as `<@U…>` or
`<@U…|name>`, a channel as `<#C…|name>`, a mail address as `<mailto:a@b|a@b>`, a link as `<https://…>`
or `<https://…|text>` (Slack links `contoso.com` by itself), a user group as `<!subteam^S…|@name>`.
`read_command` undoes all of that, then splits the words like a shell, so `"Sales EMEA"` stays one
word; Slack's curly quotes count as quotes, and an apostrophe inside a word (`O'Brien`, or with a curly apostrophe) is a
letter, not a quote.

An entity that is a whole word keeps what it points at: a mention becomes a `Word` whose `user` is
the Slack user id, so a person can be named by mention, mail or name, and a typed `&lt;@U1&gt;`
(text that only looks like a mention) never counts as one. The subcommand's name is compared after
NFKC folding and case folding, with invisible format characters removed, so full-width letters, `Assign`
and `as\u200bsign` all mean `assign` to the role check because they mean it to the router too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_ENTITY = re.compile(r"<([^<>]*)>")
_SLOT = "\ue000{}\ue001"  # private-use marks standing in for an entity while the words are split
_SLOT_WORD = re.compile("\ue000(\\d+)\ue001")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")  # what Slack puts in `<@…>`: a user id, nothing else
_PRIVATE = str.maketrans("", "", "\ue000\ue001")
_DOUBLE = '"\u201c\u201d\u201e'  # Slack's clients turn typed quotes into curly ones
_SINGLE = "'\u2018\u2019"


class Word(str):
    """One word of the command. `user` is the Slack user id when the word was a mention."""

    user: str

    def __new__(cls, text: str, user: str = "") -> Word:
        word = super().__new__(cls, text)
        word.user = user
        return word


@dataclass(frozen=True)
class CommandText:
    """What `/mam` was asked: `words[0]` names the subcommand (help when there is none)."""

    raw: str  # as Slack sent it
    text: str  # decoded, for the audit log and for messages
    words: tuple[Word, ...]
    error: str = ""  # why the words could not be split (a quote not closed); then `words` is empty

    @property
    def name(self) -> str:
        return command_name(self.words[0]) if self.words else "help"

    @property
    def args(self) -> list[Word]:
        return list(self.words[1:])


def command_name(word: str) -> str:
    """The form subcommand and verb names are compared in: NFKC, case-folded, no invisible characters."""
    folded = unicodedata.normalize("NFKC", word).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def unescape(text: str) -> str:
    """Undo Slack's three escapes (it escapes exactly these in message and command text); `&amp;` last,
    so `&amp;lt;` stays `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def read_command(raw: str) -> CommandText:
    """Decode Slack's escaping and entities, then split into words. Never raises."""
    raw = raw or ""
    entities: list[Word] = []

    def hold(match: re.Match[str]) -> str:
        entities.append(_entity_word(match.group(1)))
        return _SLOT.format(len(entities) - 1)

    held = _ENTITY.sub(hold, raw.translate(_PRIVATE))
    plain = unescape(held)
    shown = _SLOT_WORD.sub(lambda m: str(entities[int(m.group(1))]), plain).strip()
    try:
        pieces = split_words(plain)
    except ValueError as exc:
        return CommandText(raw=raw, text=shown, words=(), error=str(exc))
    words = []
    for piece in pieces:
        whole = _SLOT_WORD.fullmatch(piece)
        if whole:
            words.append(entities[int(whole.group(1))])
        else:
            words.append(Word(_SLOT_WORD.sub(lambda m: str(entities[int(m.group(1))]), piece)))
    return CommandText(raw=raw, text=shown, words=tuple(words))


def split_words(text: str) -> list[str]:
    """Split like a shell: quotes group, a backslash escapes, `""` is an empty word. An apostrophe
    between two letters is a letter. Raises ValueError naming the quote that is not closed."""
    words: list[str] = []
    current: list[str] = []
    started = False  # a word has begun, even an empty one ("")
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch in quote:
                quote = ""
            elif ch == "\\" and quote == _DOUBLE and i + 1 < n and text[i + 1] in '"\\':
                i += 1
                current.append(text[i])
            else:
                current.append(ch)
        elif ch.isspace():
            if started:
                words.append("".join(current))
                current, started = [], False
        elif ch == "\\" and i + 1 < n:
            i += 1
            current.append(text[i])
            started = True
        elif ch in _DOUBLE or (ch in _SINGLE and not (current and current[-1].isalnum() and i + 1 < n
                                                      and text[i + 1].isalnum())):
            quote, started = (_DOUBLE if ch in _DOUBLE else _SINGLE), True
        else:
            current.append(ch)
            started = True
        i += 1
    if quote:
        raise ValueError(f"a {quote[0]} quote is not closed")
    if started:
        words.append("".join(current))
    return words


def _entity_word(inner: str) -> Word:
    """`@U1|ana` → `@ana` (user U1); `mailto:a@b|a@b` → `a@b`; `https://x|x` → `x`; `#C1|ops` → `#ops`."""
    target, _, label = inner.partition("|")
    target, label = unescape(target), unescape(label)
    if _USER_ID.fullmatch(target[1:]) and target.startswith("@"):
        user = target[1:]
        return Word("@" + (label.lstrip("@") or user), user=user)
    if target.startswith("#"):
        return Word("#" + (label.lstrip("#") or target[1:]))
    if target.startswith("!"):  # <!here>, <!subteam^S1|@admins>, <!date^…|fallback>
        return Word(label or "@" + target[1:].split("^", 1)[0])
    if target.startswith("mailto:"):
        return Word(label or target[len("mailto:"):])
    if label:
        return Word(label)  # a link Slack made of what was typed: the typed text, not the URL
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):
        return Word(target)
    return Word(f"<{inner}>")  # not an entity Slack makes: keep the text as typed
