"""Builds the one Bolt App every mode runs: Socket Mode, HTTP, the console and the tests.

`process_before_response=True` makes Bolt answer as soon as the listener returns, instead of
polling for the ack every 10 ms on a thread pool (measured on 2 cores with wrk, 50 connections: 89
requests/s and a 591 ms p99 in the default mode against about 2,300 requests/s and 63 ms with this
setting). Listeners therefore only parse, check and ack; anything slow goes to `deps.runner` after
the ack.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot.command_text import read_command
from bot.dedupe import DedupeMiddleware
from bot.deps import Deps
from bot.errors import apology, new_correlation_id
from bot.errors import correlation_id as correlation_id_now
from bot.logs import bind
from bot.marker import SandboxMarkerMiddleware
from bot.metrics import Metrics, surface_of
from bot.registry import COMMAND_KEY, ROUTE_KEY
from bot.roles import Access, allowed
from commands.payloads import recipient_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is in the workspace: from `auth.test` once at start, never per request."""

    team_id: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None


def build_app(deps: Deps, *, client: WebClient, identity: BotIdentity, signing_secret: str = "") -> App:
    token = client.token or ""

    def authorize(**_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=identity.enterprise_id,
            team_id=identity.team_id,
            bot_token=token,
            bot_user_id=identity.bot_user_id,
            bot_id=identity.bot_id,
        )

    # Bolt takes the token from `authorize` on every request; a token on the client too only
    # earns a warning, so the app gets a token-less copy with the same host, timeout and retries.
    app_client = WebClient(base_url=client.base_url, timeout=client.timeout, retry_handlers=client.retry_handlers,
                           headers=client.headers, proxy=client.proxy, ssl=client.ssl)
    app = BotApp(
        metrics=deps.metrics,
        client=app_client,
        signing_secret=signing_secret,
        authorize=authorize,
        process_before_response=True,
        token_verification_enabled=False,
        url_verification_enabled=True,
        ssl_check_enabled=True,
        ignoring_self_events_enabled=True,
    )
    if deps.settings.mam_cloud == "sandbox":  # first, so that refusals are marked too
        app.use(SandboxMarkerMiddleware())
    app.use(DedupeMiddleware(deps))  # a second copy of a request is dropped before it is checked or audited
    app.use(AuthorizationMiddleware(deps))
    app.error(_error_handler)

    from commands import register_all

    register_all(app, deps)
    return app


def freeze_startup_heap() -> None:
    """Take what the process built at start out of the garbage collector's sight, just before it serves.

    The modules, clients, settings and the app itself live as long as the process. Without this, each
    full collection walks all of them (about 140,000 objects for the bot) and stops every thread for
    60-100 ms: under load that pause was the p99 of the ack latency (`benchmarks/ack_latency.py`).
    `gc.freeze()` is what Python's documentation suggests for objects made once at start.
    """
    gc.collect()
    gc.freeze()


