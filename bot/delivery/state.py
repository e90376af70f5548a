"""What a delivery worker holds: its settings, the rows it claimed and their outcomes,
its windows (one per chat, its lane of the send budget) and its counters."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import socket
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from telegram import Bot

from bot.bot_api import quiet_typed_method_advice
from bot.breaker import CircuitBreaker
from bot.ratebudget.budget import SendBudget
from bot.ratebudget.window import SlidingWindow
from core.enums import OutboxState
from storage.db import Database
from storage.models import OutboxMessage
from storage.models import utcnow

Clock = Callable[[], datetime]
SentHook = Callable[[OutboxMessage], Awaitable[None]]


@dataclass
class Job:
    id: int
    dedup_key: str
    chat_id: int
    method: str
    payload: dict[str, Any]
    attempt: int
    reply_to_key: str | None
    target_state: OutboxState | None
    target_message_id: int | None
    deadline: float  # monotonic: give the row back if it cannot start by then


@dataclass
class Outcome:
    job: Job
    kind: str  # sent | retry | failed | unreachable | migrated
    message_id: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    count_attempt: bool = True
    new_chat_id: int | None = None


@dataclass
class DeliveryCounters:
    by_error: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0  # RetryAfter answers (also counted in retried)
    released: int = 0  # claimed but given back unsent (stop, flood pause)


@dataclass
class DeliverySettings:
    """A worker's tunables (the `DeliveryWorker` docstring says what each means)."""

    global_rate: int = 30
    group_per_minute: int = 20
    private_per_second: int = 1
    arrival_allowance: float | None = None
    batch_size: int = 100
    max_inflight: int | None = None
    lease_seconds: float = 15.0
    read_timeout: float | None = None
    max_attempts: int = 10
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    poll_interval: float = 1.0

    @property
    def inflight_limit(self) -> int:
        """Enough to keep the global window busy for about two seconds, no more: claimed
        rows must go out well within their lease."""
        return self.max_inflight or max(2 * self.global_rate, 4)


class WorkerState:
    """The settings and state of a `DeliveryWorker` (whose docstring says what each
    setting means), and the bookkeeping every part of it shares."""

    def __init__(
        self,
        db: Database,
        bot: Bot,
        settings: DeliverySettings | None = None,
        *,
        clock: Clock = utcnow,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        self.db = db
        self.bot = bot
        self.clock = clock
        self.settings = settings = settings or DeliverySettings()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.rng = rng or random.Random()
        self.counters = DeliveryCounters()
        self.breaker = breaker or CircuitBreaker(self.worker_id)
        self.on_sent: list[SentHook] = []
        quiet_typed_method_advice()  # again here: test runners reset warning filters

        self._global = (budget or SendBudget(settings.global_rate,
                                             arrival_allowance=settings.arrival_allowance)
                        ).outbox_lane()
        self._windows: dict[int, SlidingWindow] = {}
        self._floods: collections.deque[tuple[float, int]] = collections.deque()
        self._busy: collections.Counter[int] = collections.Counter()  # chat -> unrecorded rows
        self._held: dict[int, int] = {}  # claimed, unrecorded rows: id -> attempt (the fence)
        self._heartbeat: asyncio.Task[None] | None = None
        self._beat_stop = asyncio.Event()
        self._probing: asyncio.Task[bool] | None = None
        self._calling: set[asyncio.Task[Any]] = set()  # `_deliver`s awaiting an answer
        self._abandoning: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._flusher: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    def _reopen(self) -> None:
        self._global.reopen()
        for window in self._windows.values():
            window.reopen()

    def _close_windows(self) -> None:
        """Sends waiting for a slot give up (their rows go back to the outbox)."""
        self._global.close()
        for window in self._windows.values():
            window.close()

    def _window(self, chat_id: int) -> SlidingWindow:
        window = self._windows.get(chat_id)
        if window is None:
            if chat_id < 0:
                window = SlidingWindow(self.settings.group_per_minute, 60.0,
                                       arrival_allowance=self.settings.arrival_allowance)
            else:
                window = SlidingWindow(self.settings.private_per_second, 1.0,
                                       arrival_allowance=self.settings.arrival_allowance)
            self._windows[chat_id] = window
        return window

    def _finish(self, job: Job) -> None:
        self._held.pop(job.id, None)
        self._busy[job.chat_id] -= 1
        if self._busy[job.chat_id] <= 0:
            del self._busy[job.chat_id]
