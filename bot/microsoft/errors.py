"""Errors from Microsoft's APIs, worded so an Intune admin knows what to do next.

Every error keeps Graph's (or Defender's) error code, `request-id` and our `client-request-id`:
Microsoft support asks for them, and the admin can find the call in the sign-in / audit logs.
"""

from __future__ import annotations

from typing import Any

GRAPH = "graph"
DEFENDER = "defender"

API_LABELS = {GRAPH: "Microsoft Graph", DEFENDER: "the Microsoft Defender for Endpoint API"}

# Where an admin grants each API's application permissions (and must then grant admin consent).
GRANT_LOCATIONS = {
    GRAPH: (
        "Entra admin center > App registrations > (the bot's app) > API permissions > Add a permission > "
        "Microsoft Graph > Application permissions, then Grant admin consent"
    ),
    DEFENDER: (
        "Entra admin center > App registrations > (the bot's app) > API permissions > Add a permission > "
        "APIs my organization uses > WindowsDefenderATP > Application permissions, then Grant admin consent"
    ),
}


class MicrosoftError(Exception):
    """A call to Graph or Defender failed; `str()` is the admin-facing sentence plus support ids."""

    def __init__(
        self,
        message: str,
        *,
        api: str | None = None,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.api = api
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.client_request_id = client_request_id

    @property
    def support_ids(self) -> str:
        """`code …, request-id …, client-request-id …` for a support ticket ('' when none)."""
        parts = []
        if self.code:
            parts.append(f"error code {self.code}")
        if self.request_id:
            parts.append(f"request-id {self.request_id}")
        if self.client_request_id:
            parts.append(f"client-request-id {self.client_request_id}")
        return ", ".join(parts)

    def __str__(self) -> str:
        ids = self.support_ids
        return f"{self.message} ({ids})" if ids else self.message


class SignInError(MicrosoftError):
    """No access token: the credentials, tenant or app registration are wrong (AADSTS codes)."""


class ApiUnavailable(MicrosoftError):
    """The API has no host in this cloud (Defender in China without MAM_DEFENDER_URL)."""


class PermissionDenied(MicrosoftError):
    """401/403: the app registration lacks an application permission (or its admin consent)."""

    def __init__(self, message: str, *, permission: str, where: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permission = permission
        self.where = where


class NotFound(MicrosoftError):
    """404: the thing asked for does not exist (or is not visible to the app)."""


class Throttled(MicrosoftError):
    """Still throttled (429, or our own budget) after the waiting the caller allows."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailable(MicrosoftError):
    """5xx after retries: Microsoft's side is failing; trying later usually works."""


class ConnectionFailed(MicrosoftError):
    """The request never got an answer (DNS, TCP, TLS, timeout) after retries."""


class RequestRejected(MicrosoftError):
    """Any other 4xx (400 bad request, 409 conflict, …): Graph's own message says why."""


class DownloadFailed(MicrosoftError):
    """A signed download link (an Intune report export) couldn't be read: refused, expired, too big,
    unreachable after retries, or not an https link. The message names the host and path only: the
    link's query string is its credential."""


class IncompleteOperation(MicrosoftError):
    """A multi-call operation stopped part way; `done` says what already happened."""

    def __init__(self, message: str, *, done: str, cause: MicrosoftError) -> None:
        super().__init__(
            message,
            api=cause.api,
            status=cause.status,
            code=cause.code,
            detail=cause.detail,
            request_id=cause.request_id,
            client_request_id=cause.client_request_id,
        )
        self.done = done
        self.cause = cause
