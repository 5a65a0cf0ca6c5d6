"""What the admin typed, turned into one policy or group: found, ambiguous (pick one) or not found.

Every command that takes a policy or group name goes through here, so "Sales" means the same thing
everywhere. Matching is case-insensitive and ignores repeated spaces: an exact id first, then an
exact name, then names that start with the text, then names that contain it. Policy ids look like
`T_<guid>` and are never checked against a pattern; group ids are GUIDs, and groups are looked up
with Graph's search rather than by listing the directory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from bot.microsoft.errors import NotFound as GraphNotFound
from bot.microsoft.models import Group

CLOSEST_MAX = 5
CLOSEST_CUTOFF = 0.6
# Graph matches names by their start or whole words, never by likeness; a second search with the
# first letters gives difflib something to suggest from when the admin made a typo further on.
SUGGESTION_STEM = 3

_GUID = re.compile(r"^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$", re.IGNORECASE)


class Named(Protocol):
    """Anything with an id and a display name: a policy, a group."""

    @property
    def id(self) -> str: ...

    @property
    def displayName(self) -> str | None: ...


T = TypeVar("T", bound=Named)


class MatchKind(StrEnum):
    ID = "id"
    NAME = "name"
    PARTIAL = "partial"  # the only name starting with, or containing, what was typed


@dataclass(frozen=True)
class Found(Generic[T]):
    item: T
    by: MatchKind = MatchKind.NAME

    @property
    def exact(self) -> bool:
        """False when only part of the name matched: a change should confirm the full name first."""
        return self.by is not MatchKind.PARTIAL


@dataclass(frozen=True)
class Ambiguous(Generic[T]):
    query: str
    items: tuple[T, ...]


@dataclass(frozen=True)
class NotFound:
    query: str
    closest: tuple[str, ...] = ()


Resolution = Found[T] | Ambiguous[T] | NotFound


def fold(text: str | None) -> str:
    """How names are compared: case-insensitive, and `Sales  EMEA` is `Sales EMEA`."""
    return " ".join((text or "").split()).casefold()


def resolve(query: str, candidates: Iterable[T]) -> Resolution[T]:
    """Pure: pick what `query` names among `candidates`."""
    wanted = fold(query)
    items = _unique(candidates)
    if not wanted:
        return NotFound(query)
    by_id = [c for c in items if fold(c.id) == wanted]
    if by_id:
        return Found(by_id[0], MatchKind.ID)
    steps: tuple[tuple[MatchKind, Callable[[str], bool]], ...] = (
        (MatchKind.NAME, lambda name: name == wanted),
        (MatchKind.PARTIAL, lambda name: name.startswith(wanted)),
        (MatchKind.PARTIAL, lambda name: wanted in name),
    )
    for kind, matches in steps:
        hits = [c for c in items if matches(fold(c.displayName))]
        if len(hits) == 1:
            return Found(hits[0], kind)
        if hits:
            return Ambiguous(query, tuple(sorted(hits, key=lambda c: (fold(c.displayName), c.id))))
    return NotFound(query, closest_names(query, items))


def closest_names(query: str, candidates: Iterable[Named], n: int = CLOSEST_MAX) -> tuple[str, ...]:
    """Up to `n` display names that look like `query` (difflib), best first, each name once.

    A name is also compared by its start, so `Andriod` suggests `Android BYOD App Protection`: a
    typo in the first word of a long name would otherwise score too low against the whole name.
    """
    wanted = fold(query)
    originals: dict[str, str] = {}
    for c in candidates:
        if c.displayName:
            originals.setdefault(fold(c.displayName), c.displayName)
    scored = [(_likeness(wanted, name), name) for name in originals]
    best = sorted((item for item in scored if item[0] >= CLOSEST_CUTOFF), key=lambda item: -item[0])
    return tuple(originals[name] for _, name in best[:n])


def _likeness(wanted: str, name: str) -> float:
    whole = difflib.SequenceMatcher(None, wanted, name).ratio()
    start = difflib.SequenceMatcher(None, wanted, name[:len(wanted)]).ratio()
    return max(whole, start)


def looks_like_guid(text: str) -> bool:
    return bool(_GUID.match(text.strip()))


class GroupDirectory(Protocol):
    def find_groups(self, name: str) -> Sequence[Group]: ...

    def get_group(self, group_id: str) -> Group: ...


def resolve_group(query: str, directory: GroupDirectory) -> Resolution[Group]:
    """A group by GUID, or by name through Graph's exact / starts-with / word search."""
    text = query.strip()
    if looks_like_guid(text):
        try:
            return Found(directory.get_group(text.strip("{}")), MatchKind.ID)
        except GraphNotFound:
            return NotFound(query)
    result = resolve(text, directory.find_groups(text))
    if isinstance(result, NotFound) and not result.closest and len(text) > SUGGESTION_STEM:
        similar = directory.find_groups(text[:SUGGESTION_STEM])
        return NotFound(query, closest_names(text, similar))
    return result


def _unique(candidates: Iterable[T]) -> list[T]:
    """One entry per id: the same policy or group can come back from two searches."""
    seen: set[str] = set()
    out: list[T] = []
    for c in candidates:
        key = c.id.lower()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
