"""Microsoft Defender for Endpoint API: the machines whose risk decides app access."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import ValidationError

from bot.microsoft.errors import NotFound, RequestRejected
from bot.microsoft.models import Machine
from bot.microsoft.permissions import MACHINE_READ
from bot.microsoft.transport import BACKGROUND, INTERACTIVE, ApiSession, CallProfile, Operation

log = logging.getLogger(__name__)

MAX_PAGE = 10_000  # Defender's largest $top
# `osPlatform` is documented as filterable, but the literal for Android is not (microsoft-graph.md §10).
ANDROID_FILTER = "osPlatform eq 'Android'"


@dataclass
class _Refusals:
    """`$filter`s Defender answered 400 to: not asked again by this client or its profile copies."""

    filters: set[str] = field(default_factory=set)


class DefenderClient:
    def __init__(self, session: ApiSession, refusals: _Refusals | None = None) -> None:
        self._s = session
        self._refusals = refusals if refusals is not None else _Refusals()

    def with_profile(self, profile: CallProfile) -> DefenderClient:
        return DefenderClient(self._s.with_profile(profile), self._refusals)

    def background(self) -> DefenderClient:
        return self.with_profile(BACKGROUND)

    def interactive(self) -> DefenderClient:
        return self.with_profile(INTERACTIVE)

    @property
    def available(self) -> bool:
        """False in a cloud with no Defender API host (China, unless MAM_DEFENDER_URL names one)."""
        return self._s.api.base_url is not None and self._s.api.resource is not None

    def iter_machines(self, page_size: int = MAX_PAGE, *, odata_filter: str | None = None) -> Iterator[Machine]:
        """Every machine Defender has seen recently (that `odata_filter` keeps), up to `page_size` a page.

        Follows `@odata.nextLink` when Defender sends one; otherwise a full page means there may
        be more, so the next is asked for with `$skip` (the documented paging parameters). If
        Defender answers the first page's `$filter` with 400, the read starts again without it,
        once, and the filter is not sent again by this client: callers must check what they get.
        """
        top = max(1, min(page_size, MAX_PAGE))
        op = Operation("list devices in Defender for Endpoint", MACHINE_READ)
        if odata_filter is not None and odata_filter in self._refusals.filters:
            log.debug("not sending $filter=%s: Defender refused it before", odata_filter)
            odata_filter = None
        start = self._s.url("/api/machines")
        url: str | None = start
        params: dict[str, str | int] | None = _page_params(top, 0, odata_filter)
        skip = 0
        first = True
        while url:
            try:
                page = self._s.json("GET", url, op=op, params=params) or {}
            except NotFound:
                # Defender answers 404 when it has no recently seen machines at all (or none match).
                if first:
                    return
                raise
            except RequestRejected as exc:
                if not (first and odata_filter is not None and exc.status == 400):
                    raise
                log.warning("Defender refused $filter=%s (400: %s); reading every machine and keeping the "
                            "matching ones here, for as long as this client lives", odata_filter, exc.detail)
                self._refusals.filters.add(odata_filter)
                odata_filter = None
                url, params = start, _page_params(top, 0, None)
                continue
            first = False
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
                params = _page_params(top, skip, odata_filter)
            else:
                url = None

    def iter_android_machines(self, page_size: int = MAX_PAGE) -> Iterator[Machine]:
        """Android machines: Defender is asked for `osPlatform eq 'Android'`, and `osPlatform` is still
        compared case-insensitively here (the literal isn't documented; a refused filter reads all)."""
        return (m for m in self.iter_machines(page_size, odata_filter=ANDROID_FILTER) if m.is_android)


def _page_params(top: int, skip: int, odata_filter: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {} if odata_filter is None else {"$filter": odata_filter}
    params["$top"] = top
    if skip:
        params["$skip"] = skip
    return params
