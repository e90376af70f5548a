"""One send budget per bot (bot/ratebudget/): officers are answered while a broadcast runs.

Through the real Application against the emulator enforcing Telegram's overall limit
(sends, edits and button answers): a notice to hundreds of duty rooms goes out while
twenty officers look contacts up; every lookup is answered, none gets 429, and each is
answered while the broadcast is still going. A reply answered 429 is sent again after
retry_after, once. Then the arithmetic, on a clock the tests move: the window, outbox
pacing, replies first, slots booked in PostgreSQL and what happens when it fails.
Two processes sharing the budget: tests/test_multiprocess.py.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from telegram.error import RetryAfter

from bot.emulator import BotApiEmulator
from bot.ratebudget.budget import BOOKING_MAX
from bot.ratebudget.budget import OUTBOX_HORIZON
from bot.ratebudget.budget import SLOT_GRACE
from bot.ratebudget.budget import Priority
from bot.ratebudget.budget import SendBudget
from bot.ratebudget.ledger import MARGIN
from bot.ratebudget.ledger import SlotLedger
from bot.ratebudget.ledger import local_slots
from bot.ratebudget.limiter import BudgetRateLimiter
from bot.ratebudget.limiter import budgeted
from bot.ratebudget.limiter import slot_taken
from core.enums import NoticeKind
from core.enums import Role
from core.enums import Severity
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from services.notices import create_notice
from storage.dataio import import_file
from storage.db import Database
from storage.models import DutyRoom
from storage.models import Unit
from storage.models import User
from storage.sendbudget import Booking
from tests.cluster import eventually
from tests.conftest import SAMPLE_NOW
from tools.testing import BotHarness

RATE = 100  # the emulator's overall limit and DELIVERY_RATE: a short test, the same logic
ROOMS = 300
FIRST_ROOM = -1004000000000
OFFICERS = [930000201 + i for i in range(20)]
COORDINATOR = 910000002  # 马建军, coordinator in the sample
SAMPLE_ROOMS = range(-1001000000110, -1001000000100)
INF = float("inf")


# --------------------------------------------------------------------------- the bot


@pytest.fixture
async def busy_desk(emulator: BotApiEmulator, database_url: str) -> AsyncIterator[BotHarness]:
    """The sample desk with twenty officers of 四川 and ROOMS more duty rooms, on an
    emulator that answers 429 beyond RATE calls a second; DELIVERY_RATE is RATE."""
    db = Database(database_url)
    report = await import_file(db, "data/sample.yaml", now=SAMPLE_NOW)
    assert not report.problems
    async with db.session() as session:
        sichuan = await session.scalar(select(Unit).where(Unit.short_name == "四川"))
        assert sichuan is not None
        session.add_all([User(telegram_id=officer, full_name=f"警官{i}", role=Role.officer,
                              unit_id=sichuan.id, language="zh-Hans")
                         for i, officer in enumerate(OFFICERS)])
        units = [Unit(code=f"busy{i}", name=f"单位{i}", short_name=f"单位{i}")
                 for i in range(ROOMS)]
        session.add_all(units)
        await session.flush()
        session.add_all([DutyRoom(unit_id=unit.id, chat_id=FIRST_ROOM - i, title=f"值班室{i}")
                         for i, unit in enumerate(units)])
        rooms = list(await session.scalars(select(DutyRoom.chat_id)))
    await db.dispose()
    for chat_id in rooms:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    for officer in [COORDINATOR, *OFFICERS]:
        emulator.add_user(officer, f"警官{officer % 100}")
    emulator.enforce_limits(global_per_second=RATE)
    async with BotHarness(emulator, database_url, delivery_rate=RATE) as harness:
        yield harness


async def notify_every_room(desk: BotHarness) -> None:
    svc = desk.services
    async with svc.db.session() as session:
        coordinator = await session.scalar(select(User).where(User.telegram_id == COORDINATOR))
        assert coordinator is not None
        await create_notice(
            session, NoticeDraft(kind=NoticeKind.situation, severity=Severity.important,
                                 text="形势通报：请各值班室确认收到。", audience={"all": True}),
            actor=coordinator, now=svc.now(), policy=NoticePolicy())
    svc.wake_delivery()


def notice_times(emulator: BotApiEmulator) -> list[float]:
    return [c.time for c in emulator.calls
            if c.ok and c.method == "sendMessage" and c.chat_id is not None and c.chat_id < 0]


async def test_officers_are_answered_while_a_broadcast_runs(
    busy_desk: BotHarness, emulator: BotApiEmulator
) -> None:
    worker = busy_desk.services.delivery
    assert worker is not None
    worker.start()
    await notify_every_room(busy_desk)
    await eventually(lambda: len(notice_times(emulator)) >= RATE // 2, 30, "the broadcast")

    async def look_up(officer: int) -> float:
        asked = time.time()
        await busy_desk.send(officer, "/contact 四川 刑侦")
        return asked

    asked = []
    for first in range(0, len(OFFICERS), 5):  # five at a time, a tenth of a second apart
        asked += await asyncio.gather(*(look_up(o) for o in OFFICERS[first:first + 5]))
        await asyncio.sleep(0.1)
    await eventually(lambda: len(notice_times(emulator)) >= ROOMS + len(SAMPLE_ROOMS), 60,
                     "every room notified")
    await worker.stop()

    assert not [c for c in emulator.calls if c.error_code == 429], "a call got 429"
    last_notice = max(notice_times(emulator))
    for officer, at in zip(OFFICERS, asked, strict=True):
        replies = [c for c in emulator.calls_for(officer, ["sendMessage"]) if c.ok]
        assert len(replies) == 1, f"officer {officer}: {len(replies)} answers"
        assert "四川省公安厅 · 刑侦" in replies[0].params["text"]
        # Answered at once, not after the rooms: the broadcast was still going.
        assert at <= replies[0].time < last_notice
    assert busy_desk.services.delivery.sent >= ROOMS


async def test_a_reply_answered_429_is_sent_again_after_retry_after(
    busy_desk: BotHarness, emulator: BotApiEmulator
) -> None:
    officer = OFFICERS[0]
    emulator.faults.fail_next(1, "429", methods=["sendMessage"], chat_id=officer, retry_after=1)
    started = time.monotonic()
    await busy_desk.send(officer, "/contact 四川 刑侦")
    calls = emulator.calls_for(officer, ["sendMessage"])
    assert [c.status for c in calls] == [429, 200]
    assert "四川省公安厅 · 刑侦" in calls[1].params["text"]
    assert time.monotonic() - started >= 1.0  # it waited as Telegram said


async def test_a_button_answer_answered_429_is_sent_again(
    busy_desk: BotHarness, emulator: BotApiEmulator
) -> None:
    officer = OFFICERS[1]
    first = await busy_desk.send(officer, "/contact 四川")
    emulator.faults.fail_next(1, "429", methods=["answerCallbackQuery"], retry_after=1)
    pressed = await busy_desk.press(officer, first, "下一页")
    answers = [c for c in pressed.calls if c.method == "answerCallbackQuery"]
    assert [c.status for c in answers] == [429, 200]
    assert [c for c in pressed.messages if c.method == "editMessageText"]


# --------------------------------------------------------------------------- the limiter


class Calls:
    """A Bot API call as PTB hands it to the rate limiter: fails with `errors` first."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.made = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> bool:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)
        return True


