"""Typed data in button values and forms' `private_metadata`: one pydantic model per kind, with a version.

A payload is written as short JSON (`{"v":1,"id":42}`) and read back by the handler of the button or
form that carries it (`Interaction.data(Kind)`). A value that is not this kind's, or from a version
this code does not read, is answered in words ("run the command again"), never with a traceback.

Messages stay in Slack for months: cards, DMs and forms posted by earlier versions carried bare
strings (`"42"`, `"U…|case|round|n"`, a JSON object without `v`). Each kind reads its earlier form
too (`legacy`), so an approval card posted before an upgrade still works after it.

Anything with no bound (names, a person's reason) is not put here but saved as a draft
(`bot.store.drafts`), and the payload carries the draft's id: a button's value holds 2,000
characters, a form's `private_metadata` 3,000.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import UserError
from bot.text import whole_number

VALUE_MAX = 2000  # a button's value
METADATA_MAX = 3000  # a view's private_metadata
ROW_ID_MAX = 2**31 - 1  # the database's integer ids


class Payload(BaseModel):
    """The data one kind of button or form carries. Subclasses set `VERSION` and `unreadable`."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # `true` is no number here

    VERSION: ClassVar[int] = 1
    unreadable: ClassVar[str] = "This button or form comes from a message I can't read any more; run the command again."
    limit: ClassVar[int] = VALUE_MAX

    def encode(self) -> str:
        text = json.dumps({"v": self.VERSION, **self.model_dump(mode="json")}, separators=(",", ":"))
        if len(text) > self.limit:  # a bug, not a person's input: unbounded text belongs in a draft
            raise ValueError(f"{type(self).__name__} is {len(text)} characters; Slack keeps {self.limit}")
        return text

    @classmethod
    def decode(cls, raw: str) -> Self:
        data: Any = None
        if raw.startswith("{") and len(raw) <= METADATA_MAX:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                data = None
        try:
            if isinstance(data, dict) and "v" in data:
                version = data.pop("v")
                if type(version) is not int or version != cls.VERSION:
                    raise UserError(cls.unreadable)
                return cls.model_validate(data)
            legacy = cls.legacy(raw, data)
        except ValidationError:
            raise UserError(cls.unreadable) from None
        if legacy is None:
            raise UserError(cls.unreadable)
        return legacy

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:
        """This kind as an earlier version wrote it (`data`: `raw` read as JSON, if it was), or None."""
        return None


class _IdRef(Payload):
    """A button that names one row by its number; earlier versions wrote the bare number."""

    id: int = Field(ge=1, le=ROW_ID_MAX)

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:
        number = whole_number(raw)
        return cls(id=number) if number is not None and 1 <= number <= ROW_ID_MAX else None


class RequestRef(_IdRef):
    """Approve, Reject and Retry on an approval card, and the Reject form: the change request."""

    unreadable: ClassVar[str] = "This button does not name a change request."


class AlertRef(_IdRef):
    """Acknowledge, Snooze and Open in Defender on an alert card: the episode."""

    unreadable: ClassVar[str] = "This button does not name an alert."


class NudgeRef(Payload):
    """Done and Stop on an onboarding DM. `to` is the Slack user it was sent to: only they may press it
    (the authorization middleware reads it with `recipient_of`)."""

    unreadable: ClassVar[str] = "This button does not belong to an onboarding message."
    to: str
    user: str  # the Entra user id of the onboarding case
    round: int = Field(ge=0, le=ROW_ID_MAX)
    n: int = Field(ge=0, le=ROW_ID_MAX)  # which reminder of the round

    @property
    def message_key(self) -> str:
        return f"nudge:{self.user}:r{self.round}:n{self.n}"

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:  # "<slack user>|<entra user>|<round>|<n>"
        parts = raw.split("|")
        numbers = [whole_number(p) for p in parts[2:]] if len(parts) == 4 else []
        if len(numbers) != 2 or numbers[0] is None or numbers[1] is None:
            return None
        return cls(to=parts[0], user=parts[1].lower(), round=numbers[0], n=numbers[1])


class PolicyRef(Payload):
    """Details and Show on a policy list or pick list: the policy."""

    unreadable: ClassVar[str] = "This button does not name a policy."
    id: str

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:  # the policy id
        return cls(id=raw) if raw and len(raw) <= 100 else None


class DraftRef(Payload):
    """A button whose request is kept server-side (`bot.store.drafts`): the draft's id."""

    unreadable: ClassVar[str] = "This button has expired (buttons like it work for a day). Run the command again."
    draft: str

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:  # the draft id
        return cls(draft=raw) if raw.startswith("d_") else None


class ChangeDraft(Payload):
    """The justification form: which change it files when the reason is given."""

    unreadable: ClassVar[str] = "This form comes from an older message; run the command again."
    limit: ClassVar[int] = METADATA_MAX
    kind: str
    change: dict[str, Any]
    channel: str = ""

    @classmethod
    def legacy(cls, raw: str, data: Any) -> Self | None:  # the same fields, with no version
        return cls.model_validate(data) if isinstance(data, dict) else None


def recipient_of(value: str) -> str:
    """Who a DM's button was sent to, read from its value ("" when it names nobody)."""
    try:
        return NudgeRef.decode(value).to
    except UserError:
        return ""