class BotApp(App):
    """Bolt's App, with every request's log context and ack time around its whole dispatch.

    `dispatch` binds a fresh correlation id, the Slack user and team (bot.logs) for everything that runs for
    the request, the work handed to the runner after the ack included, so its log lines, its audit rows and
    an apology's reference all carry the same id. It times the dispatch, middleware, listener and ack (with
    `process_before_response` the listener's return is the ack), as the ack latency of its surface. Both
    transports and the console call `dispatch`. (A middleware cannot do either: Bolt's sync App runs its
    middleware one after another, and a middleware's `next()` returns before the listener runs.)
    """

    def __init__(self, *, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        started = time.perf_counter()
        with bind(correlation_id=new_correlation_id(), slack_user=req.context.user_id,
                  slack_team=req.context.team_id or req.context.enterprise_id):
            try:
                return super().dispatch(req)
            finally:
                self._metrics.ack(surface_of(req.body), time.perf_counter() - started)


# Request types that reach listeners without a role check: Events API callbacks (the listeners read
# no privileged input from them) and Slack's own URL check. Every other type needs a rule.
UNCHECKED_TYPES = frozenset({"event_callback", "url_verification", "app_rate_limited"})


class AuthorizationMiddleware(Middleware):
    """The one place roles are checked, for every command, button, modal and options request.

    A command's text is read here, once (`bot.command_text.read_command`), and routed here, once
    (`Registry.route`); both go into the request's context, and the router runs exactly that route.
    So the role checked is the role of the handler that runs, however the words are quoted, escaped,
    cased or spelled in Unicode. Anything without an access rule is refused.

    A `Middleware` subclass rather than a function: Bolt calls `process` directly, where a function
    middleware costs a keyword-argument injection (about 0.1 ms) on every request.
    """

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        deps, body, context = self._deps, req.body, req.context
        user_id = context.user_id or ""
        access: Access | None
        if body.get("command"):
            command = read_command(str(body.get("text") or ""))
            route = deps.registry.route(command)
            context[COMMAND_KEY] = command
            context[ROUTE_KEY] = route
            if route is None:  # a name no subcommand has, or unreadable text: the router answers, nothing runs
                return next()
            name, access, what = route.name, route.access, route.what
        elif body.get("type") in ("block_actions", "view_submission", "view_closed", "block_suggestion"):
            name, access, what = deps.registry.access_for_interaction(body)
        elif body.get("type") in UNCHECKED_TYPES or body.get("ssl_check"):
            return next()  # events (App Home opened, …) and Slack's own checks carry no privileged action
        else:  # anything else (legacy attachments and dialogs, shortcuts, …) has no rule here: refused
            name, access, what = str(body.get("type") or "request"), None, "use this"

        roles = deps.roles.roles_of(user_id)
        if access is not None and access is Access.DM_RECIPIENT:
            ok = _is_dm_recipient(body, user_id)
        else:
            ok = access is not None and allowed(access, roles)
        if ok:
            if not body.get("command") and body.get("type") != "block_suggestion":
                # commands are audited by the router, which knows the outcome; interactions here
                deps.audit.record_soon(actor=user_id, action=f"clicked {name}", outcome="allowed")
            return next()

        reason = refusal_text(deps, what, access)
        deps.audit.record_soon(actor=user_id, action=f"refused {name}", outcome="refused", detail=reason)
        kind = body.get("type") or "command"
        if body.get("command"):
            return context.ack(response_type="ephemeral", text=reason)
        if kind == "block_suggestion":
            return BoltResponse(status=200, body={"options": []})
        if kind == "view_submission":
            return BoltResponse(
                status=200,
                body={
                    "response_action": "update",
                    "view": {
                        "type": "modal",
                        "title": {"type": "plain_text", "text": "Not allowed"},
                        "close": {"type": "plain_text", "text": "Close"},
                        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": reason}}],
                    },
                },
            )
        if body.get("response_url") and context.respond is not None:
            deps.runner.submit(context.respond, text=reason, response_type="ephemeral", replace_original=False)
        return BoltResponse(status=200, body="")


def _is_dm_recipient(body: dict[str, Any], user_id: str) -> bool:
    """A DM button names its recipient in its value (`commands.payloads.NudgeRef.to`); only that user may
    press it. The handler checks again against its own record before it reads or changes anything."""
    action = (body.get("actions") or [{}])[0]
    return bool(user_id) and recipient_of(str(action.get("value", ""))) == user_id


def refusal_text(deps: Deps, what: str, access: Access | None) -> str:
    """Why someone may not: in words, naming the command or what the button does, never an id."""
    if access is None:
        return "This button or form is no longer in use. Run `/mam help` to see what you can do."
    if access is Access.DM_RECIPIENT:
        return "Only the person this message was sent to can use these buttons."
    if access is Access.ADMIN:
        admins = deps.settings.mam_admins
        if not admins:
            return (f"Only mam-bot admins can {what}, and none is configured: "
                    "set MAM_ADMINS to Slack user or user-group ids and restart the bot.")
        who = ", ".join(_mention(p) for p in admins)
        return f"Only mam-bot admins can {what}. Ask one of them: {who}."
    if access is Access.APPROVER:
        return f"Only approvers can {what}, and you are not one of them (MAM_APPROVERS)."
    return (f"Only mam-bot admins and approvers can {what}. "
            "Ask an admin to add you to MAM_ADMINS or MAM_APPROVERS.")


def _mention(principal: str) -> str:
    return f"<!subteam^{principal}>" if principal.startswith("S") else f"<@{principal}>"


def _error_handler(error: Exception, body: dict[str, Any], logger: logging.Logger) -> BoltResponse:
    correlation_id = correlation_id_now()  # the request's (BotApp.dispatch bound it), as its log lines carry
    logger.error("unhandled error [%s] for %s: %r", correlation_id, body.get("type") or body.get("command"),
                 error, exc_info=error)
    if body.get("type") in ("block_suggestion",):
        return BoltResponse(status=200, body={"options": []})
    if body.get("type") == "view_submission":
        return BoltResponse(status=200, body={"response_action": "clear"})
    return BoltResponse(status=200, body={"response_type": "ephemeral", "text": apology(correlation_id)})


def dispatch_socket_mode(app: App, body: dict[str, Any]) -> BoltResponse:
    """Dispatch a payload the way Socket Mode does (no signature): the console and tests use this."""
    return app.dispatch(BoltRequest(body=body, mode="socket_mode"))