async def request(limiter: BudgetRateLimiter, calls: Calls, endpoint: str = "sendMessage"
                  ) -> Any:
    return await limiter.process_request(calls, (), {}, endpoint, {"chat_id": 1}, None)


async def test_the_limiter_retries_a_reply_twice_and_only_for_short_waits() -> None:
    budget = SendBudget(1000)
    limiter = BudgetRateLimiter(budget)
    twice = Calls(RetryAfter(0), RetryAfter(0))
    assert await request(limiter, twice) is True and twice.made == 3
    thrice = Calls(RetryAfter(0), RetryAfter(0), RetryAfter(0))
    with pytest.raises(RetryAfter):
        await request(limiter, thrice)
    assert thrice.made == 3
    long_wait = Calls(RetryAfter(11))
    with pytest.raises(RetryAfter):
        await request(limiter, long_wait)
    assert long_wait.made == 1
    assert budget.taken[Priority.reply] == 7 and budget.window.inflight == 0


async def test_what_takes_a_slot() -> None:
    budget = SendBudget(1000)
    limiter = BudgetRateLimiter(budget)
    for method in ("getMe", "setMyCommands", "getChat", "sendChatAction", "deleteWebhook"):
        assert not budgeted(method)
        await request(limiter, Calls(), method)
    assert budget.taken[Priority.reply] == 0
    for method in ("sendMessage", "sendDocument", "copyMessage", "editMessageText",
                   "editMessageReplyMarkup", "answerCallbackQuery", "answerInlineQuery"):
        assert budgeted(method)
        await request(limiter, Calls(), method)
    assert budget.taken[Priority.reply] == 7
    with slot_taken():  # an outbox row: the worker took its slot through its lane
        await request(limiter, Calls())
    assert budget.taken[Priority.reply] == 7


