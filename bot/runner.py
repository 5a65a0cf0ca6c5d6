"""Where work goes after a Slack ack: a thread pool that tests and the console can wait on."""

from __future__ import annotations

import contextvars
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
        self._shut = False

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` on a pool thread, in a copy of the caller's context: its log lines carry the request's ids."""
        context = contextvars.copy_context()
        with self._idle:
            self._pending += 1
        try:
            return self._pool.submit(context.run, self._run, fn, *args, **kwargs)
        except RuntimeError:  # the pool was shut down: nothing will run it
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            raise

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

    @property
    def pending(self) -> int:
        """Work submitted and not finished (running or waiting for a thread)."""
        with self._idle:
            return self._pending

    def wait_idle(self, timeout: float | None = 30.0) -> bool:
        """Block until no submitted work is left (tasks submitted by tasks included); None: however long."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Let the work submitted so far finish, tasks it submits included, then stop taking more.

        `timeout` None waits for all of it. Otherwise it waits at most `timeout` seconds; what is still
        running then carries on in its thread without being waited for, and what has not started is
        dropped; a warning says how much was left. True when everything finished. A second call returns
        at once.
        """
        if self._shut:
            return self.pending == 0
        finished = self.wait_idle(timeout)
        self._shut = True
        if not finished:
            log.warning("stopping with %d piece%s of background work unfinished", self.pending,
                        "" if self.pending == 1 else "s")
        self._pool.shutdown(wait=finished, cancel_futures=not finished)
        return finished
