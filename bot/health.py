"""Is this process ready, is it alive, and its metrics: the operator's port (MAM_METRICS_PORT).

`mam-bot run` and `mam-bot serve` both listen on MAM_METRICS_HOST:MAM_METRICS_PORT (default
127.0.0.1:9464; 0 picks a free port, printed at start) for:

- `GET /healthz`, readiness: 200 when the database answers, the process is not stopping and, over Socket
  Mode, its connection to Slack is open; 503 otherwise, with a JSON body saying which. A load balancer or a
  Kubernetes readiness probe sends nothing to a replica that says 503. `serve` answers the same on its Slack
  port too (bot/http.py), for load balancers that can only probe that one.
- `GET /livez`, liveness: 200 while the process can still do its work, whatever the database does (a
  database blip must not restart every pod): the outbox's workers and the scheduler's thread are running.
  503 when one has died, which only a restart mends.
- `GET /metrics`: bot/metrics.py, in Prometheus's text format. Never on the port Slack reaches, which is
  public: the figures name endpoints, jobs and volumes an outsider has no business reading.

The server is the standard library's threading HTTP server on a thread of its own: it needs no event loop,
and a scrape that reads the database never holds up a probe.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.store import Store

log = logging.getLogger(__name__)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Health:
    """The answers of /healthz and /livez, for the operator's port and `serve`'s Slack port alike.

    `stopping` is set once the process has been asked to stop (SIGTERM): not ready from then on. `slack`
    says whether the Slack link is up (Socket Mode's connection; None when the mode has no link to hold).
    `alive` says whether the process's own workers still run (the outbox's, the scheduler's)."""

    def __init__(self, store: Store, *, stopping: threading.Event | None = None,
                 slack: Callable[[], bool] | None = None, alive: Callable[[], bool] | None = None) -> None:
        self._store = store
        self.stopping = stopping or threading.Event()
        self._slack = slack
        self._alive = alive
        self._started = time.monotonic()

    def ready(self) -> tuple[int, dict[str, Any]]:
        if self.stopping.is_set():
            return 503, {"status": "stopping", "database": self._store.dialect}
        try:
            self._store.ping()
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return 503, {"status": "unhealthy", "database": "unreachable"}
        body: dict[str, Any] = {"status": "ok", "database": self._store.dialect}
        if self._slack is not None:
            connected = _safely(self._slack)
            body["slack"] = "connected" if connected else "not connected"
            if not connected:
                body["status"] = "unhealthy"
                return 503, body
        return 200, body

    def live(self) -> tuple[int, dict[str, Any]]:
        uptime = round(time.monotonic() - self._started)
        if self._alive is not None and not _safely(self._alive):
            return 503, {"status": "dead", "reason": "the outbox's workers or the scheduler's thread stopped: "
                         "restart the process", "uptime_seconds": uptime}
        return 200, {"status": "alive", "uptime_seconds": uptime}


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception as exc:
        log.warning("health check failed: %s", type(exc).__name__)
        return False


class OperatorServer:
    """/healthz, /livez and /metrics on a port of their own, served from a thread until `stop`."""

    def __init__(self, health: Health, metrics: Callable[[], bytes], *, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"health": health, "metrics": staticmethod(metrics)})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise OSError(f"MAM_METRICS_PORT: cannot listen on {host}:{port} ({exc.strerror or exc}); set "
                          "MAM_METRICS_PORT to a free port, or 0 to pick one") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mam-operator", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> OperatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    health: Health
    metrics: Callable[[], bytes]
    protocol_version = "HTTP/1.1"
    # a connection that sends nothing for this long is closed: idle clients must not hold threads for good
    timeout = 10

    def do_HEAD(self) -> None:
        """As GET without the body (RFC 9110 9.3.2): some uptime checks probe with HEAD."""
        self._head_only = True
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                self._send(200, self.metrics(), PROMETHEUS_TEXT)
            except Exception:
                log.exception("could not render the metrics")
                self._send(500, b"could not render the metrics; see the bot's log\n", "text/plain")
        elif path in ("/healthz", "/livez"):
            status, body = self.health.ready() if path == "/healthz" else self.health.live()
            self._send(status, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found: /metrics, /healthz or /livez\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("operator port: " + format, *args)
