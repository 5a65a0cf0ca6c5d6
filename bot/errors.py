"""The error boundary: unexpected errors become a short apology with a reference; details go to the log."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.logs import current

if TYPE_CHECKING:
    from bot.mrkdwn import Mrkdwn

log = logging.getLogger("mam.errors")


class UserError(Exception):
    """Something the person can fix, in words for them.

    The message may name outside things (a policy, a group): a plain `str` is escaped when shown,
    a `Mrkdwn` (say with a mention) is shown as it is. `str(error)` is that shown text, so an
    f-string that quotes the error stays inert.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def mrkdwn(self) -> Mrkdwn:
        from bot.mrkdwn import escape

        return escape(self.message)

    def __str__(self) -> str:
        return str.__str__(self.mrkdwn)


class UsageError(UserError):
    """The command was not understood; the router adds the usage line."""


_ids = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_correlation_id() -> str:
    """A reference to quote to an admin; needs to be unique, not secret (so no os.urandom per call)."""
    return f"{_ids.getrandbits(48):012x}"


def correlation_id() -> str:
    """The id bound for this request, change or job, so an apology quotes the id its log lines carry; else a new one."""
    return str(current().get("correlation_id") or new_correlation_id())


def apology(correlation_id: str) -> Mrkdwn:
    from bot.mrkdwn import md

    return md(
        ":warning: Sorry, something went wrong on my side. Nothing was changed by this step. "
        "If it keeps happening, give your admin this reference: `{}`.", correlation_id
    )


def run_guarded(
    fn: Callable[[], Any],
    *,
    tell: Callable[[Mrkdwn], Any],
    correlation_id: str,
    what: str,
) -> Any:
    """Run slow work after an ack; any failure reaches the person as a sentence, never silence."""
    from bot.microsoft.errors import MicrosoftError  # local: keeps bot.errors importable alone
    from bot.mrkdwn import md

    try:
        return fn()
    except UserError as exc:
        _tell_safely(tell, md(":x: {}", exc.mrkdwn))
    except MicrosoftError as exc:
        log.warning("%s failed [%s]: %s", what, correlation_id, exc)
        _tell_safely(tell, md(":x: {} (reference `{}`)", str(exc), correlation_id))
    except Exception:
        log.exception("%s failed [%s]", what, correlation_id)
        _tell_safely(tell, apology(correlation_id))
    return None


def _tell_safely(tell: Callable[[Mrkdwn], Any], text: Mrkdwn) -> None:
    try:
        tell(text)
    except Exception:
        log.exception("could not deliver an error message to Slack")
