"""The tenant's groups: the hand-written ones, their nesting, and which generated users each holds (by
a modulus rule on the user's index, so membership is computed, never stored)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.sandbox.cast import CAST_GROUPS, DOMAIN
from bot.sandbox.config import CURATED_USERS
from bot.sandbox.ids import stable_hex


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()


class GroupsMixin:
    """World's group half: `_build_groups()` at construction, then lookups and membership."""

    anchor: datetime
    users_generated: int

    @property
    def user_count(self) -> int:
        return CURATED_USERS + self.users_generated

    def _build_groups(self) -> None:
        self.groups: list[dict[str, Any]] = []
        self._group_specs = CAST_GROUPS
        by_key = {spec.key or spec.name: i for i, spec in enumerate(CAST_GROUPS)}
        self._nested: list[list[int]] = [[by_key[k] for k in spec.nested] for spec in CAST_GROUPS]
        self._parents: list[list[int]] = [[] for _ in CAST_GROUPS]
        for parent, children in enumerate(self._nested):
            for child in children:
                self._parents[child].append(parent)
        self._group_lookup: dict[str, int] = {}
        for index, spec in enumerate(CAST_GROUPS):
            nick = "".join(ch for ch in spec.name if ch.isalnum())
            created = self.anchor - timedelta(days=700 - 31 * index, minutes=7 * index)
            self.groups.append({
                "id": spec.id,
                "deletedDateTime": None,
                "classification": None,
                "createdDateTime": f"{created:%Y-%m-%dT%H:%M:%SZ}",
                "description": spec.description,
                "displayName": spec.name,
                "groupTypes": ["Unified"] if spec.unified else [],
                "isAssignableToRole": None,
                "mail": f"{nick}@{DOMAIN}" if spec.unified else None,
                "mailEnabled": spec.unified,
                "mailNickname": nick if spec.unified else stable_hex("nick:" + spec.id, 10),
                "membershipRule": None,
                "membershipRuleProcessingState": None,
                "onPremisesSyncEnabled": None,
                "securityEnabled": not spec.unified,
                "securityIdentifier": "S-1-12-1-" + "-".join(
                    str(int.from_bytes(_digest("sid", spec.id)[i:i + 4], "big")) for i in (0, 4, 8, 12)),
                "visibility": "Private" if spec.unified else None,
            })
            self._group_lookup[spec.id] = index

        self._user_groups: list[set[int]] = [set() for _ in range(CURATED_USERS)]
        for index, spec in enumerate(CAST_GROUPS):
            for user in spec.users:
                self._user_groups[user].add(index)

    def find_group(self, ref: str) -> int | None:
        return self._group_lookup.get(ref.strip().lower())

    def _generated_in(self, group: int, g: int) -> bool:
        rule = self._group_specs[group].generated
        if rule is None:
            return False
        if rule == "all":
            return True
        assert isinstance(rule, tuple)
        return g % rule[0] == rule[1]

    def _generated_count(self, group: int) -> int:
        rule = self._group_specs[group].generated
        if rule is None:
            return 0
        if rule == "all":
            return self.users_generated
        assert isinstance(rule, tuple)
        modulus, rest = rule
        return len(range(rest, self.users_generated, modulus))

    def _generated_member(self, group: int, k: int) -> int:
        rule = self._group_specs[group].generated
        if isinstance(rule, tuple):
            return CURATED_USERS + rule[1] + k * rule[0]
        return CURATED_USERS + k

    def direct_groups_of(self, user: int) -> set[int]:
        if user < CURATED_USERS:
            return set(self._user_groups[user])
        g = user - CURATED_USERS
        return {i for i in range(len(self._group_specs)) if self._generated_in(i, g)}

    def transitive_groups_of(self, user: int) -> list[int]:
        found = self.direct_groups_of(user)
        stack = list(found)
        while stack:
            for parent in self._parents[stack.pop()]:
                if parent not in found:
                    found.add(parent)
                    stack.append(parent)
        return sorted(found)

    def member_refs(self, group: int, transitive: bool) -> MemberList:
        """Members as ("user", index) / ("group", index), cast first, generated users after."""
        parts: list[tuple[str, int]] = []
        generated_groups: list[int] = []
        seen_users: set[int] = set()
        seen_groups: set[int] = set()

        def visit(index: int) -> None:
            spec = self._group_specs[index]
            for user in spec.users:
                if user < self.user_count and user not in seen_users:
                    seen_users.add(user)
                    parts.append(("user", user))
            for child in self._nested[index]:
                if child not in seen_groups:
                    seen_groups.add(child)
                    parts.append(("group", child))
                    if transitive:
                        visit(child)
            if self._generated_count(index):
                generated_groups.append(index)

        visit(group)
        return MemberList(self, parts, generated_groups)


@dataclass
class MemberList:
    """A group's members, cast ones listed first and generated users computed by position."""

    world: GroupsMixin
    cast: list[tuple[str, int]]
    generated_groups: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Generated-user rules within one group tree are disjoint (different remainders), so the
        # transitive list needs no de-duplication beyond the cast part.
        self._counts = [self.world._generated_count(g) for g in self.generated_groups]

    def __len__(self) -> int:
        return len(self.cast) + sum(self._counts)

    def __getitem__(self, position: int) -> tuple[str, int]:
        if position < len(self.cast):
            return self.cast[position]
        position -= len(self.cast)
        for group, count in zip(self.generated_groups, self._counts, strict=True):
            if position < count:
                return ("user", self.world._generated_member(group, position))
            position -= count
        raise IndexError(position)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for position in range(len(self)):
            yield self[position]
