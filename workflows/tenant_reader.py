"""How the threat sweep reads the tenant: Microsoft's APIs, and the registrations index in the database.

`MicrosoftReader` reads everything live (Graph and Defender, the background call profile);
`IndexedReader` takes the registrations from the index that Intune's report export keeps in the
database (workflows.registrations_index) and everything else live, so a warm sweep reads only the
connector, the policies and Defender's Android machines. With no index yet it builds one first:
that sweep is the cold cycle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from bot.microsoft.errors import MicrosoftError, RequestRejected
from bot.microsoft.models import AndroidPolicy, Machine, MtdConnector, User
from bot.store.db import Store
from bot.store.index import IndexRun
from workflows.applicability import Registration
from workflows.index_store import current_run, iter_registrations

if TYPE_CHECKING:
    from bot.microsoft.defender import DefenderClient
    from bot.microsoft.graph import GraphClient

__all__ = ["IndexedReader", "MicrosoftReader", "TenantReader"]

log = logging.getLogger(__name__)

MEMBERS_PAGE = 999  # the directory's largest page


class TenantReader(Protocol):
    def android_policies(self) -> Iterable[AndroidPolicy]: ...

    def android_machines(self) -> Iterable[Machine]: ...

    def registrations(self) -> Iterable[Registration]: ...

    def group_member_ids(self, group_id: str) -> Iterable[str]: ...

    def get_users(self, ids: Iterable[str]) -> dict[str, User]: ...

    def mde_connector(self) -> MtdConnector | None: ...

    def enabled_plans(self, ids: Iterable[str]) -> Mapping[str, frozenset[str]]: ...

    @property
    def source(self) -> str:
        """Where `registrations()` came from: export, paged (the index's source) or graph (read live)."""


class MicrosoftReader:
    """The sweep's reads over the Graph and Defender clients (use their background profile).

    Reads GraphClient has no method for yet go through its session here: registrations with
    `$expand=appliedPolicies`, a group's transitive user members (ids only, 999 a page), and a
    listing of the directory's users.
    """

    def __init__(self, graph: GraphClient, defender: DefenderClient, *, page_size: int = 10_000,
                 applied_policies: bool = True) -> None:
        self.graph = graph
        self.defender = defender
        self.page_size = page_size
        self.applied_policies = applied_policies

    source = "graph"

    def android_policies(self) -> Iterable[AndroidPolicy]:
        return self.graph.iter_android_policies()

    def mde_connector(self) -> MtdConnector | None:
        return self.graph.get_mde_connector()

    def enabled_plans(self, ids: Iterable[str]) -> Mapping[str, frozenset[str]]:
        return self.graph.enabled_plans(ids)

    def android_machines(self) -> Iterable[Machine]:
        return self.defender.iter_android_machines(self.page_size)

    def registrations(self) -> Iterator[Registration]:
        items = self.graph.iter_registration_items(applied_policies=self.applied_policies)
        try:
            first = next(items, None)
        except RequestRejected:
            if not self.applied_policies:
                raise
            # A service that won't expand appliedPolicies here: assignments and groups decide instead.
            log.info("Graph refused $expand=intendedPolicies on registrations; resolving by group membership")
            self.applied_policies = False
            items = self.graph.iter_registration_items()
            first = next(items, None)
        if first is None:
            return
        yield Registration.from_graph(first)
        for item in items:
            yield Registration.from_graph(item)

    def group_member_ids(self, group_id: str) -> Iterator[str]:
        return self.graph.iter_group_member_ids(group_id)

    def get_users(self, ids: Iterable[str]) -> dict[str, User]:
        """Users by id: 20 to a `$batch`, or one listing of the directory when that takes fewer requests.

        Each request inside a batch also counts against the quota: 10,000 blocked users cost 500
        batches and 10,000 units, while listing a 100,000-user directory 999 at a time costs 101.
        """
        wanted = sorted({i.lower() for i in ids if i})
        batches = math.ceil(len(wanted) / 20)
        if batches <= 2 or (pages := self._directory_pages()) is None or pages + 1 >= batches:
            return self.graph.get_users(wanted)
        chosen = set(wanted)
        return {user.id: user for user in self.graph.iter_users() if user.id.lower() in chosen}

    def _directory_pages(self) -> int | None:
        try:
            count = self.graph.count_users()
        except MicrosoftError as exc:
            log.info("couldn't count the directory's users (%s); reading users in batches", exc)
            return None
        return math.ceil(count / MEMBERS_PAGE) if count is not None else None


class IndexedReader:
    """Registrations from the index (built first when there is none); the rest from `live`."""

    def __init__(self, live: MicrosoftReader, store: Store,
                 refresh: Callable[[list[AndroidPolicy]], IndexRun]) -> None:
        self.live = live
        self.store = store
        self.refresh = refresh
        self._policies: list[AndroidPolicy] | None = None
        self.run: IndexRun | None = None
        self.built: IndexRun | None = None  # the index this sweep built (a cold cycle), if it did

    @property
    def source(self) -> str:
        return self.run.source if self.run is not None else ""

    def android_policies(self) -> list[AndroidPolicy]:
        self._policies = list(self.live.android_policies())
        return self._policies

    def android_machines(self) -> Iterable[Machine]:
        return self.live.android_machines()

    def mde_connector(self) -> MtdConnector | None:
        return self.live.mde_connector()

    def enabled_plans(self, ids: Iterable[str]) -> Mapping[str, frozenset[str]]:
        return self.live.enabled_plans(ids)

    def registrations(self) -> Iterator[Registration]:
        self.run = current_run(self.store)
        if self.run is None:
            policies = self._policies if self._policies is not None else self.android_policies()
            self.built = self.refresh(policies)
            if not self.built.ok:
                raise IndexUnavailable(self.built.error or "the registrations index could not be built")
            self.run = self.built
        return iter_registrations(self.store, self.run)

    def group_member_ids(self, group_id: str) -> Iterable[str]:
        return self.live.group_member_ids(group_id)

    def get_users(self, ids: Iterable[str]) -> dict[str, User]:
        return self.live.get_users(ids)


class IndexUnavailable(MicrosoftError):
    """Neither the export nor the paged read could build the first index: the sweep changes nothing."""
