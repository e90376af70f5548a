"""The delivery worker against the Bot API emulator: faults, limits, crashes, two workers."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from telegram import Bot
from telegram import InlineKeyboardButton
from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest
from telegram.error import ChatMigrated
from telegram.request import HTTPXRequest

from bot.delivery.state import Clock
from bot.delivery.state import DeliverySettings
from bot.delivery.worker import DeliveryWorker
from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from bot.ratebudget.window import SlidingWindow
from core.enums import OutboxState
from storage import outbox
from storage import outbox_claims
from storage.db import Database
from storage.db import DatabaseUnavailable
from storage.models import ChatStatus
from storage.models import OutboxMessage
from storage.models import utcnow
from tests.cluster import eventually

GROUPS = [-100100 - i for i in range(5)]
USER = 700001

# Generous limits unless a test is about limits: the emulator enforces none by default.
FAST = {"global_rate": 1000, "group_per_minute": 1000, "private_per_second": 100,
        "backoff_base": 0.05, "poll_interval": 0.05}


@pytest.fixture
async def tg(emulator: BotApiEmulator) -> AsyncIterator[Bot]:
    for chat in GROUPS:
        emulator.add_group(chat, f"值班室 {chat}")
    emulator.add_user(USER, "张警官")
    bot = Bot(
        "123:TEST",
        base_url=emulator.base_url,
        base_file_url=emulator.base_file_url,
        request=HTTPXRequest(connection_pool_size=64),
    )
    await bot.initialize()
    yield bot
    await bot.shutdown()


def worker(db: Database, bot: Bot, clock: Clock = utcnow, **tunables: Any) -> DeliveryWorker:
    return DeliveryWorker(db, bot, DeliverySettings(**{**FAST, **tunables}), clock=clock)


async def put(db: Database, chat_id: int, key: str, text: str | None = None,
              **kwargs: object) -> None:
    if text is None and kwargs.get("method", "sendMessage") == "sendMessage":
        text = key
    async with db.session() as session:
        await outbox.enqueue(session, chat_id=chat_id, kind="test", text=text,
                             dedup_key=key, **kwargs)  # type: ignore[arg-type]


async def rows(db: Database) -> dict[str, OutboxMessage]:
    async with db.session() as session:
        from sqlalchemy import select

        return {r.dedup_key: r for r in await session.scalars(select(OutboxMessage))}


def texts(emu: BotApiEmulator, chat_id: int) -> list[str]:
    return emu.sent_texts(chat_id)


def api_calls(emu: BotApiEmulator, chat_id: int | None = None) -> list[ApiCall]:
    return [c for c in emu.calls if c.method != "getMe"
            and (chat_id is None or c.chat_id == chat_id)]


def flood_answers(emu: BotApiEmulator) -> list[ApiCall]:
    return [c for c in emu.calls if c.error_code == 429]


async def test_delivers_in_order_and_records_the_message(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("确认收到", callback_data="ack:1")]])
    for i in range(3):
        await put(db, GROUPS[0], f"a{i}", f"通报 {i}", payload={"reply_markup": markup})
    await put(db, USER, "p0", "私聊")
    w = worker(db, tg)
    seen: list[str] = []

    async def hook(row: OutboxMessage) -> None:
        seen.append(row.dedup_key)

    w.on_sent.append(hook)
    await w.drain(timeout=30)
    assert texts(emulator, GROUPS[0]) == ["通报 0", "通报 1", "通报 2"]
    assert texts(emulator, USER) == ["私聊"]
    stored = await rows(db)
    assert all(r.state == OutboxState.sent and r.sent_at and r.telegram_message_id
               for r in stored.values())
    call = api_calls(emulator, chat_id=GROUPS[0])[0]
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ack:1"
    assert sorted(seen) == ["a0", "a1", "a2", "p0"]
    assert (w.sent, w.retried, w.failed) == (4, 0, 0)


async def test_wake_starts_delivery_without_waiting_for_the_poll(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    w = worker(db, tg, poll_interval=30)
    w.start()  # it looks first after a wake or its 30 s poll
    try:
        await put(db, GROUPS[0], "now")
        w.wake()
        await emulator.wait_for_calls(1, method="sendMessage", chat_id=GROUPS[0], timeout=10)
        assert texts(emulator, GROUPS[0]) == ["now"]
    finally:
        await w.stop()


async def test_flood_control_is_honoured_and_nothing_is_lost(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    for i in range(50):
        await put(db, GROUPS[i % 5], f"m{i}")
    emulator.faults.fail_next(6, kind="429", retry_after=1)
    w = worker(db, tg)
    started = time.monotonic()
    await w.drain(timeout=30)
    assert time.monotonic() - started >= 1.0  # retry_after was waited out
    for n, chat in enumerate(GROUPS):  # each text once, in order, despite the pauses
        assert texts(emulator, chat) == [f"m{i}" for i in range(n, 50, 5)]
    assert w.counters.rate_limited == 6 and w.failed == 0
    assert all(r.attempts == 1 for r in (await rows(db)).values())  # 429s are not failures


async def test_server_errors_and_timeouts_back_off_and_lose_nothing(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    for i in range(50):
        await put(db, GROUPS[i % 5], f"m{i}")
    emulator.faults.fail_next(4, kind="500")
    emulator.faults.fail_next(3, kind="timeout")
    w = worker(db, tg, read_timeout=0.5)
    await w.drain(timeout=30)
    delivered = collections.Counter(t for chat in GROUPS for t in texts(emulator, chat))
    assert set(delivered) == {f"m{i}" for i in range(50)}
    # A timed-out call may have been delivered: the only source of duplicates. (A slow
    # machine may time out more calls than the three injected.)
    timeouts = w.counters.by_error["TimedOut"]
    assert timeouts >= 3 and w.counters.by_error["NetworkError"] == 4
    assert sum(delivered.values()) - 50 <= timeouts
    assert w.retried == 4 + timeouts and w.failed == 0
    assert all(r.state == OutboxState.sent for r in (await rows(db)).values())


async def test_transient_errors_give_up_after_max_attempts(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    await put(db, GROUPS[1], "doomed")
    emulator.faults.fail_next(10, kind="500", chat_id=GROUPS[1])
    w = worker(db, tg, max_attempts=3, backoff_base=0.01)
    await w.drain(timeout=30)
    doomed = (await rows(db))["doomed"]
    assert doomed.state == OutboxState.failed and doomed.attempts == 3
    assert doomed.last_error and "gave up after 3 attempts" in doomed.last_error


async def test_a_blocked_chat_is_marked_and_later_rows_fail_without_a_call(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    await put(db, USER, "first")
    await put(db, GROUPS[0], "elsewhere")
    emulator.faults.fail_next(1, kind="403_blocked", chat_id=USER)
    w = worker(db, tg)
    await w.drain(timeout=30)
    for key in ("second", "third"):
        await put(db, USER, key)
    await w.drain(timeout=30)
    stored = await rows(db)
    assert [stored[k].state for k in ("first", "second", "third")] == [OutboxState.failed] * 3
    assert stored["third"].last_error and stored["third"].last_error.startswith(
        "chat unreachable")
    assert stored["elsewhere"].state == OutboxState.sent
    assert len(api_calls(emulator, chat_id=USER)) == 1
    async with db.session() as session:
        status = await session.get(ChatStatus, USER)
    assert status is not None and status.unreachable_since is not None
    assert w.failed == 3


async def test_chat_not_found_marks_the_chat(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    await put(db, GROUPS[2], "lost")
    emulator.faults.fail_next(1, kind="400_chat_not_found", chat_id=GROUPS[2])
    w = worker(db, tg)
    await w.drain(timeout=30)
    assert (await rows(db))["lost"].state == OutboxState.failed
    async with db.session() as session:
        assert (await outbox.outbox_stats(session))["unreachable_chats"] == 1


async def test_edits_follow_the_message_their_target_produced(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    await put(db, GROUPS[0], "status", "已送达 0/3")
    async with db.session() as session:
        await outbox.enqueue_edit(session, reply_to_key="status", dedup_key="status:rev2",
                                  text="已送达 2/3")
    w = worker(db, tg)
    await w.drain(timeout=30)
    assert texts(emulator, GROUPS[0]) == ["已送达 2/3"]
    stored = await rows(db)
    assert stored["status:rev2"].state == OutboxState.sent
    assert stored["status:rev2"].telegram_message_id == stored["status"].telegram_message_id
    # The same text again: Telegram says "message is not modified", which is success.
    async with db.session() as session:
        await outbox.enqueue_edit(session, reply_to_key="status", dedup_key="status:rev3",
                                  text="已送达 2/3")
    await w.drain(timeout=30)
    assert (await rows(db))["status:rev3"].state == OutboxState.sent
    # A send with reply_to_key answers the target message.
    await put(db, GROUPS[0], "answer", "收到", reply_to_key="status")
    await w.drain(timeout=30)
    (call,) = [c for c in api_calls(emulator, GROUPS[0]) if c.params.get("text") == "收到"]
    assert call.params["reply_parameters"]["message_id"] == stored["status"].telegram_message_id
    assert w.failed == 0


async def test_files_by_id_and_other_methods(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    photo = emulator.add_file(b"\x89PNG", "scene.png")  # uploaded once, then sent by id
    document = emulator.add_file(b"%PDF-1.7", "notice.pdf")
    await put(db, GROUPS[3], "photo", method="sendPhoto",
              payload={"photo": photo, "caption": "现场照片"})
    await put(db, GROUPS[3], "doc", method="sendDocument",
              payload={"document": document, "caption": "通报全文"})
    w = worker(db, tg)
    await w.drain(timeout=30)
    assert texts(emulator, GROUPS[3]) == ["现场照片", "通报全文"]
    assert {c.method for c in api_calls(emulator, GROUPS[3])} == {"sendPhoto", "sendDocument"}


class ScriptedBot:
    """Answers with the given exceptions first, then with a message."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[str, dict]] = []

    async def do_api_request(self, method: str, api_kwargs: dict, **_: object) -> dict:
        self.calls.append((method, dict(api_kwargs)))
        if self.errors:
            raise self.errors.pop(0)
        return {"message_id": len(self.calls)}