# --------------------------------------------------------------------------- arithmetic


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_at_most_rate_sends_in_a_second_counted_until_a_second_after_the_answer() -> None:
    clock = Clock()
    budget = SendBudget(3, clock=clock)
    for _ in range(3):
        assert budget.wait_time(Priority.reply, clock.now) == 0
        budget.take(Priority.reply, clock.now)
    assert budget.wait_time(Priority.reply, clock.now) == INF  # all three in flight
    clock.now += 0.2
    for _ in range(3):
        budget.release()
    assert budget.wait_time(Priority.reply, clock.now) == pytest.approx(1.0, abs=0.01)
    clock.now += 1.01
    assert budget.wait_time(Priority.reply, clock.now) == 0


def test_outbox_rows_are_paced_and_replies_are_not() -> None:
    clock = Clock()
    budget = SendBudget(10, clock=clock)
    at_once = 0
    while budget.wait_time(Priority.outbox, clock.now) == 0:
        budget.take(Priority.outbox, clock.now)
        at_once += 1
    assert at_once <= 3  # after idling a couple go at once; from then on, 1/rate apart
    assert budget.wait_time(Priority.outbox, clock.now) == pytest.approx(0.1)
    assert budget.wait_time(Priority.reply, clock.now) == 0
    budget.take(Priority.reply, clock.now)
    clock.now += 0.1
    assert budget.wait_time(Priority.outbox, clock.now) == 0
    budget.take(Priority.outbox, clock.now)
    assert budget.wait_time(Priority.outbox, clock.now) == pytest.approx(0.1)
    budget.block(clock.now + 5)  # flood control holds everything
    assert budget.wait_time(Priority.outbox, clock.now) == pytest.approx(5)
    assert budget.wait_time(Priority.reply, clock.now) == pytest.approx(5)


async def test_the_outbox_waits_while_a_reply_does() -> None:
    clock = Clock()
    budget = SendBudget(2, clock=clock)
    for _ in range(2):
        budget.take(Priority.outbox, clock.now)
        budget.release()
    reply = asyncio.create_task(budget.acquire(Priority.reply))
    await asyncio.sleep(0.01)
    assert not reply.done()
    clock.now += 1.01  # the window has room again: the reply's, not the outbox's
    assert budget.wait_time(Priority.outbox, clock.now) == INF
    budget.wake()
    assert await asyncio.wait_for(reply, 1)
    assert budget.wait_time(Priority.outbox, clock.now) == 0


async def test_an_outbox_row_gives_up_at_its_deadline_or_when_its_lane_closes() -> None:
    budget = SendBudget(1)
    lane = budget.outbox_lane()
    assert await lane.acquire()
    lane.release()
    assert not await lane.acquire(deadline=time.monotonic() + 0.05)
    waiting = asyncio.create_task(lane.acquire())
    await asyncio.sleep(0.01)
    lane.close()
    assert not await asyncio.wait_for(waiting, 1)
    assert budget.window.inflight == 0


def test_booked_slots_become_this_process_s_time() -> None:
    booking = Booking(server_now=5000.0, first=5000.5, count=3)
    slots = local_slots(booking, sent=10.0, received=10.004, spacing=0.1)
    assert slots == pytest.approx([10.502, 10.602, 10.702])
    refused = Booking(server_now=0.0, first=0.0, count=0, retry_in=0.3)
    assert local_slots(refused, sent=10.0, received=10.004, spacing=0.1) == pytest.approx(10.304)
    ledger = SlotLedger("postgresql+asyncpg://nowhere/db", 1, 30)
    assert ledger.spacing == pytest.approx(1 / (30 * (1 - MARGIN)))
    assert 30 * ledger.spacing * (1 - MARGIN) == pytest.approx(1.0)


