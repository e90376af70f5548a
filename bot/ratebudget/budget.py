"""The sends of one process: replies first, the outbox paced behind them, within the
process's window and, on PostgreSQL, the slots booked for the whole bot."""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Callable

from bot.ratebudget.ledger import SlotLedger
from bot.ratebudget.window import SlidingWindow
from bot.ratebudget.window import wait_event
from storage import sendbudget

log = logging.getLogger("bot.ratebudget")  # the package's one logger, as operators know it

# Booked slots (package docstring): used at most SLOT_GRACE late, booked BOOKING_MAX at
# a time, by the outbox only while the next free one is OUTBOX_HORIZON ahead at most.
SLOT_GRACE = 0.01
BOOKING_MAX = 8
OUTBOX_HORIZON = 0.25
# Seconds a process keeps to its own window after the database failed a booking.
LEDGER_PAUSE = 5.0

Clock = Callable[[], float]


class Priority(enum.IntEnum):
    reply = 0  # a handler's call: a person is waiting for it
    outbox = 1  # an outbox row: delivered in order, and may wait


class SendBudget:
    """The sends of one process of the bot: see the package docstring.

    `rate`: the bot's messages a second (DELIVERY_RATE); `ledger`: the slots shared with
    the other processes (None on SQLite); `clock`: monotonic seconds.
    """

    def __init__(self, rate: float, *, ledger: SlotLedger | None = None,
                 arrival_allowance: float | None = None, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.ledger = ledger
        self.clock = clock
        self.window = SlidingWindow(max(int(rate), 1), 1.0, arrival_allowance=arrival_allowance)
        self.interval = 1.0 / rate
        self.blocked_until = 0.0
        self.taken: collections.Counter[Priority] = collections.Counter()
        self.dropped = 0  # booked slots that passed unused (capacity lost, never a burst)
        self._next_outbox = float("-inf")
        self._slots: collections.deque[float] = collections.deque()
        self._book_again_at = 0.0  # the outbox's booking was refused by the horizon
        self._own_until = 0.0  # the ledger failed: keep to the window until then
        self._waiting: collections.Counter[Priority] = collections.Counter()
        self._turns = {priority: asyncio.Lock() for priority in Priority}
        self._booking = asyncio.Lock()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        if self.ledger is not None:
            await self.ledger.start()

    async def stop(self) -> None:
        if self.ledger is not None:
            await self.ledger.stop()

    def outbox_lane(self) -> OutboxLane:
        return OutboxLane(self)

    # ------------------------------------------------------------------ arithmetic

    def _shared(self, now: float) -> bool:
        return self.ledger is not None and now >= self._own_until

    def wait_time(self, priority: Priority, now: float) -> float | None:
        """Seconds until `priority` may start a send (0: now; inf: until something
        changes); None: a slot must be booked first."""
        wait = self.blocked_until - now
        if priority is Priority.outbox:
            if self._waiting[Priority.reply]:
                return float("inf")
            wait = max(wait, self._next_outbox - now)
        wait = max(wait, self.window.available_at(now) - now, 0.0)
        if not self._shared(now):
            return wait
        while self._slots and self._slots[0] < now - SLOT_GRACE:
            self._slots.popleft()  # too late to use: another process may send then
            self.dropped += 1
        if self._slots:
            return max(wait, self._slots[0] - now)
        if wait > 0:
            return wait  # book when ready to send, so the slot is not lost waiting
        if priority is Priority.outbox and self._book_again_at > now:
            return self._book_again_at - now
        return None

    def take(self, priority: Priority, now: float) -> None:
        """Start a send now (after `wait_time` said 0)."""
        self.window.inflight += 1
        self.taken[priority] += 1
        if priority is Priority.outbox:
            # Drift-free: a start that came late (busy event loop) does not push the next
            # one back; after idling, a couple go at once.
            self._next_outbox = max(self._next_outbox, now - 2 * self.interval) + self.interval
        if self._shared(now) and self._slots:
            self._slots.popleft()

    def available_at(self, priority: Priority, now: float) -> float:
        """About when a send of `priority` could start (for rescheduling a row)."""
        wait = self.wait_time(priority, now)
        return now + (self.interval if wait is None or wait == float("inf") else wait)

    def booking_size(self) -> int:
        return max(1, min(BOOKING_MAX, sum(self._waiting.values())))

    # ------------------------------------------------------------------ waiting

    async def acquire(self, priority: Priority, deadline: float | None = None,
                      closed: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a slot and take it; False if `closed()` or none before `deadline`."""
        self._waiting[priority] += 1
        try:
            async with self._turns[priority]:  # first come, first served in a priority
                while True:
                    if closed():
                        return False
                    now = self.clock()
                    wait = self.wait_time(priority, now)
                    if wait is None:
                        await self._book(priority)
                        continue
                    if wait <= 0:
                        self.take(priority, now)
                        return True
                    if deadline is not None and (now >= deadline
                                                 or deadline < now + wait < float("inf")):
                        return False
                    self._changed.clear()
                    pause = min(wait, 1.0)
                    if deadline is not None:
                        pause = min(pause, max(deadline - now, 0.0))
                    await wait_event(self._changed, pause)
        finally:
            self._waiting[priority] -= 1
            self._changed.set()  # the outbox may go once no reply waits

    async def _book(self, priority: Priority) -> None:
        assert self.ledger is not None
        async with self._booking:
            now = self.clock()
            if self.wait_time(priority, now) is not None:
                return  # booked meanwhile for the other priority
            replies = self._waiting[Priority.reply]
            horizon = sendbudget.UNBOUNDED if replies else OUTBOX_HORIZON
            try:
                booked = await self.ledger.book(self.booking_size(), horizon)
            except Exception as error:
                self._own_until = self.clock() + LEDGER_PAUSE
                log.warning("could not book send slots in the database (%s); this process "
                            "keeps to its own limit for %.0f s", type(error).__name__,
                            LEDGER_PAUSE)
                return
            if isinstance(booked, float):
                self._book_again_at = booked
            else:
                self._slots.extend(booked)
            self._changed.set()

    def release(self, started: float | None = None) -> None:
        """A send that took a slot finished (whatever its outcome)."""
        self.window.release(started, self.clock())
        self._changed.set()

    def cancel(self) -> None:
        """A slot taken and not used (its time has passed all the same)."""
        self.window.cancel()
        self._changed.set()

    def block(self, until: float) -> None:
        """Flood control: nothing starts before `until`."""
        self.blocked_until = max(self.blocked_until, until)

    def wake(self) -> None:
        self._changed.set()


class OutboxLane:
    """The delivery worker's way into the budget, shaped like its windows: it can be
    closed (the worker stopping) without closing the budget for handlers."""

    def __init__(self, budget: SendBudget) -> None:
        self.budget = budget
        self.closed = False

    @property
    def blocked_until(self) -> float:
        return self.budget.blocked_until

    def available_at(self, now: float) -> float:
        return self.budget.available_at(Priority.outbox, now)

    async def acquire(self, deadline: float | None = None) -> bool:
        return await self.budget.acquire(Priority.outbox, deadline, lambda: self.closed)

    def release(self, started: float | None = None) -> None:
        self.budget.release(started)

    def cancel(self) -> None:
        self.budget.cancel()

    def block(self, until: float) -> None:
        self.budget.block(until)

    def close(self) -> None:
        self.closed = True
        self.budget.wake()

    def reopen(self) -> None:
        self.closed = False


def bot_id_of(token: str) -> int:
    """The bot's id, the part of its token before the colon (0 if it has none)."""
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else 0


def budget_for(rate: float, database_url: str, token: str) -> SendBudget:
    """The process's budget: shared through the database on PostgreSQL, its own on SQLite."""
    ledger = None
    if not database_url.startswith("sqlite"):
        ledger = SlotLedger(database_url, bot_id_of(token), rate)
    return SendBudget(rate, ledger=ledger)
