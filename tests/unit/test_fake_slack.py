"""FakeSlack answers slack_sdk's real HTTP calls the way Slack does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.console.fake_slack import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_SPENT_STATUS,
    RESPONSE_URL_TTL_SECONDS,
    FakeSlack,
    FakeUser,
    SlackEvent,
)

pytestmark = pytest.mark.http

ALEX = FakeUser("UADMIN001", "alex", "Alex Admin", "alex@contoso.example", is_admin=True)
SAM = FakeUser("UAPPROV01", "sam", "Sam Approver", "sam@contoso.example")
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slack(clock: Clock) -> Iterator[FakeSlack]:
    fake = FakeSlack(users=[ALEX, SAM], usergroups={"S0APPROVE": ["UAPPROV01"]}, clock=clock).start()
    yield fake
    fake.stop()


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(base_url=slack.api_url, token="xoxb-test")


def test_post_then_update_a_message(slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0CONSOLE", text="hi", blocks=[SECTION])
    updated = client.chat_update(channel="C0CONSOLE", ts=posted["ts"], text="bye")

    assert posted["channel"] == "C0CONSOLE"
    assert posted["ts"] == "1700000000.000100"
    assert posted["message"]["bot_id"] == "BMAMBOT01"
    assert posted["message"]["blocks"][0]["block_id"]  # Slack fills in block ids
    assert updated["ts"] == posted["ts"]
    [message] = slack.messages("C0CONSOLE")
    assert (message.text, message.edits) == ("bye", 1)
    assert message.blocks[0]["text"]["text"] == "hello"  # blocks left out of chat.update are kept
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update"]
    assert slack.calls[0].args["channel"] == "C0CONSOLE"


def test_ts_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C0CONSOLE", text=str(i))["ts"] for i in range(3)]

    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_a_dm_to_a_user_id_lands_in_their_dm_channel(slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="UAPPROV01", text="please approve")
    opened = client.conversations_open(users="UAPPROV01")

    assert posted["channel"] == "DAPPROV01" == opened["channel"]["id"]
    assert client.conversations_open(users=["UAPPROV01"])["already_open"] is True
    assert [m.text for m in slack.messages("UAPPROV01")] == ["please approve"]
    assert slack.messages("DAPPROV01")[0].visible_to("UAPPROV01")
    assert not slack.messages("DAPPROV01")[0].visible_to("UADMIN001")
    assert slack.events[-1].kind == "dm"


def test_update_errors_like_slack(slack: FakeSlack, client: WebClient) -> None:
    ephemeral = client.chat_postEphemeral(channel="C0CONSOLE", user="UADMIN001", text="psst")

    with pytest.raises(SlackApiError) as unknown:
        client.chat_update(channel="C0CONSOLE", ts="1.000000", text="x")
    with pytest.raises(SlackApiError) as of_ephemeral:
        client.chat_update(channel="C0CONSOLE", ts=ephemeral["message_ts"], text="x")

    assert unknown.value.response["error"] == "message_not_found"
    assert of_ephemeral.value.response["error"] == "message_not_found"
    assert [m.text for m in slack.ephemerals("UADMIN001")] == ["psst"]


def test_form_encoded_bodies_with_json_strings_are_decoded(slack: FakeSlack, client: WebClient) -> None:
    response = client.api_call(
        "chat.postMessage", params={"channel": "C0CONSOLE", "text": "t", "blocks": json.dumps([SECTION])}
    )

    assert response["ok"]
    assert slack.calls_to("chat.postMessage")[0].args["blocks"][0]["type"] == "section"


def test_blocks_slack_would_reject_are_rejected(slack: FakeSlack, client: WebClient) -> None:
    too_long_header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}

    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel="C0CONSOLE", text="t", blocks=[too_long_header])

    assert error.value.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in error.value.response["errors"][0]
    [violation] = slack.take_limit_violations()  # recorded, so a test that did not mean it fails
    assert violation.method == "chat.postMessage" and violation.error == "invalid_blocks"


def test_views_open_needs_a_fresh_trigger_and_update_by_external_id(
    slack: FakeSlack, client: WebClient, clock: Clock
) -> None:
    view = {
        "type": "modal",
        "external_id": "draft-1",
        "title": {"type": "plain_text", "text": "Draft"},
        "blocks": [SECTION],
    }
    trigger = slack.new_trigger_id("UADMIN001")

    opened = client.views_open(trigger_id=trigger, view=view)["view"]
    updated = client.views_update(external_id="draft-1", view={**view, "blocks": []})["view"]

    assert opened["id"].startswith("V") and opened["hash"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert slack.top_modal("UADMIN001")["blocks"] == []  # type: ignore[index]
    assert [e.kind for e in slack.events] == ["view_open", "view_update"]
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        client.views_open(trigger_id=trigger, view=view)
    late = slack.new_trigger_id("UADMIN001")
    clock.now += 3.5
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        client.views_open(trigger_id=late, view=view)
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=view)


def test_views_publish_keeps_one_home_per_user(slack: FakeSlack, client: WebClient) -> None:
    home = {"type": "home", "blocks": [SECTION]}

    first = client.views_publish(user_id="UADMIN001", view=home)["view"]
    second = client.views_publish(user_id="UADMIN001", view={"type": "home", "blocks": []})["view"]

    assert first["id"] == second["id"]
    assert slack.home("UADMIN001")["blocks"] == []  # type: ignore[index]
    assert slack.home("UAPPROV01") is None
    assert [e.kind for e in slack.events] == ["home", "home"]


def test_directory_lookups(client: WebClient) -> None:
    found = client.users_lookupByEmail(email="Sam@Contoso.example")["user"]

    assert (found["id"], found["profile"]["email"]) == ("UAPPROV01", "sam@contoso.example")
    assert client.users_info(user="UADMIN001")["user"]["is_admin"] is True
    assert client.usergroups_users_list(usergroup="S0APPROVE")["users"] == ["UAPPROV01"]
    assert client.usergroups_list(include_users=True)["usergroups"][0]["users"] == ["UAPPROV01"]
    with pytest.raises(SlackApiError, match="users_not_found"):
        client.users_lookupByEmail(email="nobody@contoso.example")
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S0NOPE")


def test_files_upload_v2_round_trip(slack: FakeSlack, client: WebClient) -> None:
    response = client.files_upload_v2(
        channel="C0CONSOLE", content="device,level\npixel,high\n", filename="threats.csv", title="Threats"
    )

    file_id = response["file"]["id"]
    assert slack.uploaded(file_id) == b"device,level\npixel,high\n"
    assert response["file"]["title"] == "Threats"
    assert [e.kind for e in slack.events] == ["file"]


def test_unknown_and_unsupported_methods(client: WebClient) -> None:
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("reactions.teleport")
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        client.apps_connections_open(app_token="xapp-1")


def test_missing_token_is_not_authed(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError, match="not_authed"):
        WebClient(base_url=slack.api_url).auth_test()


def test_response_url_reply_then_replace_original(slack: FakeSlack) -> None:
    url = slack.new_response_url(channel="C0CONSOLE", user="UADMIN001")
    hook = WebhookClient(url)

    first = hook.send(text="working…")
    second = hook.send(text="done", replace_original=True)
    public = hook.send(text="for everyone", response_type="in_channel")

    assert (first.status_code, first.body, second.status_code, public.status_code) == (200, "ok", 200, 200)
    [reply] = slack.ephemerals("UADMIN001")
    assert (reply.text, reply.edits) == ("done", 1)
    assert [m.text for m in slack.messages("C0CONSOLE")] == ["for everyone"]
    assert [(e.kind, e.replaced) for e in slack.events] == [
        ("response", False),
        ("response", True),
        ("response", False),
    ]


def test_response_url_of_a_message_replaces_and_deletes_it(slack: FakeSlack, client: WebClient) -> None:
    card = client.chat_postMessage(channel="C0CONSOLE", text="approve?")
    hook = WebhookClient(slack.new_response_url(original_ts=card["ts"], user="UAPPROV01", kind="actions"))

    hook.send(text="approved", replace_original=True)
    assert [m.text for m in slack.messages("C0CONSOLE")] == ["approved"]
    hook.send(text="", delete_original=True)
    assert slack.messages("C0CONSOLE") == []


def test_response_url_is_good_for_five_uses(slack: FakeSlack) -> None:
    url = slack.new_response_url(user="UADMIN001")
    hook = WebhookClient(url)

    statuses = [hook.send(text=f"update {i}").status_code for i in range(RESPONSE_URL_MAX_USES + 1)]

    assert statuses == [200] * RESPONSE_URL_MAX_USES + [RESPONSE_URL_SPENT_STATUS]
    assert slack.response_url_uses(url) == RESPONSE_URL_MAX_USES
    assert hook.send(text="again").body == "used_url"
    assert [c.status for c in slack.calls_to("response_url")][-1] == RESPONSE_URL_SPENT_STATUS


def test_response_url_expires_after_thirty_minutes(slack: FakeSlack, clock: Clock) -> None:
    hook = WebhookClient(slack.new_response_url(user="UADMIN001"))
    clock.now += RESPONSE_URL_TTL_SECONDS + 1

    response = hook.send(text="too late")

    assert (response.status_code, response.body) == (RESPONSE_URL_SPENT_STATUS, "expired_url")


def test_rate_limit_answers_429_with_retry_after(slack: FakeSlack, client: WebClient, clock: Clock) -> None:
    slack.rate_limit("chat.postMessage", per_second=1.0, burst=2)

    client.chat_postMessage(channel="C0CONSOLE", text="1")
    client.chat_postMessage(channel="C0CONSOLE", text="2")
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C0CONSOLE", text="3")
    clock.now += 1.0
    client.chat_postMessage(channel="C0CONSOLE", text="4")

    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    assert limited.value.response["error"] == "ratelimited"
    assert [m.text for m in slack.messages("C0CONSOLE")] == ["1", "2", "4"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 200, 429, 200]


def test_rate_limit_per_channel_and_off(slack: FakeSlack, client: WebClient) -> None:
    slack.rate_limit("chat.postMessage", per_second=1.0, per_channel=True)

    client.chat_postMessage(channel="C0ONE", text="a")
    client.chat_postMessage(channel="C0TWO", text="b")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0ONE", text="c")
    slack.rate_limit("chat.postMessage", None)
    client.chat_postMessage(channel="C0ONE", text="d")


def test_fail_next_injects_one_failure(slack: FakeSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", "channel_not_found")

    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="C0CONSOLE", text="x")
    assert client.chat_postMessage(channel="C0CONSOLE", text="x")["ok"]


def test_subscribers_see_events_in_order(slack: FakeSlack, client: WebClient) -> None:
    seen: list[SlackEvent] = []
    unsubscribe = slack.subscribe(seen.append)

    posted = client.chat_postMessage(channel="C0CONSOLE", text="a")
    client.chat_update(channel="C0CONSOLE", ts=posted["ts"], text="b")
    unsubscribe()
    client.chat_delete(channel="C0CONSOLE", ts=posted["ts"])

    assert [(e.kind, e.text) for e in seen] == [("post", "a"), ("update", "b")]
    assert slack.events[-1].kind == "delete"
