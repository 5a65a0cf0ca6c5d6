"""What a failed Slack call means for the message: wait and retry, back off and retry, or give up."""

from __future__ import annotations

import http.client
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.error import URLError

from slack_sdk.errors import SlackApiError, SlackRequestError

log = logging.getLogger(__name__)

Verdict = Literal["throttled", "transient", "permanent"]

# Slack's documented "try again later" answers.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "service_unavailable",
        "internal_error",
        "fatal_error",
        "request_timeout",
        "team_added_to_org",
    }
)

# Answers that will be the same next time. Anything not in either list is treated as permanent too:
# retrying an unknown refusal (a missing scope, a revoked token) only delays the failure report.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "user_not_found",
        "users_not_found",
        "cannot_dm_bot",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "duplicate_channel_not_found",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "invalid_arguments",
        "file_not_found",
    }
)


@dataclass(frozen=True)
class Failure:
    verdict: Verdict
    error: str
    retry_after: float | None = None

    @property
    def detail(self) -> str:
        return self.error[:1000]


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 200) or 200)
        error = str(response.get("error") or f"http_{status}") if _is_mapping(response) else f"http_{status}"
        if status == 429:
            return Failure("throttled", error, _retry_after(response))
        if status >= 500 or error in TRANSIENT_ERRORS:
            return Failure("transient", error)
        return Failure("permanent", error)
    if isinstance(exc, SlackRequestError):
        # files_upload_v2 raises this when the upload URL answers other than 200: worth another try.
        return Failure("transient", f"request: {exc}")
    if isinstance(exc, URLError | OSError | http.client.HTTPException | TimeoutError):
        return Failure("transient", f"connection: {exc}")
    log.error("unexpected error from Slack call", exc_info=exc)
    return Failure("transient", f"{type(exc).__name__}: {exc}")


def _is_mapping(response: object) -> bool:
    data = getattr(response, "data", None)
    return isinstance(data, dict)


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                return None
    return None