async def test_a_migrated_group_is_followed(db: Database) -> None:
    bot = ScriptedBot(ChatMigrated(-1009999))
    await put(db, -5555, "before")
    w = worker(db, bot)  # type: ignore[arg-type]
    await w.drain(timeout=30)
    await put(db, -5555, "after")
    await w.drain(timeout=30)
    assert [(m, p["chat_id"], p["text"]) for m, p in bot.calls] == [
        ("sendMessage", -5555, "before"),
        ("sendMessage", -1009999, "before"),
        ("sendMessage", -1009999, "after"),
    ]
    stored = await rows(db)
    assert stored["before"].state == OutboxState.sent and stored["before"].attempts == 1
    async with db.session() as session:
        status = await session.get(ChatStatus, -5555)
    assert status is not None and status.migrated_to_chat_id == -1009999


async def test_other_bad_requests_fail_without_retry(db: Database) -> None:
    bot = ScriptedBot(BadRequest("Bad Request: can't parse entities"))
    await put(db, GROUPS[0], "bad")
    w = worker(db, bot)  # type: ignore[arg-type]
    await w.drain(timeout=30)
    bad = (await rows(db))["bad"]
    assert bad.state == OutboxState.failed and len(bot.calls) == 1
    assert bad.last_error == "BadRequest: Can't parse entities"
    async with db.session() as session:
        assert await session.get(ChatStatus, GROUPS[0]) is None


