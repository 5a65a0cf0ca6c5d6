"""The registrations index: every Android (user, device, app) with the policies that apply, kept in the database.

A refresh asks Intune for its `MAMAppProtectionStatus` report export (one job, polled after 1, 2, 4 and 8 s and
then every 15 s, one zip downloaded outside Graph's quota), joins the report's names to ids (mails → Entra users,
app names → package ids, policy names → the Android policies' ids) and writes the rows under a new generation
(`IndexRun.id`). When the export can't be used (no ReadWrite permission, a failed or late job, a column the join
needs is missing) the refresh reads `managedAppRegistrations` page after page instead (`source` "paged") and says why.

Readers never see half an index: rows go in first, a chunk a statement, and only then is the run marked ok; the
newest ok run is the index. Two replicas may refresh at once, each into its own generation. After run N is marked
ok, only generations older than the ok run before N are deleted, so the index someone is reading now stays until
the next refresh has finished. A refresh that fails leaves the previous index in use.

The export (the ports, policy names → ids, the report's rows) is `workflows.index_export`; the tables and the
reading of the index are `workflows.index_store`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from bot.clock import Clock, utc_clock
from bot.microsoft.errors import MicrosoftError, RequestRejected
from bot.microsoft.models import AndroidPolicy
from bot.store.db import Store
from bot.store.index import EXPORT, PAGED, IndexRun
from workflows.applicability import Registration
from workflows.entra_users import EntraUsers
from workflows.index_export import IndexSource, PolicyNames, Tally, Unusable, from_export
from workflows.index_store import Writer, abandon, current_run, drop_generation, drop_older, start_run, update_run
from workflows.policies import FRIENDLY_APP_NAMES
from workflows.report_csv import device_id, parse_last_sync

__all__ = ["refresh_index"]

log = logging.getLogger(__name__)


# ---- a refresh ---------------------------------------------------------------------------------------------


def refresh_index(
    *,
    source: IndexSource,
    store: Store,
    policies: Iterable[AndroidPolicy],
    now: Clock | datetime,
    worker: str = "",
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 15.0,
    timeout_seconds: float = 900.0,
    monotonic: Callable[[], float] = time.monotonic,
    users: EntraUsers | None = None,
    requests: Callable[[], int] | None = None,
) -> IndexRun:
    """Build a new generation of the index (the export, else the paged read) and make it current when complete.

    `policies`: the tenant's Android app protection policies, read once by the caller. Returns the run, ok or not;
    a Microsoft error never escapes (the run says what failed), a database error does after the run is marked.
    """
    clock = utc_clock(now)
    counted = requests or (lambda: 0)
    before = counted()
    previous = current_run(store)
    run = start_run(store, clock(), worker)
    assert run.id is not None
    generation = run.id
    names = PolicyNames(policies)
    directory = users or EntraUsers(store, source, clock())
    values: dict[str, Any] = {}
    try:
        try:
            tally = from_export(source, store, generation, names, directory, sleep=sleep, poll_seconds=poll_seconds,
                                timeout_seconds=timeout_seconds, monotonic=monotonic)
            _believable(tally, previous)
            values["source"] = EXPORT
        except Unusable as why:
            log.warning("registrations index %s: the export can't be used (%s); reading registrations page by page",
                        generation, why.reason)
            drop_generation(store, generation)
            values.update(fallback_reason=why.reason[:1000], missing_columns=json.dumps(why.missing),
                          export_seconds=why.seconds, source=PAGED)
            tally = _from_pages(source, store, generation)
    except MicrosoftError as exc:
        log.warning("registrations index %s failed: %s", generation, exc)
        drop_generation(store, generation)
        reason = values.get("fallback_reason")
        error = f"the paged read failed too: {exc}" if reason else str(exc)
        values.update(error=error[:2000], finished_at=clock(), requests=counted() - before)
        return update_run(store, generation, values)
    except BaseException as exc:
        abandon(store, generation, exc, clock, counted() - before)
        raise
    values.update(_tally_values(tally, values.get("source") == EXPORT))
    values.update(ok=True, finished_at=clock(), requests=counted() - before)
    done = update_run(store, generation, values)
    drop_older(store, generation)
    log.info("registrations index %s (%s): %d rows read, %d Android, %d kept", generation, done.source, done.rows,
             done.android_rows, done.kept)
    return done


SHRINK_CHECKED_ABOVE = 100  # an export with no rows is always checked; one losing half an index this big too


def _believable(tally: Tally, previous: IndexRun | None) -> None:
    """An export that lost most of the index at once (an empty file, a report cut short) would resolve every
    open block and tell those users they are no longer blocked: the paged read confirms it first."""
    if previous is None or not previous.kept:
        return
    if tally.kept and (previous.kept < SHRINK_CHECKED_ABOVE or tally.kept * 2 >= previous.kept):
        return
    raise Unusable(f"the export has {tally.kept} Android registrations where the index had {previous.kept}: "
                   "confirming with the paged read", seconds=tally.seconds)


def _tally_values(tally: Tally, export: bool) -> dict[str, Any]:
    values: dict[str, Any] = {"rows": tally.rows, "android_rows": tally.android_rows, "kept": tally.kept,
                              "no_device_id": tally.no_device_id, "unknown_users": tally.unknown_users}
    if export:
        values.update(unknown_apps=json.dumps(sorted(tally.unknown_apps.values())),
                      unknown_policies=json.dumps(sorted(tally.unknown_policies.values())),
                      duplicate_policies=json.dumps(sorted(tally.duplicate_policies.values())),
                      missing_columns=json.dumps(tally.missing_columns), export_seconds=tally.seconds)
    return values


# ---- the paged fallback ----------------------------------------------------------------------------------------


def _from_pages(source: IndexSource, store: Store, generation: int) -> Tally:
    """Every registration, a page at a time, with `$expand=appliedPolicies` unless Graph refuses it here."""
    tally = Tally()
    items = source.iter_registration_items(applied_policies=True)
    try:
        first = next(items, None)
    except RequestRejected:
        log.info("Graph refused $expand=intendedPolicies on registrations; the index leaves policies to the sweep")
        items = source.iter_registration_items()
        first = next(items, None)
    if first is None:
        return tally
    with Writer(store, generation) as writer:
        for item in _chain(first, items):
            tally.rows += 1
            registration = Registration.from_graph(item)
            if not registration.android:
                continue
            tally.android_rows += 1
            writer.add(_paged_record(registration, item, tally))
    tally.kept = writer.kept
    return tally


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _clean(text: str | None) -> str:
    """Graph's text as PostgreSQL can keep it (no NUL characters)."""
    return (text or "").replace("\x00", "")


def _paged_record(reg: Registration, item: Mapping[str, Any], tally: Tally) -> dict[str, Any]:
    device = device_id(reg.device_id or "")
    if not device:
        tally.no_device_id += 1
    package = _clean(reg.package).strip().lower()
    last_sync = item.get("lastSyncDateTime")
    return {
        "user_id": _clean(reg.user_id).strip().lower()[:64],
        "email": "",
        "device_id": device[:64],
        "device_name": _clean(reg.device_name)[:256],
        "device_model": _clean(reg.device_model)[:256],
        "manufacturer": _clean(reg.manufacturer)[:256],
        "app_name": FRIENDLY_APP_NAMES.get(package, package)[:256],
        "package": package[:256],
        "policies": None if reg.applied is None else json.dumps(sorted(reg.applied)),
        "enrolled": reg.enrolled,
        "last_sync": parse_last_sync(last_sync) if isinstance(last_sync, str) else None,
    }
