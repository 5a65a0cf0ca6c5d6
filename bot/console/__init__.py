"""Console mode: the real Bolt app driven from a terminal against a local fake of Slack."""

from bot.console.fake_slack import (
    APP_ID,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CONSOLE_CHANNEL,
    TEAM_ID,
    FakeMessage,
    FakeSlack,
    FakeUser,
    FakeUsergroup,
    RecordedCall,
    SlackEvent,
    default_users,
)
from bot.console.render import ButtonRef, RenderedMessage, display_mrkdwn, render_message, render_view
from bot.console.session import ConsoleSession, ScriptedInput

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "CONSOLE_CHANNEL",
    "TEAM_ID",
    "ButtonRef",
    "ConsoleSession",
    "FakeMessage",
    "FakeSlack",
    "FakeUser",
    "FakeUsergroup",
    "RecordedCall",
    "RenderedMessage",
    "ScriptedInput",
    "SlackEvent",
    "default_users",
    "display_mrkdwn",
    "render_message",
    "render_view",
]
