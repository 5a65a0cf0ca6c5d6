"""The error boundary: unexpected errors become a short apology with a reference; details go to the log."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mam.errors")


class UserError(Exception):
    """Something the person can fix; the message is shown to them as it is."""


class UsageError(UserError):
    """The command was not understood; the router adds the usage line."""


_ids = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_correlation_id() -> str:
    """A reference to quote to an admin; needs to be unique, not secret (so no os.urandom per call)."""
    return f"{_ids.getrandbits(48):012x}"


def apology(correlation_id: str) -> str:
    return (
        f":warning: Sorry, something went wrong on my side. Nothing was changed by this step. "
        f"If it keeps happening, give your admin this reference: `{correlation_id}`."
    )


def run_guarded(
    fn: Callable[[], Any],
    *,
    tell: Callable[[str], Any],
    correlation_id: str,
    what: str,
) -> Any:
    """Run slow work after an ack; any failure reaches the person as a sentence, never silence."""
    from bot.blocks import escape
    from bot.microsoft.errors import MicrosoftError  # local: keeps bot.errors importable alone

    try:
        return fn()
    except UserError as exc:
        _tell_safely(tell, f":x: {exc}")
    except MicrosoftError as exc:
        log.warning("%s failed [%s]: %s", what, correlation_id, exc)
        _tell_safely(tell, f":x: {escape(str(exc))} (reference `{correlation_id}`)")
    except Exception:
        log.exception("%s failed [%s]", what, correlation_id)
        _tell_safely(tell, apology(correlation_id))
    return None


def _tell_safely(tell: Callable[[str], Any], text: str) -> None:
    try:
        tell(text)
    except Exception:
        log.exception("could not deliver an error message to Slack")
