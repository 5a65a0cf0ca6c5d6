"""`/mam policy list | show` through signed requests, against the sandbox tenant."""

from __future__ import annotations

from bot.local import DEMO_APPROVER, DEMO_END_USER
from bot.microsoft.models import AndroidPolicyDraft, ThreatLevel
from bot.sandbox import SandboxConfig
from bot.sandbox.seed import SEED_POLICY_ID, SEED_POLICY_NAME
from commands.ids import Action
from commands.payloads import PolicyRef
from tests.scenario.conftest import ack_json, block_text
from tests.scenario.slack_requests import action_body
from workflows.resolve import Ambiguous, Found, NotFound, resolve_group


def final_event(bot, url: str):
    """What the ack turned into: the one replacing response on `url`."""
    assert bot.slack.response_url_uses(url) == 1
    return [e for e in bot.slack.events if e.kind == "response" and e.replaced][-1]


def final_blocks(bot, url: str) -> list[dict]:
    return final_event(bot, url).blocks


def click_in(bot, message, action_id: str, value: str) -> str:
    """Press a button in `message` (an ephemeral the bot sent), as Slack would: with its response_url."""
    url = bot.slack.new_response_url(channel=message.channel, user=message.user, original_ts=message.ts,
                                     kind="actions")
    bot.dispatch(action_body(action_id, user=message.user, response_url=url, value=value,
                             channel=message.channel, message_ts=message.ts))
    return url


def add_policy(bot, name: str, level: ThreatLevel = ThreatLevel.LOW) -> str:
    draft = AndroidPolicyDraft(displayName=name, maximumAllowedDeviceThreatLevel=level,
                               packageIds=("com.microsoft.office.outlook",))
    return bot.deps.microsoft.graph.create_android_policy(draft).id


def test_list_acks_at_once_then_flags_the_seeded_policy(bot):
    response, url = bot.command("policy list")
    ack = ack_json(response)
    assert ack["response_type"] == "ephemeral" and "Reading Android app protection policies" in ack["text"]
    text = block_text(final_blocks(bot, url))
    assert f"*{SEED_POLICY_NAME}*" in text
    assert "Max device threat level *not configured*: ignores Defender's signal" in text
    assert "all Microsoft apps (39)" in text and "1 included, 1 excluded" in text
    assert "unmanaged (MAM without enrollment)" in text


def test_bare_policy_means_list_and_approvers_may_read(bot):
    _, url = bot.command("policy", user=DEMO_APPROVER)
    assert SEED_POLICY_NAME in block_text(final_blocks(bot, url))


def test_list_reads_every_page(make_bot):
    bot = make_bot(SandboxConfig(graph_page_size=2))
    for i in range(4):
        add_policy(bot, f"Pilot policy {i}")
    _, url = bot.command("policy list")
    text = block_text(final_blocks(bot, url))
    assert "5 policies" in text and "Pilot policy 3" in text
    assert "1 ignores Defender's signal" in text


def test_show_by_quoted_name_gives_the_whole_picture(bot):
    response, url = bot.command('policy show "android byod app protection"')
    assert "Reading the policy" in ack_json(response)["text"]
    text = block_text(final_blocks(bot, url))
    assert f"*{SEED_POLICY_NAME}*" in text
    assert "Max allowed device threat level is not configured" in text
    assert "*Apps* (39): Outlook, Teams, Edge" in text and "and 24 more" in text
    assert ":busts_in_silhouette: Included: *All Android Users*" in text
    assert ":no_entry_sign: Excluded: *Executives* · 2 members" in text
    assert f"Id `{SEED_POLICY_ID}`" in text


def test_show_by_id_and_by_unquoted_words(bot):
    _, url = bot.command(f"policy show {SEED_POLICY_ID}")
    assert f"*{SEED_POLICY_NAME}*" in block_text(final_blocks(bot, url))
    _, url = bot.command("policy show Android BYOD App Protection")
    assert f"*{SEED_POLICY_NAME}*" in block_text(final_blocks(bot, url))


def test_an_ambiguous_name_offers_a_pick_list_whose_buttons_show_the_policy(bot):
    first = add_policy(bot, "Android Corporate")
    second = add_policy(bot, "Android Corporate", ThreatLevel.MEDIUM)
    _, url = bot.command('policy show "Android Corporate"')
    pick_list = final_event(bot, url)
    blocks = pick_list.blocks
    assert "2 Android app protection policies match *Android Corporate*" in block_text(blocks)
    buttons = [b["accessory"] for b in blocks if b.get("accessory")]
    assert sorted(PolicyRef.decode(b["value"]).id for b in buttons) == sorted([first, second])
    assert {b["action_id"] for b in buttons} == {Action.POLICY_PICK}

    click_url = click_in(bot, pick_list, Action.POLICY_PICK, PolicyRef(id=second).encode())
    picked = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert picked.replaced and picked.ts == pick_list.ts and bot.slack.response_url_uses(click_url) == 1
    text = block_text(picked.blocks)
    assert "*Android Corporate*" in text and "medium" in text and "*Apps* (1): Outlook" in text


