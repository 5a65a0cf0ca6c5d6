from bot.mrkdwn import escape
from bot.registry import Registry, Subcommand
from bot.roles import Access, Role, allowed
from commands.blocks import section
from commands.roles import RoleDirectory


def test_escape_makes_mentions_inert():
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_section_text_is_capped_at_slack_limit():
    assert len(section("x" * 5000)["text"]["text"]) == 3000


def _noop(_req):
    return None


def test_registry_aliases_and_closest_names():
    reg = Registry()
    reg.add_command(Subcommand("connectors", "/mam connectors", "s", Access.READ, _noop, aliases=("validate",)))
    assert reg.lookup("VALIDATE").name == "connectors"
    assert reg.closest("conectors") == ["connectors"]
    assert len(reg.unique()) == 1


def test_interactions_match_by_prefix_and_unknown_is_none():
    reg = Registry()
    reg.add_interaction("action", "approve", Access.APPROVER, what="approve change requests")
    assert reg.access_for_interaction({"type": "block_actions", "actions": [{"action_id": "approve:42"}]}) == (
        "approve:42", Access.APPROVER, "approve change requests")
    assert reg.access_for_interaction({"type": "block_actions", "actions": [{"action_id": "nope"}]})[1] is None


def test_roles_from_ids_and_usergroups():
    class FakeClient:
        def usergroups_users_list(self, usergroup):
            return {"users": ["U0MEMBER1"]} if usergroup == "S0APPROVE" else {"users": []}

    roles = RoleDirectory(["U0ADMIN01"], ["S0APPROVE"], FakeClient())  # type: ignore[arg-type]
    assert roles.roles_of("U0MEMBER1") == frozenset()  # not loaded yet: no Slack call on the request path
    roles.refresh()
    assert roles.roles_of("U0MEMBER1") == {Role.APPROVER}
    assert roles.roles_of("U0ADMIN01") == {Role.ADMIN}
    assert roles.roles_of("U0NOBODY1") == frozenset()


def test_access_rules():
    assert allowed(Access.READ, frozenset({Role.APPROVER}))
    assert not allowed(Access.READ, frozenset())
    assert not allowed(Access.ADMIN, frozenset({Role.APPROVER}))
    assert allowed(Access.ANYONE, frozenset())
