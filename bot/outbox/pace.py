"""Pacing for Slack's posting limits, shared by the outbox's worker threads in one process
(`bot.outbox.fleet` shares it between replicas)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Pace:
    """How fast the bot may send: one process, or with `FleetPace` all replicas together.

    Slack allows chat.postMessage "one message per second per channel" with short bursts, plus an
    undocumented workspace-wide limit (DMs are one channel each, so a burst of DMs meets only the
    workspace limit). Set the workspace numbers to what the workspace tolerates; 429s are the safety net.
    """

    channel_per_second: float = 1.0
    channel_burst: int = 3
    workspace_per_second: float = 10.0
    workspace_burst: int = 20
    headroom: float = 0.03
    """Aim this fraction under the rates and bursts above. At exactly Slack's rate its bucket sits near
    empty, and a few milliseconds of network jitter earn a 429 whose Retry-After is a whole second."""
    default_retry_after: float = 1.0
    """Used when a 429 carries no Retry-After header."""

    def __post_init__(self) -> None:
        if self.channel_per_second <= 0 or self.workspace_per_second <= 0:
            raise ValueError("Pace rates must be positive")
        if self.channel_burst < 1 or self.workspace_burst < 1:
            raise ValueError("Pace bursts must be at least 1")
        if not 0 <= self.headroom < 1:
            raise ValueError("Pace headroom must be in [0, 1)")

    def _rate(self, rate: float) -> float:
        return rate * (1 - self.headroom)

    def _burst(self, burst: int) -> float:
        return float(max(1, int(burst * (1 - self.headroom))))


# After a workspace-wide 429 the send rate drops to this fraction of what it was (never below
# MIN_FACTOR of the configured rate) and climbs back by RECOVERY per successful send: if Pace is set
# faster than the workspace allows, the outbox settles under the real limit instead of earning a
# whole-second Retry-After again and again.
BACKOFF_FACTOR = 0.75
MIN_FACTOR = 0.25
RECOVERY = 0.001
# Two channel-scoped 429s on different channels this close together mean the limit hit is the workspace's.
ESCALATE_WINDOW = 1.0


Scope = Literal["channel", "workspace"]


class _Bucket:
    """Token bucket that hands out reservations: tokens may go negative (slots promised to callers)."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def _refill(self, now: float) -> None:
        # `last` in the future means paused until then: no refill before it.
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def wait(self, now: float) -> float:
        self._refill(now)
        return max(0.0, self.last - now) + max(0.0, 1.0 - self.tokens) / self.rate

    def reserve(self, now: float) -> float:
        delay = self.wait(now)
        self.tokens -= 1.0
        return delay

    def pause_until(self, until: float, now: float) -> None:
        self._refill(now)
        # Restart with one token, not a refilled burst: Slack's own bucket has only just refilled.
        self.tokens = 1.0
        self.last = max(self.last, until)

    def idle(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst and self.last <= now


class Pacer:
    """The live state behind a `Pace`: per-channel buckets, one workspace bucket, 429 pauses.

    Pauses are kept per kind of send (`post`, `update`, `upload`), because Slack's limits are per method.
    Thread-safe; times come from the injected monotonic clock.
    """

    def __init__(self, pace: Pace, clock: Callable[[], float]) -> None:
        self.pace = pace
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._factor = 1.0
        self._workspace = _Bucket(pace._rate(pace.workspace_per_second), pace._burst(pace.workspace_burst), now)
        self._channels: dict[str, _Bucket] = {}
        self._paused: dict[tuple[str, str | None], float] = {}
        self._last_channel_429: dict[str, tuple[str, float]] = {}

    # --- reading ----------------------------------------------------------------------------------

    def blocked_for(self, kind: str, channel: str | None) -> float:
        """Seconds before a send of `kind` to `channel` could start, ignoring the shared workspace bucket
        except while it is paused (that wait is common to everything, so it never decides what to claim)."""
        with self._lock:
            now = self._clock()
            wait = max(
                self._paused.get((kind, None), now) - now,
                self._paused.get((kind, channel), now) - now if channel else 0.0,
                max(0.0, self._workspace.last - now),
            )
            if channel is not None:
                bucket = self._channels.get(channel)
                if bucket is not None:
                    wait = max(wait, bucket.wait(now))
            return max(0.0, wait)

    def paused_for(self, kind: str, channel: str | None) -> float:
        """Seconds left of a 429 pause that applies to this send (0 when none)."""
        with self._lock:
            now = self._clock()
            until = max(self._paused.get((kind, None), now), self._workspace.last)
            if channel is not None:
                until = max(until, self._paused.get((kind, channel), now))
                bucket = self._channels.get(channel)
                if bucket is not None:
                    until = max(until, bucket.last)
            return max(0.0, until - now)

    @property
    def rate_factor(self) -> float:
        return self._factor

    # --- sending ----------------------------------------------------------------------------------

    def reserve(self, channel: str | None, *, workspace: bool = True) -> float:
        """Take a slot in the workspace bucket (and the channel's, for posts); seconds to wait for it.

        `workspace=False` when a `FleetPace` keeps the workspace's bucket for all replicas: a second
        bucket here, with the same rate but its own phase, would only add waits (and let the spare
        tokens the fleet hands out expire unused); its pauses after a 429 still apply.
        """
        with self._lock:
            now = self._clock()
            delay = self._workspace.reserve(now) if workspace else max(0.0, self._workspace.last - now)
            if channel is not None:
                delay = max(delay, self._channel(channel, now).reserve(now))
            return delay

    def hold(self, scope: Scope, channel: str | None, seconds: float) -> None:
        """Send nothing to `channel` (scope "channel") or at all (scope "workspace") for `seconds`,
        because another replica is using the fleet's share; unlike a 429 the rate stays as it is."""
        with self._lock:
            now = self._clock()
            if scope == "channel" and channel is not None:
                self._channel(channel, now).pause_until(now + seconds, now)
            else:
                self._workspace.pause_until(now + seconds, now)

    def succeeded(self) -> None:
        with self._lock:
            if self._factor < 1.0:
                self._factor = min(1.0, self._factor + RECOVERY)
                self._workspace.rate = self.pace._rate(self.pace.workspace_per_second) * self._factor

    def throttled(self, kind: str, channel: str | None, retry_after: float | None) -> tuple[Scope, float]:
        """Record a 429; returns (scope, seconds) where scope is `channel` or `workspace`.

        Slack does not say which limit a 429 is for. If we have been posting to this channel (its
        bucket is not full) it is taken as the channel's 1/s limit; otherwise, or when a second channel
        is refused within ESCALATE_WINDOW, as the workspace's.
        """
        seconds = retry_after if retry_after is not None and retry_after >= 0 else self.pace.default_retry_after
        with self._lock:
            now = self._clock()
            until = now + seconds
            scope: Scope = "workspace"
            if channel is not None and kind != "update":
                bucket = self._channels.get(channel)
                busy = bucket is not None and bucket.tokens < bucket.burst - 1.0
                previous = self._last_channel_429.get(kind)
                other_channel_recently = (
                    previous is not None and previous[0] != channel and now - previous[1] < ESCALATE_WINDOW
                )
                if busy and not other_channel_recently:
                    scope = "channel"
                self._last_channel_429[kind] = (channel, now)
            if scope == "channel" and channel is not None:
                self._paused[(kind, channel)] = max(until, self._paused.get((kind, channel), 0.0))
                self._channel(channel, now).pause_until(until, now)
            else:
                already_paused = self._paused.get((kind, None), now) > now
                self._paused[(kind, None)] = max(until, self._paused.get((kind, None), 0.0))
                if kind == "post":
                    # The shared bucket is sized for chat.postMessage; a 429 on chat.update (its own
                    # Slack tier) pauses updates only. Calls already in flight when the first 429 came
                    # back are refused for the same excess: slow down once per pause, not once per 429.
                    if not already_paused:
                        self._factor = max(MIN_FACTOR, self._factor * BACKOFF_FACTOR)
                    self._workspace.rate = self.pace._rate(self.pace.workspace_per_second) * self._factor
                    self._workspace.pause_until(until, now)
            return scope, seconds

    def _channel(self, channel: str, now: float) -> _Bucket:
        bucket = self._channels.get(channel)
        if bucket is None:
            if len(self._channels) > 10_000:
                self._prune(now)
            pace = self.pace
            bucket = _Bucket(pace._rate(pace.channel_per_second), pace._burst(pace.channel_burst), now)
            self._channels[channel] = bucket
        return bucket

    def _prune(self, now: float) -> None:
        # A full bucket is the same as no bucket: forget channels that have been quiet.
        for channel in [c for c, b in self._channels.items() if b.idle(now)]:
            del self._channels[channel]
        for key in [k for k, until in self._paused.items() if until <= now]:
            del self._paused[key]