class FakeLedger:
    """Slots as the database would book them, on the test's clock."""

    def __init__(self, clock: Clock, spacing: float = 0.1) -> None:
        self.clock, self.spacing = clock, spacing
        self.next_slot = 0.0
        self.bookings: list[tuple[int, float]] = []
        self.fail = False

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def book(self, count: int, horizon: float) -> list[float] | float:
        self.bookings.append((count, horizon))
        if self.fail:
            raise ConnectionRefusedError("the database is gone")
        now = self.clock()
        if self.next_slot > now + horizon:
            return self.next_slot - horizon
        first = max(self.next_slot, now)
        self.next_slot = first + count * self.spacing
        return [first + k * self.spacing for k in range(count)]


def shared_budget(clock: Clock, ledger: FakeLedger) -> SendBudget:
    return SendBudget(1000, ledger=ledger, clock=clock)  # type: ignore[arg-type]


async def test_shared_slots_are_booked_in_batches_and_replies_take_the_earliest() -> None:
    clock = Clock()
    ledger = FakeLedger(clock)
    budget = shared_budget(clock, ledger)
    assert budget.wait_time(Priority.outbox, clock.now) is None  # nothing booked yet
    budget._waiting[Priority.outbox] = 20  # rows waiting for their turn
    assert await budget.acquire(Priority.outbox)
    assert ledger.bookings == [(BOOKING_MAX, OUTBOX_HORIZON)]
    assert budget.wait_time(Priority.outbox, clock.now) == pytest.approx(0.1)
    assert budget.wait_time(Priority.reply, clock.now) == pytest.approx(0.1)
    # Another process booked far ahead: the outbox waits to book, a reply books anyway.
    ledger.next_slot = clock.now + 5
    clock.now += 0.1 * BOOKING_MAX + SLOT_GRACE + 0.01  # the booked slots went by unused
    assert budget.wait_time(Priority.outbox, clock.now) is None
    assert await budget.acquire(Priority.outbox, deadline=clock.now + 0.01) is False
    assert ledger.bookings[-1] == (BOOKING_MAX, OUTBOX_HORIZON)
    budget._waiting[Priority.outbox] = 0
    reply = asyncio.create_task(budget.acquire(Priority.reply))
    await asyncio.sleep(0.01)
    assert ledger.bookings[-1][0] == 1 and ledger.bookings[-1][1] > 1e6
    clock.now = ledger.next_slot - 0.1  # its slot has come
    budget.wake()
    assert await asyncio.wait_for(reply, 1)


async def test_when_the_database_fails_a_process_keeps_to_its_own_window() -> None:
    clock = Clock()
    ledger = FakeLedger(clock)
    ledger.fail = True
    budget = shared_budget(clock, ledger)
    assert await asyncio.wait_for(budget.acquire(Priority.reply), 1)  # answered all the same
    assert len(ledger.bookings) == 1
    assert await budget.acquire(Priority.reply)  # no second try for a while
    assert len(ledger.bookings) == 1
    clock.now += 10
    ledger.fail = False
    assert await budget.acquire(Priority.reply)
    assert len(ledger.bookings) == 2


async def test_processes_booking_from_postgresql_never_share_a_slot(postgres_url: str) -> None:
    """SQLite runs one process (its budget books nothing): PostgreSQL only."""
    ledgers = [SlotLedger(postgres_url, 7000000001, 30) for _ in range(2)]
    for ledger in ledgers:
        await ledger.start()
    try:
        booked = [await ledger.book(BOOKING_MAX, 1e9) for _ in range(4) for ledger in ledgers]
        refused = await ledgers[0].book(1, OUTBOX_HORIZON)
    finally:
        for ledger in ledgers:
            await ledger.stop()
    slots = sorted(slot for batch in booked if isinstance(batch, list) for slot in batch)
    assert len(slots) == 8 * BOOKING_MAX
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert min(gaps) >= ledgers[0].spacing * 0.9  # one clock reading's error at most
    assert slots[-1] - slots[0] == pytest.approx((len(slots) - 1) * ledgers[0].spacing,
                                                 abs=0.01)
    # 64 slots booked ahead (2 s): the outbox is told to come back when they are near.
    assert isinstance(refused, float) and refused > time.monotonic() + 1
