"""Double clicks, double submits and Events API retries: each surface's idempotency key, handled once.

Slack does not retry slash commands or interactivity payloads, but people click twice and press
Submit twice, and each of those is a request of its own with its own signature. Only the Events API
retries (`X-Slack-Retry-Num`, a fresh timestamp and signature, the same `event_id`). So every surface
gets a key that is the same for the same gesture and different for a new one:

- a slash command: its `trigger_id` (Slack makes one per invocation);
- a button or menu: where it is (the message's ts, or the view's id in a modal or App Home), the
  `action_id` and the `action_ts` (the moment of the click);
- a form: the view's id and hash plus a digest of the values, so the same form sent twice counts once,
  while the form sent again with other values after a `response_action: errors` goes through; when
  the bot answers a form with errors its key is forgotten, so sending it again unchanged works too;
- an event: its `event_id`.

`block_suggestion` (options while typing) and `view_closed` carry no key: they are asked for often and
change nothing. A duplicate is answered with an empty 200 and nothing else happens.

Over HTTP, `bot.http` claims the key together with the signature in one INSERT before Bolt runs, and
tells this middleware so through the request's context; in Socket Mode (and the console and tests)
the middleware claims it itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltResponse
from slack_bolt.context.ack import Ack
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

from bot.store.seen import SeenRequests, seen_key

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

CLAIMED = "mam_idempotency_key"
"""Context key: the idempotency key the HTTP layer already claimed for this request (see bot.http)."""


def idempotency_key(body: dict[str, Any]) -> str | None:
    """The key that makes a second copy of this gesture a duplicate; None for what is never deduped."""
    if body.get("command"):
        trigger_id = body.get("trigger_id")
        return seen_key("command", str(trigger_id)) if trigger_id else None
    kind = body.get("type")
    if kind == "block_actions":
        return _click_key(body)
    if kind == "view_submission":
        return _form_key(body)
    if kind == "event_callback":
        event_id = body.get("event_id")
        return seen_key("event", str(event_id)) if event_id else None
    return None  # block_suggestion, view_closed, url_verification, ssl_check, …


def _click_key(body: dict[str, Any]) -> str | None:
    container = _dict(body.get("container"))
    where = container.get("message_ts") or container.get("view_id") or _dict(body.get("view")).get("id")
    actions = body.get("actions")
    if not where or not isinstance(actions, list) or not actions:
        return None
    parts = [str(where)]
    for action in actions:
        action = _dict(action)
        if not action.get("action_ts"):
            return None
        parts += [str(action.get("action_id", "")), str(action["action_ts"])]
    return seen_key("click", *parts)


def _form_key(body: dict[str, Any]) -> str | None:
    view = _dict(body.get("view"))
    if not view.get("id"):
        return None
    values = _dict(view.get("state")).get("values") or {}
    digest = hashlib.sha256(
        json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    return seen_key("form", str(view["id"]), str(view.get("hash", "")), digest)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def describe(body: dict[str, Any]) -> str:
    """A few words for the log: what kind of request, from whom (no values, no text)."""
    if body.get("command"):
        return f"{body['command']} from {body.get('user_id', '?')}"
    kind = str(body.get("type") or "request")
    user = _dict(body.get("user")).get("id") or _dict(body.get("event")).get("user") or "?"
    if kind == "block_actions":
        actions = body.get("actions")
        action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
        return f"click {action.get('action_id', '?')} from {user}"
    if kind == "view_submission":
        return f"form {_dict(body.get('view')).get('callback_id', '?')} from {user}"
    if kind == "event_callback":
        return f"event {_dict(body.get('event')).get('type', '?')} {body.get('event_id', '')}"
    return kind


class DedupeMiddleware(Middleware):
    """Drops the second copy of a command, click, form or event (any transport); runs for every request."""

    def __init__(self, deps: Deps) -> None:
        self._seen = deps.seen

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        body = req.body
        key: str | None = req.context.get(CLAIMED)
        if key is None:
            key = idempotency_key(body)
            if key is None:
                return next()
            if key not in self._seen.claim(key):
                log.info("duplicate %s ignored", describe(body))
                return BoltResponse(status=200, body="")
        if body.get("type") == "view_submission":
            req.context["ack"] = ForgetOnErrors(req.context.ack, self._seen, key)
        return next()


class ForgetOnErrors(Ack):
    """The listener's `ack` for a form: when it answers `response_action: errors`, the form's key is
    forgotten, so the person can press Submit again even without changing anything."""

    def __init__(self, inner: Ack, seen: SeenRequests, key: str) -> None:
        super().__init__()
        self._inner = inner
        self._seen = seen
        self._key = key

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = self._inner(*args, **kwargs)
        self.response = response
        if _is_errors(response):
            self._seen.forget(self._key)
        return response


def _is_errors(response: BoltResponse) -> bool:
    body = response.body
    if not isinstance(body, str) or '"errors"' not in body:
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("response_action") == "errors"
