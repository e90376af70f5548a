"""A process cut off from Telegram leaves the outbox to those that are not; a process that
holds rows renews their leases, so a slow one keeps them.

Two bots (the real Application each, on one database) against one emulator, one of
them through a proxy that can be cut. Several processes on PostgreSQL, with a killed
one, are in tests/test_multiprocess.py. Then the breaker's bookkeeping on a fake clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from telegram import Bot
from telegram.error import BadRequest
from telegram.error import Forbidden
from telegram.error import NetworkError
from telegram.error import RetryAfter
from telegram.error import TimedOut

from bot.breaker import THRESHOLD
from bot.breaker import CircuitBreaker
from bot.breaker import heard
from bot.delivery.state import DeliverySettings
from bot.delivery.worker import DeliveryWorker
from bot.emulator import BotApiEmulator
from core.enums import OutboxState
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.cluster import RoundRobinProxy
from tests.cluster import all_sent
from tests.cluster import broadcast
from tests.cluster import broadcast_counts
from tests.cluster import eventually
from tests.cluster import extra_attempts
from tests.cluster import rooms
from tests.cluster import rows_in_state
from tools.testing import TEST_TOKEN
from tools.testing import BotHarness

ROOMS = 40
GROUP = -1004000000001
OPENED, CLOSED = "does not answer worker", "answers worker"
LEASE_S = 3
FAST = {"delivery_poll_seconds": 0.1, "delivery_lease_seconds": LEASE_S}


@pytest.fixture
async def link(emulator: BotApiEmulator) -> AsyncIterator[RoundRobinProxy]:
    """The way one bot reaches the emulator, to be cut."""
    async with RoundRobinProxy([f"http://{emulator.host}:{emulator.port}"]) as proxy:
        yield proxy


def worker(harness: BotHarness) -> DeliveryWorker:
    assert harness.services.delivery is not None
    return harness.services.delivery


def groups(emulator: BotApiEmulator, chats: list[int]) -> list[int]:
    for chat in chats:
        emulator.add_group(chat, f"值班室{chat}")
    return chats


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_a_bot_cut_off_from_telegram_leaves_its_rows_to_the_healthy_one(
    emulator: BotApiEmulator, database_url: str, link: RoundRobinProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    chats = groups(emulator, rooms(ROOMS))
    async with (
        BotHarness(emulator, database_url, telegram_base_url=f"{link.base}/bot",
                   telegram_base_file_url=f"{link.base}/file/bot", **FAST) as cut_off,
        BotHarness(emulator, database_url, **FAST) as healthy,
    ):
        sick, well = worker(cut_off), worker(healthy)
        link.cut()
        cut = time.monotonic()
        sick.start()
        await broadcast(healthy.db, chats, "cut")
        sick.wake()
        await eventually(lambda: lines(caplog, OPENED), 30, "the breaker opening")
        opened = time.monotonic() - cut
        # It gives back every row it held, and claims no more while cut off.
        await eventually(lambda: sick.stats()["in_flight"] == 0, 10, "the rows given back")
        given_back = sick.counters.released
        assert given_back > 0 and sick.sent == 0
        started = time.monotonic()
        well.start()
        await eventually(lambda: all_sent(healthy.db, ROOMS), 60, "every room's notice")
        took = time.monotonic() - started
        assert sick.counters.released == given_back and sick.sent == 0
        assert broadcast_counts(emulator, "cut") == dict.fromkeys(chats, 1)
        assert await rows_in_state(healthy.db, OutboxState.failed) == 0
        # Rows given back were not counted; at most the sends before the third unanswered
        # one (when getMe is asked) were, as ordinary retries.
        assert await extra_attempts(healthy.db) <= THRESHOLD - 1
        opening = lines(caplog, OPENED)
        assert len(opening) == 1 and opening[0].levelno == logging.WARNING
        assert sick.worker_id in opening[0].getMessage()
        assert not lines(caplog, CLOSED)

        # Back on the network: the breaker closes (one INFO) and it delivers again.
        await well.stop()
        link.restore()
        restored = time.monotonic()
        await eventually(lambda: lines(caplog, CLOSED), 60, "the breaker closing")
        closed = time.monotonic() - restored
        closing = lines(caplog, CLOSED)
        assert len(closing) == 1 and closing[0].levelno == logging.INFO
        more = groups(emulator, [chat - 1000 for chat in rooms(10)])
        await broadcast(healthy.db, more, "back")  # to every room, old and new
        sick.wake()
        await eventually(lambda: all_sent(healthy.db, 2 * ROOMS + len(more)), 60,
                         "the second notice")
        assert broadcast_counts(emulator, "back") == dict.fromkeys(chats + more, 1)
        assert sick.sent >= ROOMS + len(more)
        assert len(lines(caplog, OPENED)) == 1
        await sick.stop()
    print(f"\ncut to breaker open {opened:.2f} s; the healthy bot sent {ROOMS} rooms in "
          f"{took:.2f} s; restore to breaker closed {closed:.2f} s")


async def test_a_slow_bot_keeps_its_rows_past_their_lease(
    emulator: BotApiEmulator, database_url: str
) -> None:
    """Each send is answered after more than a lease (and within the client's time-out):
    the heartbeat renews the leases, so the other bot sends none of them again."""
    chats = groups(emulator, rooms(6))
    emulator.faults.stall_seconds = LEASE_S + 1
    for chat in chats:
        emulator.faults.fail_next(1, "timeout", methods=["sendMessage"], chat_id=chat)
    async with (
        BotHarness(emulator, database_url, **FAST) as slow,
        BotHarness(emulator, database_url, **FAST) as other,
    ):
        slowly, otherwise = worker(slow), worker(other)
        slowly.start()
        await broadcast(other.db, chats, "slow")
        slowly.wake()
        await eventually(lambda: slowly.stats()["in_flight"] >= len(chats), 10,
                         "the slow bot claiming the rooms")
        otherwise.start()
        await eventually(lambda: all_sent(other.db, len(chats)), 30, "every room's notice")
        await otherwise.stop()
        await slowly.stop()
    assert emulator.faults.injected["timeout"] == len(chats)
    assert broadcast_counts(emulator, "slow") == dict.fromkeys(chats, 1)
    assert await extra_attempts(other.db) == 0  # each claimed once, by the slow bot


async def test_a_row_on_its_last_attempt_is_not_failed_by_a_cut_link(
    db: Database, emulator: BotApiEmulator, link: RoundRobinProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No answer on the last attempt: getMe is asked before the row would be failed, and
    gets none either, so the row goes back to the outbox, its attempt not counted."""
    emulator.add_group(GROUP, "值班室")
    bot = Bot(TEST_TOKEN, base_url=f"{link.base}/bot", base_file_url=f"{link.base}/file/bot")
    await bot.initialize()
    await enqueue(db, "last")
    sender = DeliveryWorker(db, bot, DeliverySettings(max_attempts=1, poll_interval=0.05))
    link.cut()
    sender.start()
    try:
        await eventually(lambda: lines(caplog, OPENED), 10, "the breaker opening")
        await eventually(lambda: sender.stats()["in_flight"] == 0, 10, "the row given back")
    finally:
        await sender.stop()
        await bot.shutdown()
    row = await only_row(db)
    assert (row.state, row.attempts, sender.failed) == (OutboxState.pending, 0, 0)
    assert link.unanswered >= 2  # the send, then getMe


async def test_a_chat_that_alone_gets_no_answer_fails_as_before(
    db: Database, emulator: BotApiEmulator
) -> None:
    """getMe is answered: the unanswered send was the chat's trouble, not this worker's;
    the row fails on its last attempt and the breaker stays closed."""
    emulator.add_group(GROUP, "值班室")
    emulator.faults.fail_next(1, "drop", chat_id=GROUP)
    bot = Bot(TEST_TOKEN, base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    await bot.initialize()
    await enqueue(db, "dropped")
    sender = DeliveryWorker(db, bot, DeliverySettings(max_attempts=1, poll_interval=0.05))
    try:
        await sender.drain(timeout=10)
    finally:
        await bot.shutdown()
    row = await only_row(db)
    assert row.state == OutboxState.failed and row.last_error is not None
    assert row.last_error.startswith("gave up after 1 attempts: NetworkError")
    assert len([c for c in emulator.calls if c.method == "getMe"]) == 2  # initialize, probe
    assert sender.stats()["reachable"]


async def enqueue(db: Database, key: str) -> None:
    async with db.session() as session:
        await outbox.enqueue(session, chat_id=GROUP, kind="test", text=key, dedup_key=key)


async def only_row(db: Database) -> OutboxMessage:
    async with db.session() as session:
        return (await session.scalars(select(OutboxMessage))).one()


# --------------------------------------------------------------------------- the breaker


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unanswered_sends_in_a_row_pause_claims_until_getme_says() -> None:
    breaker = CircuitBreaker("w1", clock=FakeMonotonic())
    assert breaker.allows_claims
    assert [breaker.unanswered(), breaker.unanswered()] == [False, False]
    breaker.answered()  # Telegram answered one: the count starts again
    assert [breaker.unanswered(), breaker.unanswered()] == [False, False]
    assert breaker.allows_claims
    assert breaker.unanswered()  # the third in a row: ask getMe
    assert not breaker.allows_claims and not breaker.is_open
    assert breaker.unanswered()  # and any more while asking
    assert not breaker.probe_succeeded()  # getMe answered: it was not this process
    assert breaker.allows_claims and breaker.unanswered_in_a_row == 0


def test_a_failed_probe_opens_once_and_asks_again_on_a_capped_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeMonotonic()
    breaker = CircuitBreaker("w1", probe_min=1, probe_max=30, clock=clock)
    for _ in range(3):
        breaker.unanswered()
    assert breaker.probe_failed("TimedOut: Timed out; getMe: TimedOut: Timed out")
    assert breaker.is_open and not breaker.allows_claims
    waits = []
    for _ in range(7):
        waits.append(breaker.probe_in())
        clock.now += breaker.probe_in()
        assert breaker.probe_in() == 0
        assert not breaker.probe_failed("getMe: NetworkError: refused")  # already open
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    breaker.answered()  # a send answered while open does not close it: getMe does
    assert breaker.is_open
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "w1" in warnings[0].getMessage() and "getMe: TimedOut" in warnings[0].getMessage()
    assert breaker.times_opened == 1


def test_getme_answering_closes_the_breaker_with_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeMonotonic()
    breaker = CircuitBreaker("w1", clock=clock)
    breaker.probe_failed("getMe: NetworkError: refused")
    clock.now += 42
    assert breaker.probe_succeeded()
    assert not breaker.is_open and breaker.allows_claims
    assert not breaker.probe_succeeded()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "after 42 s" in infos[0].getMessage()
    # Cut off again: a new WARNING, and the backoff starts from its minimum again.
    assert breaker.probe_failed("getMe: NetworkError: refused")
    assert breaker.probe_in() == breaker.probe_min and breaker.times_opened == 2


def test_only_calls_nothing_answered_count_as_unanswered() -> None:
    refused = NetworkError("aiohttp.ClientConnectorError: Cannot connect")
    refused.__cause__ = ConnectionRefusedError()
    assert heard(TimedOut()) is False
    assert heard(refused) is False
    assert heard(NetworkError("Bad Gateway")) is None  # a 5xx: someone answered
    for answer in (BadRequest("chat not found"), Forbidden("blocked"), RetryAfter(3)):
        assert heard(answer) is True