async def test_rows_left_sending_by_a_dead_worker_wait_for_their_lease(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    base = utcnow()
    now = [base]
    for i in range(5):
        await put(db, GROUPS[i], f"m{i}", now=base)
    async with db.session() as session:  # the worker that died after claiming
        claimed = await outbox_claims.claim_batch(session, limit=10, now=base, lease_seconds=60)
    assert len(claimed) == 5
    w = worker(db, tg, clock=lambda: now[0], lease_seconds=60)
    now[0] = base + timedelta(seconds=59)
    await w.drain(timeout=30)
    assert w.sent == 0 and not api_calls(emulator)
    now[0] = base + timedelta(seconds=60)
    await w.drain(timeout=30)
    assert w.sent == 5
    assert [texts(emulator, chat) for chat in GROUPS] == [[f"m{i}"] for i in range(5)]
    assert all(r.attempts == 2 for r in (await rows(db)).values())


async def test_a_burst_to_one_group_stays_within_its_limit(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    emulator.enforce_limits(global_per_second=30, per_group_per_minute=20,
                            per_private_per_second=1)
    for i in range(100):
        await put(db, GROUPS[0], f"m{i:03}")
    w = DeliveryWorker(db, tg, DeliverySettings(poll_interval=0.05))
    w.start()

    async def settled() -> bool:
        """The window's worth sent and no row claimed: the others are back in the outbox
        until the window has room (a 21st send would have come before)."""
        async with db.session() as session:
            stats = await outbox.outbox_stats(session)
        return stats["sent"] >= 20 and stats["sending"] == 0

    await eventually(settled, 15, "the burst sent or parked")
    await w.stop()
    assert texts(emulator, GROUPS[0]) == [f"m{i:03}" for i in range(20)]
    assert not flood_answers(emulator)
    async with db.session() as session:
        stats = await outbox.outbox_stats(session)
    assert stats["sent"] == 20 and stats["pending"] == 80 and stats["sending"] == 0


async def test_global_and_private_limits_are_respected(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    chats = [-200000 - i for i in range(40)]
    for chat in chats:
        emulator.add_group(chat, str(chat))
    emulator.enforce_limits(global_per_second=20, per_group_per_minute=20,
                            per_private_per_second=1)
    for i in range(3):
        await put(db, USER, f"p{i}")
    for chat in chats:
        await put(db, chat, f"g{chat}")
    w = DeliveryWorker(db, tg, DeliverySettings(global_rate=20, poll_interval=0.05))
    started = time.monotonic()
    await w.drain(timeout=30)
    elapsed = time.monotonic() - started
    assert not flood_answers(emulator)
    assert texts(emulator, USER) == ["p0", "p1", "p2"]
    private = [c.time for c in api_calls(emulator, USER)]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(private))
    assert w.sent == 43
    assert elapsed >= 2.0  # 43 sends at 20/s need three windows


async def test_two_workers_share_the_outbox_without_duplicates(
    db: Database, emulator: BotApiEmulator, tg: Bot
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("several workers need PostgreSQL's SKIP LOCKED")
    chats = [-300000 - i for i in range(100)]
    for chat in chats:
        emulator.add_group(chat, str(chat))
    async with db.session() as session:
        for i in range(300):
            await outbox.enqueue(session, chat_id=chats[i % 100], kind="t", text=f"m{i}",
                                 dedup_key=f"m{i}")
    other_db = Database(db.url)
    other_bot = Bot("123:TEST", base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    await other_bot.initialize()
    try:
        first = worker(db, tg, max_inflight=20)
        second = worker(other_db, other_bot, max_inflight=20)
        await asyncio.gather(first.drain(timeout=60), second.drain(timeout=60))
    finally:
        await other_bot.shutdown()
        await other_db.dispose()
    delivered = collections.Counter(t for chat in chats for t in texts(emulator, chat))
    assert first.retried == second.retried == 0  # no timeouts: no excuse for a duplicate
    assert delivered == {f"m{i}": 1 for i in range(300)}
    assert first.sent + second.sent == 300 and first.sent and second.sent
    for chat in chats[:3]:  # each chat's messages in order
        assert texts(emulator, chat) == [f"m{i}" for i in range(300) if chats[i % 100] == chat]


async def test_sliding_window_counts_a_send_until_a_window_after_it_finished() -> None:
    window = SlidingWindow(2, 1.0)
    assert await window.acquire()
    assert await window.acquire()
    now = time.monotonic()
    assert window.available_at(now) == float("inf")  # both in flight
    window.release()
    assert window.available_at(now) > now + 0.9
    assert not await window.acquire(deadline=time.monotonic() + 0.1)
    window.block(time.monotonic() + 5)
    window.release()
    assert window.available_at(time.monotonic()) >= now + 4.9
    window.close()
    assert not await window.acquire()


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    w = DeliveryWorker(None, None, DeliverySettings(backoff_base=1.0, backoff_cap=300))  # type: ignore[arg-type]
    for attempt, full in ((1, 1.0), (2, 2.0), (5, 16.0), (12, 300.0), (30, 300.0)):
        delay = w.backoff(attempt)
        assert full / 2 <= delay <= full




async def test_stopping_does_not_wait_forever_for_a_database_that_is_gone(
    db: Database, emulator: BotApiEmulator, tg: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent, but its outcome cannot be recorded (the database went away): stop() gives up
    after its timeout, says so, and the row, still leased, is sent again later."""
    await put(db, USER, "p0", "私聊")
    w = worker(db, tg)
    gone = asyncio.Event()

    async def database_gone(batch: list) -> list:  # type: ignore[type-arg]
        gone.set()
        raise DatabaseUnavailable(ConnectionRefusedError("the server is down"))

    w._record = database_gone  # type: ignore[method-assign]
    w.start()
    await asyncio.wait_for(gone.wait(), 10)
    await asyncio.wait_for(w.stop(timeout=0.5), 5)
    assert texts(emulator, USER) == ["私聊"]
    assert any("could not be recorded" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
    assert (await rows(db))["p0"].state == OutboxState.sending
