"""What can go wrong between a bot and Telegram, on demand: injected faults and flood limits.

Faults are queued (deterministic) or random at a rate (reproducible with a seed); each
one names what the client sees. Limits follow Telegram's published broadcasting limits
and answer 429 with a `retry_after` that is enough to get under them again.
"""

from __future__ import annotations

import math
import random as random_module
from collections import Counter
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from typing import get_args

FaultKind = Literal["429", "500", "502", "timeout", "drop", "403_blocked", "400_chat_not_found"]
KINDS: tuple[str, ...] = get_args(FaultKind)


@dataclass
class Fault:
    kind: str
    remaining: int
    methods: frozenset[str] | None  # lower-case method names; None: any
    chat_id: int | None
    retry_after: int

    def matches(self, method: str, chat_id: int | None) -> bool:
        return (self.methods is None or method in self.methods) and (
            self.chat_id is None or self.chat_id == chat_id)


def _check(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"fault kinds must be among {KINDS}, got {kinds}")
    return kinds


def _lower(methods: Iterable[str] | None) -> frozenset[str] | None:
    return frozenset(m.lower() for m in methods) if methods else None


class Faults:
    """Queued faults first (in the order given), then random ones.

    "timeout" stalls the answer for `stall_seconds` (or until the client hangs up) and
    then applies the call, as a slow Telegram does; "drop" closes the connection without
    an answer and applies nothing; the others answer with Telegram's error.
    """

    def __init__(self) -> None:
        self.queued: list[Fault] = []
        self.stall_seconds = 5.0
        self.injected: Counter[str] = Counter()
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._methods: frozenset[str] | None = None
        self._retry_after = 1
        self._rng = random_module.Random(0)

    def fail_next(self, n: int = 1, kind: FaultKind = "500", *,
                  methods: Iterable[str] | None = None, chat_id: int | None = None,
                  retry_after: int = 1) -> None:
        """The next `n` matching calls fail with `kind`."""
        _check([kind])
        self.queued.append(Fault(kind, n, _lower(methods), chat_id, retry_after))

    def random(self, rate: float = 0.1, kinds: Iterable[FaultKind] = ("429", "500", "timeout"),
               *, seed: int = 0, methods: Iterable[str] | None = None,
               retry_after: int = 1) -> None:
        """Each matching call fails with probability `rate`; the same seed, the same faults."""
        self._kinds = _check(kinds)
        self._rate, self._methods = rate, _lower(methods)
        self._retry_after = retry_after
        self._rng = random_module.Random(seed)

    def clear(self) -> None:
        self.queued.clear()
        self._rate = 0.0

    def take(self, method: str, chat_id: int | None) -> Fault | None:
        """The fault for this call (`method` in lower case), if any; consumes it."""
        for fault in self.queued:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.queued.remove(fault)
                self.injected[fault.kind] += 1
                return fault
        if self._rate and (self._methods is None or method in self._methods) \
                and self._rng.random() < self._rate:
            kind = self._rng.choice(self._kinds)
            self.injected[kind] += 1
            return Fault(kind, 0, None, chat_id, self._retry_after)
        return None


class SlidingWindow:
    """At most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._times: deque[float] = deque()

    def wait(self, now: float, weight: int = 1) -> float:
        """Seconds until `weight` more events fit (0 when they fit now)."""
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()
        excess = len(times) + weight - self.limit
        if excess <= 0:
            return 0.0
        if excess > len(times):  # more than the limit at once: it never fits
            return self.window
        return times[excess - 1] + self.window - now

    def add(self, now: float, weight: int = 1) -> None:
        self._times.extend([now] * weight)


class Limits:
    """Telegram's flood limits: overall per second, per group per minute, per private chat
    per second. Groups are negative chat ids."""

    def __init__(self, global_per_second: int, per_group_per_minute: int,
                 per_private_per_second: int) -> None:
        self._global = SlidingWindow(global_per_second, 1.0)
        self._group = (per_group_per_minute, 60.0)
        self._private = (per_private_per_second, 1.0)
        self._chats: dict[int, SlidingWindow] = {}

    def retry_after(self, chat_id: int | None, now: float, weight: int = 1) -> int:
        """0 and the call counted, or the whole seconds to wait before it would be
        accepted; `chat_id` None: it counts toward the overall limit only."""
        windows = [self._global]
        if chat_id is not None:
            chat = self._chats.get(chat_id)
            if chat is None:
                chat = self._chats[chat_id] = SlidingWindow(
                    *(self._group if chat_id < 0 else self._private))
            windows.append(chat)
        wait = max(window.wait(now, weight) for window in windows)
        if wait > 0:
            return max(1, math.ceil(wait))
        for window in windows:
            window.add(now, weight)
        return 0
