"""At most N sends in any W seconds, counted as Telegram counts them: the process's window
of the send budget, and the delivery worker's window per chat."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import time

# Added to every window: Telegram's clock and ours need not agree on the last millisecond.
WINDOW_MARGIN = 0.002



async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or `seconds` pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


class SlidingWindow:
    """At most `limit` sends in any `window` seconds (monotonic time), FIFO among waiters.

    A slot is taken when a send starts and counted until `window` after it reached
    Telegram (see `release`); sends in flight count as "now".
    """

    def __init__(self, limit: int, window: float, *,
                 arrival_allowance: float | None = None) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a window needs a positive limit and length")
        self.limit = limit
        self.window = window + WINDOW_MARGIN
        self.arrival_allowance = arrival_allowance
        self.inflight = 0
        self.blocked_until = 0.0
        self.closed = False
        self._done: collections.deque[float] = collections.deque()  # sorted stamps
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def _prune(self, now: float) -> None:
        while self._done and self._done[0] <= now - self.window:
            self._done.popleft()

    def available_at(self, now: float) -> float:
        """When a send could start (inf: only when an in-flight send finishes)."""
        self._prune(now)
        start = max(now, self.blocked_until)
        used = len(self._done) + self.inflight
        if used < self.limit:
            return start
        if self.inflight >= self.limit:
            return float("inf")
        return max(start, self._done[used - self.limit] + self.window)

    def idle(self, now: float) -> bool:
        self._prune(now)
        return not self.inflight and not self._done and self.blocked_until <= now

    def block(self, until: float) -> None:
        """Flood control: no send starts before `until`."""
        self.blocked_until = max(self.blocked_until, until)

    def close(self) -> None:
        """Make waiting and future `acquire` calls give up (the worker is stopping)."""
        self.closed = True
        self._changed.set()

    def reopen(self) -> None:
        self.closed = False

    async def acquire(self, deadline: float | None = None) -> bool:
        """Take a slot; False if closed or if no slot frees before `deadline`."""
        async with self._lock:
            while True:
                if self.closed:
                    return False
                now = time.monotonic()
                at = self.available_at(now)
                if at <= now:
                    self.inflight += 1
                    return True
                if deadline is not None and deadline < at < float("inf"):
                    return False  # (inf: a send in flight will free a slot soon)
                self._changed.clear()
                wait = min(at - now, 1.0)
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                await wait_event(self._changed, wait)

    def release(self, started: float | None = None, now: float | None = None) -> None:
        """The send that took a slot finished (successfully or not) at `now`.

        It is counted as having reached Telegram when its response came (safe whatever
        the latency), or, with an `arrival_allowance`, at most that long after `started`:
        on a slow link, counting from the response costs a round trip per window.
        """
        self.inflight -= 1
        stamp = time.monotonic() if now is None else now
        if started is not None and self.arrival_allowance is not None:
            stamp = min(stamp, started + self.arrival_allowance)
        bisect.insort(self._done, stamp)
        self._changed.set()

    def cancel(self) -> None:
        """Give a slot back unused."""
        self.inflight -= 1
        self._changed.set()
