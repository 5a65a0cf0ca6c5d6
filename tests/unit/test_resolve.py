"""Name resolution: exact id, exact name, duplicates, prefixes, typos; groups through Graph's search."""

from __future__ import annotations

import pytest

from bot.microsoft.errors import NotFound as GraphNotFound
from bot.microsoft.models import AndroidPolicy, Group
from workflows.resolve import (
    Ambiguous,
    Found,
    MatchKind,
    NotFound,
    closest_names,
    looks_like_guid,
    resolve,
    resolve_group,
)

BYOD_ID = "T_e655f25b-6797-4dfa-9ecb-3c5831519219"


def policy(name: str, policy_id: str) -> AndroidPolicy:
    return AndroidPolicy(id=policy_id, displayName=name)


POLICIES = [
    policy("Android BYOD App Protection", BYOD_ID),
    policy("Android Corporate", "T_11111111-1111-1111-1111-111111111111"),
    policy("Android Corporate", "T_22222222-2222-2222-2222-222222222222"),
    policy("iOS-like Test", "T_33333333-3333-3333-3333-333333333333"),
]


def test_an_exact_id_is_found_whatever_its_shape_or_case():
    result = resolve(BYOD_ID.upper(), POLICIES)
    assert isinstance(result, Found) and result.item.id == BYOD_ID and result.by is MatchKind.ID
    odd = policy("Odd", "not-a-guid.android")  # ids are never validated as GUIDs
    assert resolve("not-a-guid.android", [odd]) == Found(odd, MatchKind.ID)


def test_a_name_is_found_case_insensitively_and_ignoring_extra_spaces():
    result = resolve("  android   byod app PROTECTION ", POLICIES)
    assert isinstance(result, Found) and result.item.id == BYOD_ID
    assert result.by is MatchKind.NAME and result.exact


def test_two_policies_with_one_name_are_ambiguous():
    result = resolve("android corporate", POLICIES)
    assert isinstance(result, Ambiguous)
    assert [p.id for p in result.items] == [POLICIES[1].id, POLICIES[2].id]
    assert result.query == "android corporate"


def test_a_prefix_of_several_names_is_ambiguous():
    result = resolve("Android", POLICIES)
    assert isinstance(result, Ambiguous) and len(result.items) == 3


def test_a_prefix_of_one_name_is_found_but_not_exact():
    result = resolve("android b", POLICIES)
    assert isinstance(result, Found) and result.item.id == BYOD_ID
    assert result.by is MatchKind.PARTIAL and not result.exact


def test_a_word_inside_one_name_is_found():
    result = resolve("byod", POLICIES)
    assert isinstance(result, Found) and result.item.id == BYOD_ID and result.by is MatchKind.PARTIAL


def test_an_exact_name_wins_over_longer_names_it_starts():
    groups = [Group(id="g1", displayName="Sales EMEA"), Group(id="g2", displayName="Sales"),
              Group(id="g3", displayName="Sales AMER")]
    assert resolve("sales", groups) == Found(groups[1], MatchKind.NAME)


def test_a_typo_offers_the_closest_names():
    result = resolve("Andriod BYOD App Protecton", POLICIES)
    assert isinstance(result, NotFound)
    assert result.closest[0] == "Android BYOD App Protection"
    assert len(result.closest) <= 5


def test_a_typo_in_the_first_word_of_a_long_name_still_finds_it():
    result = resolve("Andriod", POLICIES)
    assert isinstance(result, NotFound)
    assert result.closest[0] in ("Android BYOD App Protection", "Android Corporate")
    assert set(result.closest) == {"Android BYOD App Protection", "Android Corporate"}


def test_closest_names_are_each_named_once_and_at_most_five():
    many = [Group(id=f"g{i}", displayName=f"Sales {i}") for i in range(10)]
    many += [Group(id="dup", displayName="Sales 1")]
    names = closest_names("Sales", many)
    assert len(names) == 5 and len(set(names)) == 5


def test_nothing_alike_means_no_suggestions():
    assert resolve("zzzz", POLICIES) == NotFound("zzzz", ())
    assert resolve("   ", POLICIES) == NotFound("   ")


def test_the_same_item_twice_is_not_ambiguous():
    again = [POLICIES[0], policy("Android BYOD App Protection", BYOD_ID.lower())]
    assert isinstance(resolve("Android BYOD App Protection", again), Found)


@pytest.mark.parametrize(("text", "expected"), [
    ("0b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", True),
    ("{0B5D3F86-6F6E-4B44-9F3E-4B1B0C1F2A3D}", True),
    ("T_0b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", False),
    ("Sales", False),
])
def test_group_ids_are_guids(text, expected):
    assert looks_like_guid(text) is expected


class Directory:
    """Graph's group lookup as GraphClient.find_groups does it: exact, else prefix, else words."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        self.searches: list[str] = []

    def find_groups(self, name: str) -> list[Group]:
        self.searches.append(name)
        wanted = name.lower()
        for match in (lambda n: n == wanted, lambda n: n.startswith(wanted),
                      lambda n: wanted in n.split()):
            found = [g for g in self.groups if match((g.displayName or "").lower())]
            if found:
                return found
        return []

    def get_group(self, group_id: str) -> Group:
        for g in self.groups:
            if g.id.lower() == group_id.lower():
                return g
        raise GraphNotFound(f"group {group_id} not found", status=404)


GROUPS = [
    Group(id="0b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="Sales"),
    Group(id="1b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="Sales EMEA"),
    Group(id="2b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="Contractors"),
    Group(id="3b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="Contractors"),
    Group(id="4b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="MAM Pilot"),
    Group(id="5b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", displayName="MAM Pilot Users"),
]


def test_a_group_guid_is_read_directly_without_a_search():
    directory = Directory(GROUPS)
    result = resolve_group("{" + GROUPS[1].id.upper() + "}", directory)
    assert result == Found(GROUPS[1], MatchKind.ID)
    assert directory.searches == []


def test_a_deleted_group_guid_is_not_found():
    assert resolve_group("9b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d", Directory(GROUPS)) == NotFound(
        "9b5d3f86-6f6e-4b44-9f3e-4b1b0c1f2a3d")


def test_group_names_resolve_through_the_search():
    directory = Directory(GROUPS)
    assert resolve_group("sales", directory) == Found(GROUPS[0], MatchKind.NAME)
    assert isinstance(resolve_group("Contractors", directory), Ambiguous)
    assert isinstance(resolve_group("MAM", directory), Ambiguous)
    assert resolve_group("emea", directory) == Found(GROUPS[1], MatchKind.PARTIAL)


def test_a_group_typo_searches_again_by_its_first_letters_for_suggestions():
    directory = Directory(GROUPS)
    result = resolve_group("Contractrs", directory)
    assert isinstance(result, NotFound) and result.closest == ("Contractors",)
    assert directory.searches == ["Contractrs", "Con"]
