"""A mail → the Entra user it names, asked of the directory once and kept (`entra_user_links`).

Intune's report export names people by mail, never by object id; the watch joins on ids. `EntraUsers` is the one
place that turns one into the other: the cache first (answers younger than `recheck`, "no one" included), then
either one listing of the directory (when many mails are unknown and listing takes fewer requests) or one
filtered lookup per mail. A mail matches a user by `mail` or `userPrincipalName`, case-insensitively; a mail two
users answer to names no one (`matches` 2), since the bot can't tell which is meant.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from bot.clock import as_utc
from bot.microsoft.errors import MicrosoftError
from bot.microsoft.models import User
from bot.store.db import Store
from bot.store.index import EntraUserLink

__all__ = ["DirectoryReader", "EntraUsers", "Resolved", "normalise_mail"]

log = logging.getLogger(__name__)

RECHECK = timedelta(days=7)
DIRECTORY_ABOVE = 40  # more unknown mails than this: list the directory, when that takes fewer requests
DIRECTORY_PAGE = 999  # users a page when listing the directory
QUERY_CHUNK = 500  # mails per IN (…) while reading the cache
WRITE_CHUNK = 500  # links per delete + insert while writing it
NAME_LENGTH = 256


class DirectoryReader(Protocol):
    """What EntraUsers asks Graph (GraphClient has all three)."""

    def iter_users(self) -> Iterable[User]: ...

    def count_users(self) -> int | None: ...

    def find_users_by_email(self, email: str) -> list[User]: ...


class Resolved(NamedTuple):
    """Who a mail names: `user_id` when exactly one user answers to it (`matches` 1), else None."""

    user_id: str | None
    matches: int
    name: str

    @classmethod
    def of(cls, users: Mapping[str, str]) -> Resolved:
        """From the matching users' ids (lower case) and display names."""
        if len(users) == 1:
            ((user_id, name),) = users.items()
            return cls(user_id, 1, name[:NAME_LENGTH])
        return cls(None, len(users), "")


def normalise_mail(email: str | None) -> str:
    return (email or "").strip().lower()


