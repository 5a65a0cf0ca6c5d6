"""`app_manifest.yaml` is the single source of the app's commands, scopes and events."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "app_manifest.yaml"


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run mam-bot from its source checkout")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def http_variant(manifest: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The same app for HTTP mode: every request URL points at /slack/events; Socket Mode off."""
    url = base_url.rstrip("/") + "/slack/events"
    out = copy.deepcopy(manifest)
    for command in out.get("features", {}).get("slash_commands", []):
        command["url"] = url
    settings = out.setdefault("settings", {})
    settings["interactivity"] = {"is_enabled": True, "request_url": url, "message_menu_options_url": url}
    events = settings.setdefault("event_subscriptions", {})
    events["request_url"] = url
    settings["socket_mode_enabled"] = False
    return out


def dump(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)


def manifest_commands(manifest: dict[str, Any]) -> set[str]:
    return {c["command"] for c in manifest.get("features", {}).get("slash_commands", [])}


def manifest_bot_events(manifest: dict[str, Any]) -> set[str]:
    return set(manifest.get("settings", {}).get("event_subscriptions", {}).get("bot_events", []))