def test_a_prefix_shared_by_several_policies_is_ambiguous(bot):
    add_policy(bot, "Android Corporate")
    _, url = bot.command("policy show android")
    assert "2 Android app protection policies match *android*" in block_text(final_blocks(bot, url))


def test_part_of_one_name_shows_it_and_says_so(bot):
    _, url = bot.command("policy show byod")
    text = block_text(final_blocks(bot, url))
    assert f"*{SEED_POLICY_NAME}*" in text and "The only policy whose name matches *byod*" in text


def test_an_unknown_name_suggests_the_closest(bot):
    _, url = bot.command('policy show "Andriod BYOD App Protecton"')
    text = block_text(final_blocks(bot, url))
    assert "No Android app protection policy called *Andriod BYOD App Protecton*" in text
    assert f"Closest: *{SEED_POLICY_NAME}*" in text
    _, url = bot.command("policy show Andriod")  # a typo in the first word of a long name
    assert f"Closest: *{SEED_POLICY_NAME}*" in block_text(final_blocks(bot, url))


def test_the_list_details_button_posts_the_picture_as_a_new_message(bot):
    _, url = bot.command("policy list")
    listing = final_event(bot, url)
    click_in(bot, listing, Action.POLICY_SHOW, SEED_POLICY_ID)
    shown = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert not shown.replaced and shown.ts != listing.ts
    assert "Max allowed device threat level is not configured" in block_text(shown.blocks)


def test_a_button_for_a_deleted_policy_says_it_is_gone(bot):
    policy_id = add_policy(bot, "Short-lived")
    bot.deps.microsoft.graph.delete_android_policy(policy_id)
    bot.click(Action.POLICY_PICK, value=policy_id)
    shown = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "No Android app protection policy called" in shown.text


def test_a_policy_named_like_a_mention_pings_nobody(bot):
    add_policy(bot, "<!channel> policy")
    _, url = bot.command("policy list")
    text = block_text(final_blocks(bot, url))
    assert "<!channel>" not in text and "&lt;!channel&gt; policy" in text
    _, url = bot.command('policy show "<!channel> policy"')
    text = block_text(final_blocks(bot, url))
    assert "<!channel>" not in text and "*&lt;!channel&gt; policy*" in text


def test_unknown_verb_and_missing_name_get_the_usage_line(bot):
    body = ack_json(bot.command("policy frobnicate")[0])
    assert "I don't know `/mam policy frobnicate`; try `list`, `show`, `new`." in body["text"]
    assert "Usage: `/mam policy list [part of a name] | show &lt;name or id&gt;`" in body["text"]
    body = ack_json(bot.command("policy show")[0])
    assert "Which policy?" in body["text"]


def test_a_graph_failure_reaches_the_admin(make_bot):
    bot = make_bot(SandboxConfig(forbid={"/beta/deviceAppManagement/androidManagedAppProtections"}))
    bot.command("policy list")
    said = [e for e in bot.slack.events if e.kind == "response"][-1]
    assert "DeviceManagementApps.Read.All" in said.text and "reference `" in said.text


def test_someone_without_a_role_is_refused(bot):
    body = ack_json(bot.command("policy list", user=DEMO_END_USER)[0])
    assert "Only mam-bot admins and approvers can run `/mam policy`." in body["text"]
    assert [e for e in bot.slack.events if e.kind == "response" and e.replaced] == []
    response, _ = bot.click(Action.POLICY_SHOW, user=DEMO_END_USER, value=SEED_POLICY_ID)
    assert response.status == 200
    assert bot.audit()[-1].outcome == "refused"


# ---- group names, resolved against the sandbox's directory through Graph --------------------------------


def test_group_names_resolve_through_graph_search(bot):
    graph = bot.deps.microsoft.graph
    sales = resolve_group("sales", graph)
    assert isinstance(sales, Found) and sales.item.displayName == "Sales"
    contractors = resolve_group("Contractors", graph)
    assert isinstance(contractors, Ambiguous) and len(contractors.items) == 2
    pilots = resolve_group("MAM", graph)
    assert isinstance(pilots, Ambiguous)
    assert [g.displayName for g in pilots.items] == ["MAM Pilot", "MAM Pilot Users"]
    by_id = resolve_group(sales.item.id.upper(), graph)
    assert isinstance(by_id, Found) and by_id.item.id == sales.item.id
    typo = resolve_group("Contractrs", graph)
    assert isinstance(typo, NotFound) and typo.closest == ("Contractors",)
