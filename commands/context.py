"""What a subcommand handler receives: the parsed command and the Slack handles to answer it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from slack_sdk import WebClient

from bot.blocks import Mrkdwn
from bot.errors import run_guarded

if TYPE_CHECKING:
    from bot.deps import Deps


class Answer(Protocol):
    """Bolt's `ack` for a slash command, with the text Slack parses typed as mrkdwn (`bot.blocks.Mrkdwn`)."""

    def __call__(self, text: Mrkdwn = ..., blocks: Sequence[Any] | None = None, *,
                 response_type: str | None = None) -> Any: ...


class Reply(Protocol):
    """Bolt's `respond` (a `response_url` message), its text typed as mrkdwn."""

    def __call__(self, text: Mrkdwn = ..., blocks: Sequence[Any] | None = None, *, response_type: str | None = None,
                 replace_original: bool | None = None) -> Any: ...


@dataclass
class CommandRequest:
    deps: Deps
    user_id: str
    channel_id: str
    name: str
    args: list[str]
    text: str
    ack: Answer
    respond: Reply
    client: WebClient
    trigger_id: str
    correlation_id: str
    body: dict[str, Any]

    def later(self, fn: Callable[[], Any], what: str) -> None:
        """Run slow work after the ack; a failure is answered ephemerally with a reference."""
        self.deps.runner.submit(
            run_guarded,
            fn,
            tell=lambda text: self.respond(text=text, response_type="ephemeral", replace_original=False),
            correlation_id=self.correlation_id,
            what=what,
        )
