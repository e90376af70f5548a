"""One send budget per bot: replies, edits, button answers and outbox rows share Telegram's rate.

Telegram allows a bot about 30 messages a second, whatever they are and whichever
process sends them. The outbox alone can use all of it (a notice to hundreds of duty
rooms), and replies sent beside it used to get 429 and were lost: during a 310-room
notice, 13 of 20 officers' lookups. So every message-making Bot API call of a process
first takes a slot from its `SendBudget` (DELIVERY_RATE: the bot's messages a second,
all processes together):

- handlers' calls through `BudgetRateLimiter`, PTB's rate-limiter hook: sendMessage,
  editMessageText, answerCallbackQuery and the like (`budgeted`), not getUpdates, getMe
  or setMyCommands;
- outbox rows through an `OutboxLane` (bot/delivery.py), where a row that cannot
  start in time is given back to the outbox.

Replies first: a reply never waits behind an outbox row. While one waits, the outbox
takes no slot; otherwise the outbox takes all there is. Setting a share aside for
replies (say a fifth while replies flow) would lose it whenever fewer replies come, and
a 1,000-room notice would take that much longer; yielding gives replies what they need
when they need it and the outbox the rest.

In a process, at most DELIVERY_RATE sends start in any second, each counted from its
start until a second after its answer (`SlidingWindow`: Telegram saw it somewhere in
between, so Telegram never counts more, whatever the latency). Outbox rows are also
paced 1/rate apart: a burst queues in the connection pool and lengthens every round
trip, and so every window.

Across processes (PostgreSQL, `SlotLedger`): every send also needs a start time booked
in the database (storage/sendbudget.py), spaced so the bot as a whole starts at most
(1 − MARGIN) × DELIVERY_RATE a second. Points that far apart put at most
ceil((1 + j)(1 − MARGIN) × rate) in any second when each may arrive up to j seconds
late, so the 3% margin absorbs j ≤ 31 ms: a slot is used at most SLOT_GRACE late (later,
it is dropped and another booked), the rest is left for the network. (A bigger margin
costs every broadcast as much: 5% made a 1,000-room notice 5% slower.) A process books
up to BOOKING_MAX slots at once for whoever waits (replies take the earliest); the
outbox books only while the next free slot is at most OUTBOX_HORIZON ahead, so a reply
in any process waits about that plus one booking of each busy process. When the
database does not answer, a process keeps to its own window for LEDGER_PAUSE seconds
(with a warning): replies still go out, the outbox cannot claim rows then anyway.
SQLite runs one process: its window is the whole budget.

A reply answered 429 all the same waits `retry_after` and is sent again (at most
REPLY_RETRIES times, for waits up to REPLY_RETRY_MAX_WAIT seconds) instead of being
dropped; an outbox row is rescheduled by the worker.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import contextvars
import enum
import logging
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from telegram._utils.types import JSONDict
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from storage import sendbudget
from storage.db import postgres_engine_arguments

log = logging.getLogger(__name__)

# Added to every window: Telegram's clock and ours need not agree on the last millisecond.
WINDOW_MARGIN = 0.002
# Shared budget: slots are spaced for this much less than the rate (see the docstring).
MARGIN = 0.03
SLOT_GRACE = 0.01
BOOKING_MAX = 8
OUTBOX_HORIZON = 0.25
# Seconds a process keeps to its own window after the database failed a booking.
LEDGER_PAUSE = 5.0
LEDGER_TIMEOUT = 1.0
REPLY_RETRIES = 2
REPLY_RETRY_MAX_WAIT = 10.0
# Bot API methods that are not messages yet make one or answer a person.
ANSWERS = frozenset({"answerCallbackQuery", "answerInlineQuery", "stopPoll"})

Clock = Callable[[], float]


def budgeted(method: str) -> bool:
    """Whether a Bot API call takes a slot: what makes, changes or answers a message."""
    if method in ANSWERS:
        return True
    return method.startswith(("send", "copy", "forward", "edit")) and method != "sendChatAction"


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # int vs timedelta deprecation, either is fine here
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


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


class Priority(enum.IntEnum):
    reply = 0  # a handler's call: a person is waiting for it
    outbox = 1  # an outbox row: delivered in order, and may wait


class SlotLedger:
    """Send start times booked in PostgreSQL for every process of one bot
    (storage/sendbudget.py), turned into this process's monotonic time."""

    def __init__(self, database_url: str, bot_id: int, rate: float) -> None:
        self.database_url = database_url
        self.bot_id = bot_id
        self.spacing = 1.0 / (rate * (1.0 - MARGIN))
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        # A connection of its own (bookings go one at a time), as the scheduler's lease
        # has: a booking never waits behind handlers, and gives up soon when the server
        # is gone. Each booking is one short transaction (PgBouncer: storage/db.py).
        url, pooler_args = postgres_engine_arguments(self.database_url)
        self._engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_pre_ping=True, pool_timeout=LEDGER_TIMEOUT,
            connect_args={"timeout": LEDGER_TIMEOUT, "command_timeout": LEDGER_TIMEOUT,
                          "server_settings": {"application_name": "liaison-desk send budget"},
                          **pooler_args},
        )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def book(self, count: int, horizon: float) -> list[float] | float:
        """`count` slots (monotonic start times), or, refused by the horizon, the
        monotonic time to ask again."""
        if self._engine is None:
            raise RuntimeError("the send ledger is not started")
        async with asyncio.timeout(LEDGER_TIMEOUT), self._engine.begin() as connection:
            sent = time.monotonic()  # the connection is ready: only the statement is timed
            booking = await sendbudget.book(connection, self.bot_id, count, self.spacing,
                                            horizon)
            received = time.monotonic()
        return local_slots(booking, sent, received, self.spacing)


