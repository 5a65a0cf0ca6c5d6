"""Serve a sandbox tenant on a real local port, so a client's whole HTTP path is exercised."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bot.sandbox.tenant import SandboxTenant

log = logging.getLogger(__name__)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        address = self.server.server_address
        host = self.headers.get("Host") or f"{address[0]!s}:{address[1]!s}"
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        request = httpx.Request(self.command, f"http://{host}{self.path}", headers=headers, content=body)
        response: httpx.Response | None = None
        try:
            response = self.server.tenant.handle(request)
            status, out_headers = response.status_code, response.headers
            # A download streams from a file in chunks; every other answer is already in memory.
            streamed = not response.is_stream_consumed
            chunks: Iterable[bytes] = response.iter_raw() if streamed else [response.content]
            size = response.headers.get("content-length")
        except Exception:
            log.exception("sandbox failed on %s %s", self.command, self.path)
            status, out_headers = 500, httpx.Headers({"Content-Type": "application/json"})
            content = b'{"error":{"code":"InternalServerError","message":"The sandbox failed."}}'
            size, chunks = str(len(content)), [content]
        self.send_response(status)
        for key, value in out_headers.items():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "date":
                self.send_header(key, value)
        if size is None:
            body = b"".join(chunks)
            size, chunks = str(len(body)), [body]
        self.send_header("Content-Length", size)
        self.end_headers()
        try:
            if self.command != "HEAD":
                for chunk in chunks:
                    self.wfile.write(chunk)
        finally:
            if response is not None:
                response.close()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox %s - " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], tenant: SandboxTenant) -> None:
        super().__init__(address, _Handler)
        self.tenant = tenant


class SandboxServer:
    """A sandbox tenant on a local port, served from a background thread."""

    def __init__(self, tenant: SandboxTenant, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tenant = tenant
        self._server = _Server((host, port), tenant)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mam-sandbox", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL for both Graph and Defender, e.g. http://127.0.0.1:54321."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Block until shutdown() is called or Ctrl-C."""
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.shutdown()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve_sandbox(tenant: SandboxTenant | None = None, host: str = "127.0.0.1",
                  port: int = 0) -> SandboxServer:
    """Start serving `tenant` (a default one when None) on host:port (0 picks a free port)."""
    return SandboxServer(tenant or SandboxTenant(), host, port)
