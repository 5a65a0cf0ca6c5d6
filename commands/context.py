"""What every handler receives: one interaction context for commands, buttons, forms, options menus and events.

`Interaction` carries the request and the helpers every handler needs: answer the person (ephemerally
where Slack gave a `response_url`, by DM where it did not), do slow work after the ack, DM someone,
open a form, read a form's values (`form`), and read the typed data a button or form carries (`data`).
`CommandRequest` is the same context for `/mam`, with the parsed command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from slack_sdk import WebClient

from bot.errors import UserError, new_correlation_id, run_guarded
from bot.mrkdwn import Mrkdwn, md
from commands.payloads import Payload

if TYPE_CHECKING:
    from bot.deps import Deps

P = TypeVar("P", bound=Payload)


class Answer(Protocol):
    """Bolt's `ack`, with the text Slack parses typed as mrkdwn (`bot.mrkdwn.Mrkdwn`)."""

    def __call__(self, text: Mrkdwn = ..., blocks: Sequence[Any] | None = None, *,
                 response_type: str | None = None, **kwargs: Any) -> Any: ...


class Reply(Protocol):
    """Bolt's `respond` (a `response_url` message), its text typed as mrkdwn."""

    def __call__(self, text: Mrkdwn = ..., blocks: Sequence[Any] | None = None, *, response_type: str | None = None,
                 replace_original: bool | None = None) -> Any: ...


class Form:
    """One way to read what a person typed and picked in a form (a view's `state.values`).

    Each input block holds one element; it is read by the block's id, whatever the element's
    action id. Missing blocks read as empty, so a form built by an older version still reads.
    """

    def __init__(self, view: dict[str, Any]) -> None:
        self._values: dict[str, dict[str, dict[str, Any]]] = (view.get("state") or {}).get("values") or {}

    def _element(self, block_id: str) -> dict[str, Any]:
        return next(iter((self._values.get(block_id) or {}).values()), {})

    def text(self, block_id: str) -> str:
        """A text input, stripped."""
        return str(self._element(block_id).get("value") or "").strip()

    def choice(self, block_id: str) -> str | None:
        """The value of a single select or radio group; None when nothing is picked."""
        chosen = self._element(block_id).get("selected_option")
        return str(chosen["value"]) if chosen else None

    def options(self, block_id: str) -> list[dict[str, Any]]:
        """The options picked in a multi-select, as Slack sent them (text and value)."""
        return list(self._element(block_id).get("selected_options") or [])

    def choices(self, block_id: str) -> list[str]:
        """The values picked in a multi-select."""
        return [str(o["value"]) for o in self.options(block_id)]


@dataclass
class Interaction:
    """One Slack request, whatever its kind, and what a handler does with it."""

    deps: Deps
    body: dict[str, Any]
    user_id: str
    channel_id: str
    trigger_id: str
    correlation_id: str
    ack: Answer
    respond: Reply | None
    client: WebClient
    context: Mapping[str, Any] = field(default_factory=dict)  # what the middleware put in the request's context

    @property
    def value(self) -> str:
        """The clicked button's value, or the typed query of an options menu."""
        if self.body.get("type") == "block_suggestion":
            return str(self.body.get("value") or "")
        return str((self.body.get("actions") or [{}])[0].get("value") or "")

    @property
    def view(self) -> dict[str, Any]:
        return dict(self.body.get("view") or {})

    @property
    def event(self) -> dict[str, Any]:
        return dict(self.body.get("event") or {})

    def form(self) -> Form:
        return Form(self.view)

    def required_text(self, block_id: str, minimum: int, error: str) -> str | None:
        """A form's text input that must say something: its text, or None after acking `error` beside the input
        (the form stays open with everything as typed)."""
        text = self.form().text(block_id)
        if len(text) >= minimum:
            return text
        self.ack(response_action="errors", errors={block_id: error})
        return None

    def data(self, kind: type[P]) -> P:
        """The typed data the clicked button (its value) or the submitted form (its `private_metadata`)
        carries; UserError, in words, when it is not what this handler expects."""
        raw = str(self.view.get("private_metadata") or "") if self.body.get("type") in (
            "view_submission", "view_closed") else self.value
        return kind.decode(raw)

    def answer(self, text: Mrkdwn, blocks: Sequence[Any] | None = None, *, replace: bool = False) -> None:
        """An ephemeral message to the person, through the request's `response_url`."""
        if self.respond is None:
            raise RuntimeError("this request has no response_url: use tell() or dm()")
        self.respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=replace)

    def dm(self, text: Mrkdwn, user: str = "") -> None:
        """A DM through the outbox (to the person by default): it is sent once, whichever process runs."""
        self.deps.outbox.post(f"note:{new_correlation_id()}", channel=user or self.user_id, text=text)

    def tell(self, text: Mrkdwn) -> None:
        """Say something to the person where they will see it: ephemerally when the request came from a
        message (it has a `response_url`), else by DM (forms, events)."""
        if self.respond is not None and self.has_response_url:
            self.answer(text)
        else:
            self.dm(text)

    @property
    def has_response_url(self) -> bool:
        return bool(self.body.get("response_url") or self.body.get("response_urls"))

    def later(self, fn: Callable[[], Any], what: str, *, tell: Callable[[Mrkdwn], Any] | None = None) -> None:
        """Run slow work after the ack; a failure is told to the person (`tell`, by default `self.tell`) as a
        sentence with a reference."""
        self.deps.runner.submit(run_guarded, fn, tell=tell or self.tell, correlation_id=self.correlation_id,
                                what=what)

    def open_form(self, view: dict[str, Any], what: str) -> None:
        """Open a modal after the ack (the trigger id is valid for 3 seconds)."""
        self.later(lambda: self.client.views_open(trigger_id=self.trigger_id, view=view), what)

    def refuse(self, error: UserError) -> None:
        """Answer a refusal raised before or after the ack."""
        self.tell(md(":x: {}", error.mrkdwn))


@dataclass
class CommandRequest(Interaction):
    """A `/mam` command: the interaction plus the route the authorization middleware found."""

    name: str = ""  # "/mam connectors enable-android"
    args: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def has_response_url(self) -> bool:
        return True
