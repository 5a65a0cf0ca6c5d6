"""HTTP mode: Bolt at /slack/events plus /healthz, as an ASGI app for uvicorn.

Bolt's sync `dispatch` runs on Starlette's thread pool, never on the event loop, so one slow
request cannot hold up the others; with `process_before_response=True` it returns as soon as the
listener has acked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_bolt import App
from slack_bolt.request import BoltRequest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.store import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # Slack payloads are far smaller; refuse anything that is not Slack


def serve(bolt_app: App, store: Store, *, host: str, port: int) -> None:
    """Serve the app with uvicorn until stopped: `mam-bot serve`, and the benchmark's empty app."""
    import uvicorn

    uvicorn.run(build_asgi(bolt_app, store), host=host, port=port, log_level="warning", access_log=False)


def build_asgi(bolt_app: App, store: Store) -> Starlette:
    async def slack_events(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return Response(status_code=413)
        headers: dict[str, str | Sequence[str]] = {}
        for key, value in request.headers.items():
            headers.setdefault(key, [])
            headers[key] = [*headers[key], value]
        bolt_request = BoltRequest(
            body=raw.decode("utf-8", errors="replace"), query=request.url.query, headers=headers
        )
        bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return Response(
            content=bolt_response.body,
            status_code=bolt_response.status,
            headers={k: v[0] for k, v in bolt_response.headers.items() if v and k.lower() != "content-length"},
        )

    async def healthz(_: Request) -> Response:
        try:
            await run_in_threadpool(store.ping)
        except Exception as exc:
            log.warning("health check: database unreachable: %s", exc)
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": store.dialect})

    return Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
