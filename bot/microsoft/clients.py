"""`build_clients(settings)`: the Graph and Defender clients over one connection pool."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.microsoft.auth import StaticTokenSource, TokenSource, build_token_source
from bot.microsoft.budget import RequestBudget, UnlimitedBudget, default_budget
from bot.microsoft.defender import DefenderClient
from bot.microsoft.errors import DEFENDER, GRAPH, ApiUnavailable
from bot.microsoft.graph import GraphClient
from bot.microsoft.permissions import ALL_ROLES, PermissionRow, check_permissions
from bot.microsoft.transport import (
    BACKGROUND,
    INTERACTIVE,
    WITHIN_ACK,
    AnswerListener,
    Api,
    ApiSession,
    CallProfile,
)
from bot.settings import Settings, SettingsError

POOL_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=60.0)


@dataclass
class MicrosoftClients:
    graph: GraphClient
    defender: DefenderClient
    tokens: TokenSource
    apis: dict[str, Api]
    _http: httpx.Client = field(repr=False)
    _owns_http: bool = field(default=True, repr=False)

    def with_profile(self, profile: CallProfile) -> MicrosoftClients:
        """A view with another call profile; it shares (and must not close) the connections."""
        return MicrosoftClients(
            graph=self.graph.with_profile(profile),
            defender=self.defender.with_profile(profile),
            tokens=self.tokens,
            apis=self.apis,
            _http=self._http,
            _owns_http=False,
        )

    def background(self) -> MicrosoftClients:
        """For the scheduler's sweeps: longer timeouts, and waiting out throttling instead of failing."""
        return self.with_profile(BACKGROUND)

    def interactive(self) -> MicrosoftClients:
        return self.with_profile(INTERACTIVE)

    @contextmanager
    def counting_requests(self) -> Iterator[Callable[[], int]]:
        """Count the HTTP requests this thread sends through the pool (retries included)."""
        hooks = self._http.event_hooks["request"]
        thread = threading.get_ident()
        count = [0]

        def hook(_request: Any) -> None:
            if threading.get_ident() == thread:
                count[0] += 1

        hooks.append(hook)
        try:
            yield lambda: count[0]
        finally:
            hooks.remove(hook)

    def within_ack(self) -> MicrosoftClients:
        """For the rare read that must happen before a Slack ack (options menus): one short try."""
        return self.with_profile(WITHIN_ACK)

    def warm_up(self) -> None:
        """Fetch the tokens now, so the first person in Slack doesn't wait for a sign-in."""
        for api, target in self.apis.items():
            if target.base_url is not None and target.resource is not None:
                self.roles_for(api)

    def roles_for(self, api: str) -> set[str]:
        """Application permissions in `api`'s access token (signs in if needed)."""
        target = self.apis[api]
        if target.base_url is None or target.resource is None:
            raise ApiUnavailable(
                f"{target.label} has no documented host in this cloud; set MAM_DEFENDER_URL to use it",
                api=api,
            )
        token = self.tokens.token(target.resource)
        # No claims to read (the sandbox's static token): the sandbox grants everything.
        return set(ALL_ROLES[api]) if token.roles is None else set(token.roles)

    def granted_roles(self) -> dict[str, set[str]]:
        """API (`graph`, `defender`) -> the roles its token grants; an API this cloud lacks is left out."""
        return {
            api: self.roles_for(api)
            for api, target in self.apis.items()
            if target.base_url is not None and target.resource is not None
        }

    def check_permissions(self) -> list[PermissionRow]:
        return check_permissions(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
            close_tokens = getattr(self.tokens, "close", None)
            if callable(close_tokens):
                close_tokens()

    def __enter__(self) -> MicrosoftClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_clients(
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    budget: RequestBudget | None = None,
    tokens: TokenSource | None = None,
    sign_in_http_client: Any = None,
    profile: CallProfile = INTERACTIVE,
    listeners: Sequence[AnswerListener] = (),
) -> MicrosoftClients:
    """Clients for the settings' cloud. No network until the first call.

    `transport` replaces the network (the in-process sandbox passes `tenant.transport()`, tests an
    `httpx.MockTransport`); `sign_in_http_client` replaces msal's `requests` session; `clock`,
    `sleep` and `rng` make retries and token expiry testable without waiting. `listeners` hear every
    try of every call (`transport.Answer`): the metrics and the audit log of writes.
    """
    if settings.uses_in_process_sandbox and transport is None:
        raise SettingsError(
            "MAM_CLOUD: sandbox runs the tenant in this process; pass its transport to build_clients "
            "(or set MAM_GRAPH_URL / MAM_DEFENDER_URL to a served sandbox)"
        )
    endpoints = settings.endpoints()
    apis = {
        GRAPH: Api(GRAPH, endpoints.graph_url, endpoints.graph_resource),
        DEFENDER: Api(
            DEFENDER,
            endpoints.defender_url,
            # A Defender host set by hand in a cloud with no documented one: its token is for that host.
            endpoints.defender_resource or endpoints.defender_url,
        ),
    }
    api_names = {a.resource: name for name, a in apis.items() if a.resource}
    token_source = tokens or build_token_source(
        settings, http_client=sign_in_http_client, clock=clock, api_names=api_names
    )
    if budget is None:
        # The sandbox has no quotas to protect; a real tenant does.
        budget = UnlimitedBudget() if isinstance(token_source, StaticTokenSource) else default_budget(clock)
    shared = transport or httpx.HTTPTransport(limits=POOL_LIMITS, retries=0)
    http = httpx.Client(transport=shared, timeout=profile.timeout, follow_redirects=False)
    rng = rng or random.Random()

    def session(api: Api) -> ApiSession:
        # Signed download links (report exports) go to `shared` directly: the same pool (and the
        # in-process sandbox), but not `http`'s hooks (`counting_requests`) or its URL logging.
        return ApiSession(api, http, token_source, budget, clock=clock, sleep=sleep, rng=rng, profile=profile,
                          downloads=shared, listeners=listeners)

    return MicrosoftClients(
        graph=GraphClient(session(apis[GRAPH])),
        defender=DefenderClient(session(apis[DEFENDER])),
        tokens=token_source,
        apis=apis,
        _http=http,
    )
