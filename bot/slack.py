"""The Slack Web API client the bot uses, and who the bot is (asked once, at start)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.app import BotIdentity
from bot.settings import Settings, SettingsError

SLACK_TIMEOUT_SECONDS = 10


class SlackCallMeter(RetryHandler):
    """Counts every HTTP try of every Web API call, by method and status (`Metrics.slack_call`); retries nothing.

    slack_sdk asks each retry handler about every answer, a 200 included, and about every connection error;
    first in the list, this one hears them all, including the tries the handlers after it retry. It is the one
    handler the outbox keeps (bot.outbox.send.outbox_client), so the outbox's posts are counted too.
    """

    observes_only = True

    def __init__(self, record: Any) -> None:
        super().__init__(max_retry_count=0)
        self._record = record  # (method, status or None) -> None

    def can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        method = str(request.url).rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        try:
            self._record(method, response.status_code if response is not None else None)
        except Exception:  # a figure is never worth a failed Slack call
            logging.getLogger(__name__).exception("could not count a Slack call")
        return False


def slack_client(settings: Settings, *, base_url: str | None = None, token: str | None = None,
                 meter: SlackCallMeter | None = None) -> WebClient:
    """A WebClient for Slack (or GovSlack, via SLACK_API_URL). Bolt copies it into every request. `meter`
    counts its calls for the metrics."""
    if token is None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return WebClient(
        token=token,
        base_url=base_url or settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[*([meter] if meter else []), ConnectionErrorRetryHandler(max_retry_count=2),
                        RateLimitErrorRetryHandler(max_retry_count=2)],
    )


def fetch_identity(client: WebClient) -> BotIdentity:
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        raise SettingsError(f"SLACK_BOT_TOKEN: Slack refused it ({error}); copy the Bot User OAuth Token "
                            "(xoxb-…) from the app's OAuth & Permissions page") from None
    except OSError as exc:
        raise SettingsError(f"SLACK_API_URL: could not reach {client.base_url} ({exc})") from None
    return BotIdentity(
        team_id=str(resp.get("team_id", "")),
        bot_user_id=str(resp.get("user_id", "")),
        bot_id=str(resp.get("bot_id", "")),
        enterprise_id=resp.get("enterprise_id") or None,
    )
