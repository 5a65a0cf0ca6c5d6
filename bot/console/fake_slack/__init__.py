"""A local stand-in for Slack's Web API and response_urls: a real HTTP server on 127.0.0.1.

Bolt builds a fresh `WebClient` per request from `app.client.base_url`, and `respond()` posts to
the payload's `response_url` with urllib, so the fake has to answer HTTP, in-process. It keeps the
workspace state a Slack client would show (messages, ephemerals, modals, App Homes), records every
call, and tells subscribers about everything worth rendering.

`FakeSlack` (server.py) is one class made of three parts: the recording (recording.py: what the
workspace holds and the queries tests use), the Web API methods (web_api.py) and the response_urls
(response_urls.py); model.py has the ids and the types they share. Its Socket Mode server is
bot/console/socket_mode.py.
"""

from bot.console.fake_slack.model import (
    APP_ID,
    AUTO_ACTION_ID_PREFIX,
    BOT_ID,
    BOT_NAME,
    BOT_TOKEN,
    BOT_USER_ID,
    CONSOLE_CHANNEL,
    TEAM_DOMAIN,
    TEAM_ID,
    ApiError,
    FakeMessage,
    FakeUser,
    FakeUsergroup,
    LimitViolation,
    RecordedCall,
    SlackEvent,
    default_users,
)
from bot.console.fake_slack.response_urls import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_SPENT_STATUS,
    RESPONSE_URL_TTL_SECONDS,
)
from bot.console.fake_slack.server import FakeSlack, live_fakes, tracking_fakes

__all__ = [
    "APP_ID",
    "AUTO_ACTION_ID_PREFIX",
    "BOT_ID",
    "BOT_NAME",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "CONSOLE_CHANNEL",
    "RESPONSE_URL_MAX_USES",
    "RESPONSE_URL_SPENT_STATUS",
    "RESPONSE_URL_TTL_SECONDS",
    "TEAM_DOMAIN",
    "TEAM_ID",
    "ApiError",
    "FakeMessage",
    "FakeSlack",
    "FakeUser",
    "FakeUsergroup",
    "LimitViolation",
    "RecordedCall",
    "SlackEvent",
    "default_users",
    "live_fakes",
    "tracking_fakes",
]
