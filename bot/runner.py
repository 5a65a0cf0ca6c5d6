"""Where work goes after a Slack ack: a thread pool that tests and the console can wait on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class BackgroundRunner:
    """Runs slow work (Graph, Defender, Slack Web API) after the ack, off the request thread."""

    def __init__(self, max_workers: int = 8, name: str = "mam-work") -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        with self._idle:
            self._pending += 1
        future = self._pool.submit(self._run, fn, *args, **kwargs)
        return future

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("background task %s failed", getattr(fn, "__name__", fn))
            raise
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no submitted work is left (tasks submitted by tasks included)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
