"""Microsoft Defender for Endpoint API: the machines whose risk decides app access."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydantic import ValidationError

from bot.microsoft.errors import NotFound
from bot.microsoft.models import Machine
from bot.microsoft.permissions import MACHINE_READ
from bot.microsoft.transport import BACKGROUND, INTERACTIVE, ApiSession, CallProfile, Operation

log = logging.getLogger(__name__)

MAX_PAGE = 10_000  # Defender's largest $top


class DefenderClient:
    def __init__(self, session: ApiSession) -> None:
        self._s = session

    def with_profile(self, profile: CallProfile) -> DefenderClient:
        return DefenderClient(self._s.with_profile(profile))

    def background(self) -> DefenderClient:
        return self.with_profile(BACKGROUND)

    def interactive(self) -> DefenderClient:
        return self.with_profile(INTERACTIVE)

    @property
    def available(self) -> bool:
        """False in a cloud with no Defender API host (China, unless MAM_DEFENDER_URL names one)."""
        return self._s.api.base_url is not None and self._s.api.resource is not None

    def iter_machines(self, page_size: int = MAX_PAGE) -> Iterator[Machine]:
        """Every machine Defender has seen recently, a page of up to `page_size` at a time.

        Follows `@odata.nextLink` when Defender sends one; otherwise a full page means there may
        be more, so the next is asked for with `$skip` (the documented paging parameters).
        """
        top = max(1, min(page_size, MAX_PAGE))
        op = Operation("list devices in Defender for Endpoint", MACHINE_READ)
        url: str | None = self._s.url("/api/machines")
        params: dict[str, str | int] | None = {"$top": top}
        skip = 0
        while url:
            try:
                page = self._s.json("GET", url, op=op, params=params) or {}
            except NotFound:
                # Defender answers 404 when it has no recently seen machines at all.
                if skip == 0 and params is not None:
                    return
                raise
            values = [v for v in page.get("value") or [] if isinstance(v, dict)]
            for item in values:
                try:
                    yield Machine.model_validate(item)
                except ValidationError as exc:
                    log.warning("skipping a Defender machine that doesn't parse (id %s): %s",
                                item.get("id"), exc.errors()[0].get("msg"))
            next_link = self._s.check_next_link(page.get("@odata.nextLink"))
            if next_link:
                url, params = next_link, None
            elif params is not None and len(values) >= top:
                skip += top
                params = {"$top": top, "$skip": skip}
            else:
                url = None

    def iter_android_machines(self, page_size: int = MAX_PAGE) -> Iterator[Machine]:
        """Android machines; `osPlatform` is compared case-insensitively (its literal isn't documented)."""
        return (m for m in self.iter_machines(page_size) if m.is_android)
