"""The Slack Web API client the bot uses, and who the bot is (asked once, at start)."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.app import BotIdentity
from bot.settings import Settings, SettingsError

SLACK_TIMEOUT_SECONDS = 10


def slack_client(settings: Settings, *, base_url: str | None = None, token: str | None = None) -> WebClient:
    """A WebClient for Slack (or GovSlack, via SLACK_API_URL). Bolt copies it into every request."""
    if token is None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return WebClient(
        token=token,
        base_url=base_url or settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=2)],
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