def local_slots(booking: sendbudget.Booking, sent: float, received: float,
                spacing: float) -> list[float] | float:
    """A booking in this process's monotonic time. The server read its clock between
    `sent` and `received`: the middle is the best guess, off by at most half the round
    trip (a fraction of a millisecond next to the database)."""
    middle = (sent + received) / 2
    if not booking.count:
        return received + booking.retry_in
    offset = booking.first - booking.server_now
    return [middle + offset + k * spacing for k in range(booking.count)]


class SendBudget:
    """The sends of one process of the bot: see the module docstring.

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


_SLOT_TAKEN: contextvars.ContextVar[bool] = contextvars.ContextVar("slot_taken", default=False)


@contextlib.contextmanager
def slot_taken() -> Iterator[None]:
    """The calls made inside already hold a slot (the worker took it through its lane):
    the rate limiter lets them through as they are."""
    token = _SLOT_TAKEN.set(True)
    try:
        yield
    finally:
        _SLOT_TAKEN.reset(token)


class BudgetRateLimiter(BaseRateLimiter[None]):
    """PTB's rate-limiter hook over a `SendBudget`: every budgeted call of the bot takes a
    reply slot; one answered 429 is sent again after `retry_after` (module docstring)."""

    def __init__(self, budget: SendBudget, *, retries: int = REPLY_RETRIES,
                 max_wait: float = REPLY_RETRY_MAX_WAIT) -> None:
        self.budget = budget
        self.retries = retries
        self.max_wait = max_wait

    async def initialize(self) -> None:
        await self.budget.start()

    async def shutdown(self) -> None:
        await self.budget.stop()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | JSONDict | list[JSONDict]:
        if _SLOT_TAKEN.get() or not budgeted(endpoint):
            return await callback(*args, **kwargs)
        retried = 0
        while True:
            await self.budget.acquire(Priority.reply)
            started = self.budget.clock()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                if retried >= self.retries or seconds > self.max_wait:
                    raise
                retried += 1
                log.info("%s answered 429: sent again in %.0f s (retry %d)", endpoint,
                         seconds, retried, extra={"chat_id": data.get("chat_id")})
            finally:
                self.budget.release(started)
            await asyncio.sleep(seconds)


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
