import json
from pathlib import Path

import jsonschema
import pytest

from bot.manifest import http_variant, load_manifest, manifest_bot_events, manifest_commands

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "slack-manifest-schema.json"


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_socket_mode_manifest_is_valid(validator):
    manifest = load_manifest()
    validator.validate(manifest)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "url" not in manifest["features"]["slash_commands"][0]


def test_http_variant_is_valid_and_points_everything_at_slack_events(validator):
    manifest = http_variant(load_manifest(), "https://mam.example.com/")
    validator.validate(manifest)
    url = "https://mam.example.com/slack/events"
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["features"]["slash_commands"][0]["url"] == url
    assert manifest["settings"]["interactivity"] == {
        "is_enabled": True, "request_url": url, "message_menu_options_url": url}
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url


def test_required_scopes_are_requested():
    scopes = set(load_manifest()["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "chat:write.public", "im:write", "users:read", "users:read.email",
            "usergroups:read", "files:write"} <= scopes


def test_manifest_lists_commands_and_events():
    manifest = load_manifest()
    assert manifest_commands(manifest) == {"/mam"}
    assert manifest_bot_events(manifest) == {"app_home_opened"}