class EntraUsers:
    def __init__(self, store: Store, graph: DirectoryReader, now: datetime, recheck: timedelta = RECHECK, *,
                 directory_above: int = DIRECTORY_ABOVE) -> None:
        self.store = store
        self.graph = graph
        self.now = as_utc(now)
        self.recheck = recheck
        self.directory_above = directory_above
        self.lookups = 0  # one-by-one lookups made (for tests and logs)
        self.listed = False  # whether the directory was listed

    # ---- answers ---------------------------------------------------------------------------------

    def resolve_many(self, emails: Iterable[str]) -> dict[str, str | None]:
        """Each mail (lower case) → the Entra user id it names, or None (no one, or several).

        A Microsoft error stops the lookups; the answers found before it are kept in the cache, and it is raised.
        """
        return {mail: found.user_id for mail, found in self.resolve_all(emails).items()}

    def resolve_all(self, emails: Iterable[str]) -> dict[str, Resolved]:
        """As `resolve_many`, with how many users matched and the one user's name."""
        wanted = sorted({m for m in (normalise_mail(e) for e in emails) if m})
        answers = self._cached(wanted)
        unknown = [m for m in wanted if m not in answers]
        if not unknown:
            return answers
        if len(unknown) > self.directory_above and self._listing_is_cheaper(len(unknown)):
            found = self._from_directory(unknown)
            self._store(found)
            answers.update(found)
        else:
            answers.update(self._one_by_one(unknown))
        return answers

    def resolve_one(self, email: str) -> Resolved:
        """Who one mail names (`/mam me`): the cache unless older than `recheck`, else one lookup."""
        mail = normalise_mail(email)
        if not mail:
            return Resolved(None, 0, "")
        cached = self._cached([mail])
        if mail in cached:
            return cached[mail]
        return self._one_by_one([mail])[mail]

    # ---- the cache ---------------------------------------------------------------------------------

    def _cached(self, mails: list[str]) -> dict[str, Resolved]:
        table = _table()
        fresh_after = self.now - self.recheck
        answers: dict[str, Resolved] = {}
        with self.store.engine.connect() as conn:
            for start in range(0, len(mails), QUERY_CHUNK):
                chunk = mails[start:start + QUERY_CHUNK]
                query = select(table.c.email, table.c.user_id, table.c.matches, table.c.name, table.c.resolved_at)
                for email, user_id, matches, name, resolved_at in conn.execute(query.where(table.c.email.in_(chunk))):
                    at = as_utc(resolved_at)
                    if at is None or at <= fresh_after:
                        continue
                    answers[email] = Resolved(user_id if matches == 1 else None, int(matches), name or "")
        return answers

    def _store(self, found: Mapping[str, Resolved]) -> None:
        """Replace the links of these mails: delete then insert, a chunk a transaction (SQLite and PostgreSQL)."""
        rows = [{"email": mail[:320], "user_id": r.user_id, "matches": r.matches, "name": r.name[:NAME_LENGTH],
                 "resolved_at": self.now} for mail, r in sorted(found.items())]
        table = _table()
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = rows[start:start + WRITE_CHUNK]
            for attempt in (1, 2):
                try:
                    with self.store.engine.begin() as conn:
                        conn.execute(delete(table).where(table.c.email.in_([r["email"] for r in chunk])))
                        conn.execute(insert(table), chunk)
                    break
                except IntegrityError as exc:
                    # Another replica wrote the same mails between our delete and insert: once more wins.
                    log.info("entra user links: a concurrent write (attempt %d): %s", attempt, exc.orig)
            else:
                log.warning("entra user links: %d answers not kept (concurrent writes); asked again next time",
                            len(chunk))

    # ---- asking the directory ------------------------------------------------------------------------

    def _listing_is_cheaper(self, unknown: int) -> bool:
        """Listing costs a request per 999 users; lookups one per mail."""
        try:
            users = self.graph.count_users()
        except MicrosoftError as exc:
            log.info("couldn't count the directory's users (%s); listing it", exc)
            return True
        return users is None or math.ceil(users / DIRECTORY_PAGE) < unknown

    def _from_directory(self, mails: list[str]) -> dict[str, Resolved]:
        wanted = set(mails)
        matches: dict[str, dict[str, str]] = {}
        self.listed = True
        for user in self.graph.iter_users():
            for address in _addresses(user):
                if address in wanted:
                    matches.setdefault(address, {})[user.id.lower()] = user.displayName or ""
        return {mail: Resolved.of(matches.get(mail, {})) for mail in mails}

    def _one_by_one(self, mails: list[str]) -> dict[str, Resolved]:
        found: dict[str, Resolved] = {}
        unsaved: dict[str, Resolved] = {}
        try:
            for mail in mails:
                found[mail] = unsaved[mail] = self._lookup(mail)
                if len(unsaved) >= WRITE_CHUNK:
                    self._store(unsaved)
                    unsaved = {}
        finally:
            self._store(unsaved)  # what was found stays found, even when a lookup failed part way
        return found

    def _lookup(self, mail: str) -> Resolved:
        self.lookups += 1
        try:
            users = self.graph.find_users_by_email(mail)
        except ValueError:
            return Resolved(None, 0, "")  # not an address Graph can be asked about: no one
        # The service matches mail or UPN; keep only exact (case-insensitive) matches, once per user.
        return Resolved.of({u.id.lower(): u.displayName or "" for u in users if mail in _addresses(u)})


def _addresses(user: User) -> Iterator[str]:
    seen = set()
    for value in (user.mail, user.userPrincipalName):
        address = normalise_mail(value)
        if address and address not in seen:
            seen.add(address)
            yield address


def _table() -> Any:
    return EntraUserLink.__table__  # type: ignore[attr-defined]
