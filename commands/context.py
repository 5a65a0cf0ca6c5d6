"""What a subcommand handler receives: the parsed command and the Slack handles to answer it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, Respond
from slack_sdk import WebClient

from bot.errors import run_guarded

if TYPE_CHECKING:
    from bot.deps import Deps


@dataclass
class CommandRequest:
    deps: Deps
    user_id: str
    channel_id: str
    name: str
    args: list[str]
    text: str
    ack: Ack
    respond: Respond
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
