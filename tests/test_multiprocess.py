"""Several real bot processes (`python -m bot run`, webhook mode behind one proxy) on the
real PostgreSQL, against one emulator: updates posted twice answered once, a notice to
500 rooms shared without duplicates, the scheduler leader killed and replaced, the
scheduler leader frozen (SIGSTOP) and replaced then woken (SIGCONT), a crash in the
middle of a broadcast, a process cut off from Telegram leaving the outbox to the other,
a process killed while holding rows past their lease.

Small leases and poll intervals keep each test to seconds; the behaviour is the
production one. PostgreSQL only: on SQLite there is one process by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from bot.breaker import THRESHOLD
from bot.emulator import BotApiEmulator
from bot.leader import CHANNEL
from core.enums import OutboxState
from storage import lease
from storage.db import Database
from storage.models import OutboxMessage
from storage.models import ScheduleMark
from tests.cluster import COORDINATOR
from tests.cluster import BotProcess
from tests.cluster import RoundRobinProxy
from tests.cluster import all_sent
from tests.cluster import broadcast
from tests.cluster import broadcast_counts
from tests.cluster import eventually
from tests.cluster import extra_attempts
from tests.cluster import free_port
from tests.cluster import reminders_sent
from tests.cluster import rooms
from tests.cluster import rows_in_state
from tests.cluster import seed_reminder
from tests.cluster import webhook_env
from tools.testing import TEST_TOKEN

ROOMS = 500
USERS = range(930000101, 930000107)
LATENCY = 0.3
TAKEOVER_LIMIT_S = 30.0
RETRY_S, LEASE_S = 1, 3
FAST = {"leader_retry_seconds": RETRY_S, "leader_lease_seconds": LEASE_S,
        "delivery_poll_seconds": 0.2, "delivery_lease_seconds": 3,
        "delivery_rate": 80}  # the bot's, both processes together
CUT_ROOMS = 100
CRASH_ROOMS = 200  # at the slow link's pace, about 8 s of sending
KILL_ROOMS = 6  # fewer than the process's connections to the Bot API: all in flight at once
FIRED = re.compile(r"occurrence \S+: (sent|late|missed)")


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes need PostgreSQL; SQLite runs one process")
    return database_url


@pytest.fixture
def ports() -> list[int]:
    return [free_port(), free_port()]


@pytest.fixture
async def proxy(ports: list[int]) -> AsyncIterator[RoundRobinProxy]:
    """The public webhook URL, in front of the processes' ports in turn."""
    async with RoundRobinProxy([f"http://127.0.0.1:{p}" for p in ports]) as balancer:
        yield balancer


@pytest.fixture
async def processes(
    emulator: BotApiEmulator, postgres_url: str, ports: list[int], proxy: RoundRobinProxy
) -> AsyncIterator[Callable[..., list[BotProcess]]]:
    """`make(n, api_url)`: n bot processes (not started, at most two) behind the proxy."""
    made: list[BotProcess] = []

    def make(count: int, api_url: str | None = None) -> list[BotProcess]:
        for port in ports[len(made):len(made) + count]:
            env = webhook_env(emulator, postgres_url, proxy.url, port, api_url=api_url, **FAST)
            made.append(BotProcess(f"bot{len(made) + 1}", env))
        return made[-count:]

    try:
        yield make
    finally:
        for process in made:
            await process.kill()


async def test_two_processes_share_updates_and_a_500_room_notice_without_duplicates(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]],
    proxy: RoundRobinProxy
) -> None:
    chats = rooms(ROOMS)
    for chat_id in chats:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    for user in USERS:
        emulator.add_user(user, f"用户{user % 100}", language_code="en")
    first, second = processes(2)
    await asyncio.gather(first.start(), second.start())
    # Updates through the one public URL: each process answers its share, each once,
    # though Telegram posts every update twice and the copy reaches the other process.
    for user in USERS:
        update = emulator.make_message_update(user, user, "/start")
        assert [await emulator.deliver_webhook(update) for _ in range(2)] == [200, 200]
    await eventually(lambda: all(emulator.calls_for(u, ["sendMessage"]) for u in USERS),
                     30, "an answer to every update")
    assert proxy.forwarded == {0: len(USERS), 1: len(USERS)}
    await broadcast(db, chats, "b500")
    await eventually(lambda: all_sent(db, ROOMS), 60, "every row sent")
    await asyncio.gather(first.stop(), second.stop())
    assert all(len(emulator.calls_for(u, ["sendMessage"])) == 1 for u in USERS)
    counts = broadcast_counts(emulator, "b500")
    assert set(counts) == set(chats)
    assert set(counts.values()) == {1}, "a room got the broadcast twice"
    # Both processes sent a share; besides the rooms, the coordinator's live status.
    shares = first.sent_count(), second.sent_count()
    status = len([c for c in emulator.calls if c.ok and c.chat_id == COORDINATOR])
    assert status >= 1 and sum(shares) == ROOMS + status and min(shares) > 0, shares


async def test_killing_the_scheduler_leader_hands_over_and_the_reminder_goes_once(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    room = rooms(1)[0]
    emulator.add_group(room, "值班室")
    leader, follower = processes(2)
    await leader.start()
    assert leader.logged("is now the leader")
    await follower.start()
    assert follower.logged("is a follower") and not follower.logged("is now the leader")
    # A reminder due a few seconds from now, scheduled by the leader (told the way a
    # change made in a follower's handler is).
    due = datetime.now(UTC) + timedelta(seconds=5)
    meeting_id = await seed_reminder(db, room, due)
    await tell_the_leader(db, leader)
    await leader.kill()
    killed = time.monotonic()
    assert datetime.now(UTC) < due, "the machine was too slow: the reminder fell due first"
    await eventually(lambda: follower.logged("is now the leader"), TAKEOVER_LIMIT_S,
                     "takeover by the follower")
    took_over = follower.logged("is now the leader")
    assert took_over is not None and took_over - killed < TAKEOVER_LIMIT_S
    await eventually(lambda: reminders_sent(emulator, meeting_id) >= 1, 30, "the reminder")
    await follower.stop()  # the only process left: once it is gone nothing more can come
    assert reminders_sent(emulator, meeting_id) == 1
    async with db.session() as session:
        marks = (await session.execute(select(func.count()).select_from(ScheduleMark))).scalar()
        rows = (await session.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "meeting_reminder"))).scalar()
    assert marks == 1 and rows == 1


async def test_a_frozen_leader_is_replaced_and_sends_nothing_when_it_wakes(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    """SIGSTOP: the process is alive, its connections open, it just does nothing (a long
    pause, a frozen VM). Its lease runs out, the follower takes over, and what falls due
    during the freeze goes out once: before the takeover by the catch-up, after it by the
    new leader's jobs. Woken with SIGCONT, the old leader's jobs come due at once: they
    are fenced off, and it becomes a follower."""
    first_room, second_room = rooms(2)
    emulator.add_group(first_room, "值班室")
    emulator.add_group(second_room, "值班室")
    leader, follower = processes(2)
    await leader.start()
    assert leader.logged("is now the leader")
    await follower.start()
    assert follower.logged("is a follower") and not follower.logged("is now the leader")
    # Both fall due while the leader is frozen: the first before the follower can take
    # over (at most LEASE_S + RETRY_S after the freeze), the second after it.
    now = datetime.now(UTC)
    early = await seed_reminder(db, first_room, now + timedelta(seconds=4))
    late_due = now + timedelta(seconds=4 + LEASE_S + RETRY_S + 5)
    late = await seed_reminder(db, second_room, late_due)
    await tell_the_leader(db, leader)
    assert leader.process is not None
    leader.process.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        assert datetime.now(UTC) < now + timedelta(seconds=4), \
            "the machine was too slow: the first reminder fell due before the freeze"
        await eventually(lambda: follower.logged("is now the leader"), TAKEOVER_LIMIT_S,
                         "takeover by the follower")
        took_over = follower.logged("is now the leader")
        assert took_over is not None and took_over - frozen < TAKEOVER_LIMIT_S
        assert datetime.now(UTC) < late_due, "the machine was too slow: no job left to fire"
        await eventually(lambda: reminders_sent(emulator, early) == 1, 30, "the first reminder")
        await eventually(lambda: reminders_sent(emulator, late) == 1, 30, "the second reminder")
        assert datetime.now(UTC) - late_due < timedelta(seconds=30)
    finally:
        leader.process.send_signal(signal.SIGCONT)
    await eventually(lambda: leader.logged("is no longer the leader"), 30,
                     "the old leader stepping down")
    assert not any(FIRED.search(line) for _, line in leader.lines), leader.log
    # Nothing it could send was written: one mark and one message per reminder.
    async with db.session() as session:
        marks = (await session.execute(select(func.count()).select_from(ScheduleMark))).scalar()
    assert marks == 2

    async def two_reminders_sent() -> bool:
        async with db.session() as session:
            states = (await session.execute(select(OutboxMessage.state).where(
                OutboxMessage.kind == "meeting_reminder"))).scalars().all()
        return sorted(states) == [OutboxState.sent, OutboxState.sent]

    await eventually(two_reminders_sent, 10, "two reminder rows, both sent")
    assert reminders_sent(emulator, early) == 1 and reminders_sent(emulator, late) == 1
    assert not follower.logged("is no longer the leader")
    await asyncio.gather(leader.stop(), follower.stop())


async def tell_the_leader(db: Database, leader: BotProcess) -> None:
    """What a follower's handler does after changing a meeting: move the planner's change
    counter (and NOTIFY, to be quick); then wait until the leader has placed the jobs."""
    before = len([1 for _, line in leader.lines if "a change elsewhere" in line])
    async with db.engine.begin() as connection:
        await lease.bump_changes(connection, ["meetings"])
        await connection.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
    await eventually(lambda: len([1 for _, line in leader.lines
                                  if "a change elsewhere" in line]) > before,
                     10, "the leader placing the jobs")


async def test_a_crash_mid_broadcast_repeats_at_most_the_rows_in_flight(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    chats = rooms(CRASH_ROOMS)
    for chat_id in chats:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    # Answers reach the bot a while after Telegram acted on the call, so some messages
    # are out without the bot knowing when it dies: those are the ones repeated.
    async with RoundRobinProxy([f"http://{emulator.host}:{emulator.port}"],
                               delay=LATENCY) as slow_link:
        (bot,) = processes(1, slow_link.base)
        await bot.start()
        await broadcast(db, chats, "crash")
        await eventually(
            lambda: sum(broadcast_counts(emulator, "crash").values()) >= CRASH_ROOMS // 4,
            60, "a quarter of the broadcast")
        await bot.kill()
        # What may have reached Telegram without being recorded: every row still claimed.
        in_flight = await rows_in_state(db, OutboxState.sending)
        before = broadcast_counts(emulator, "crash")
        assert 0 < len(before) < CRASH_ROOMS and in_flight > 0
        await bot.start()  # the same process again, after the crash
        await eventually(lambda: all_sent(db, CRASH_ROOMS), 60,
                         "every row sent after the restart")
        await bot.stop()
    counts = broadcast_counts(emulator, "crash")
    assert set(counts) == set(chats)
    repeated = sum(n - 1 for n in counts.values())
    assert repeated <= in_flight, (repeated, in_flight)


async def test_a_process_cut_off_from_telegram_leaves_the_broadcast_to_the_other(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    """A link that loses every packet: the cut process's sends time out, getMe too, and
    it gives its rows back; the other sends every room once; nothing fails. Restored,
    it says so and sends again."""
    chats = rooms(CUT_ROOMS)
    for chat_id in chats:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    async with RoundRobinProxy([f"http://{emulator.host}:{emulator.port}"]) as link:
        (cut_off,) = processes(1, link.base)
        (healthy,) = processes(1)
        await asyncio.gather(cut_off.start(), healthy.start())
        link.cut(stall=True)
        cut = time.monotonic()
        # Frozen while the rows are claimed, so the cut process surely holds some.
        async with frozen(healthy):
            await broadcast(db, chats, "cut")
            await eventually(lambda: rows_in_state(db, OutboxState.sending, "notice"), 10,
                             "the cut process claiming rows")
        await eventually(lambda: all_sent(db, CUT_ROOMS), 60, "every room's notice")
        sent = time.monotonic() - cut
        opened = cut_off.logged("does not answer worker")
        assert opened is not None, cut_off.log
        assert await rows_in_state(db, OutboxState.failed) == 0
        assert broadcast_counts(emulator, "cut") == dict.fromkeys(chats, 1)
        assert await extra_attempts(db) <= THRESHOLD - 1  # given back uncounted
        warning = [line for _, line in cut_off.lines if "does not answer worker" in line]
        assert len(warning) == 1 and "WARNING" in warning[0] and TEST_TOKEN not in warning[0]

        link.restore()
        restored = time.monotonic()
        await eventually(lambda: cut_off.logged("answers worker"), 60, "the breaker closing")
        closed = cut_off.logged("answers worker")
        assert closed is not None
        await healthy.stop()
        more = [chat_id - 1000 for chat_id in rooms(10)]
        for chat_id in more:
            emulator.add_group(chat_id, f"值班室{chat_id}")
        await broadcast(db, more, "back")  # to every room, old and new
        await eventually(lambda: all_sent(db, 2 * CUT_ROOMS + len(more)), 60,
                         "the second notice")
        await cut_off.stop()
    assert broadcast_counts(emulator, "back") == dict.fromkeys(chats + more, 1)
    assert cut_off.sent_count() >= CUT_ROOMS + len(more)
    assert len([1 for _, line in cut_off.lines if "answers worker" in line]) == 1
    print(f"\ncut (no answer) to breaker open {opened - cut:.1f} s; every one of "
          f"{CUT_ROOMS} rooms sent {sent:.1f} s after the cut; restore to closed "
          f"{closed - restored:.1f} s")


async def test_a_killed_process_rows_go_out_again_within_a_lease(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    """Its sends hang (held before they reach Telegram) past the lease: the heartbeat
    keeps its rows while it lives. Killed, it renews nothing: the other process sends
    them within about one lease, each once."""
    chats = rooms(KILL_ROOMS)
    for chat_id in chats:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    async with RoundRobinProxy([f"http://{emulator.host}:{emulator.port}"]) as link:
        (doomed,) = processes(1, link.base)
        (survivor,) = processes(1)
        await asyncio.gather(doomed.start(), survivor.start())
        link.cut(stall=True)  # its calls hang until the client gives up (5 s)

        async def all_claimed() -> bool:
            return await rows_in_state(db, OutboxState.sending, "notice") == KILL_ROOMS

        async with frozen(survivor):
            await broadcast(db, chats, "kill")
            await eventually(all_claimed, 10, "the doomed process claiming every room")
        claimed = time.monotonic()
        await asyncio.sleep(FAST["delivery_lease_seconds"] + 0.6)
        assert time.monotonic() - claimed < 5, "the machine was too slow: the sends timed out"
        assert await rows_in_state(db, OutboxState.sending, "notice") == KILL_ROOMS
        assert not broadcast_counts(emulator, "kill"), "taken over while its holder lived"
        await doomed.kill()
        killed = time.monotonic()
        await eventually(lambda: all_sent(db, KILL_ROOMS), 30, "the rooms after the kill")
        resent = time.monotonic() - killed
        await survivor.stop()
    assert broadcast_counts(emulator, "kill") == dict.fromkeys(chats, 1)
    assert resent < 2 * FAST["delivery_lease_seconds"], resent  # about one lease
    print(f"\nSIGKILL to every held row sent again: {resent:.1f} s "
          f"(lease {FAST['delivery_lease_seconds']} s)")


@contextlib.asynccontextmanager
async def frozen(process: BotProcess) -> AsyncIterator[None]:
    """SIGSTOP for the duration (it claims nothing meanwhile), then SIGCONT."""
    assert process.process is not None
    process.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.process.send_signal(signal.SIGCONT)


async def test_two_processes_keep_to_one_rate_and_answer_people_during_a_broadcast(
    emulator: BotApiEmulator, db: Database, processes: Callable[..., list[BotProcess]]
) -> None:
    """DELIVERY_RATE is the bot's, not each process's: the two book their sends from one
    budget in the database, so Telegram (the emulator, at that limit) never answers 429,
    and people who write meanwhile are answered at once, whichever process serves them."""
    rate = FAST["delivery_rate"]
    shared = 300
    chats = rooms(shared)
    for chat_id in chats:
        emulator.add_group(chat_id, f"值班室{chat_id}")
    for user in USERS:
        emulator.add_user(user, f"用户{user % 100}", language_code="en")
    emulator.enforce_limits(global_per_second=rate)
    first, second = processes(2)
    await asyncio.gather(first.start(), second.start())
    await broadcast(db, chats, "shared")
    await eventually(lambda: sum(broadcast_counts(emulator, "shared").values()) >= rate, 30,
                     "the broadcast under way")
    for user in USERS:
        update = emulator.make_message_update(user, user, "/start")
        assert await emulator.deliver_webhook(update) == 200
        await asyncio.sleep(0.2)
    await eventually(lambda: all_sent(db, shared), 60, "every row sent")
    await asyncio.gather(first.stop(), second.stop())
    assert emulator.stats["over_limit"] == 0, "together the processes went over the limit"
    counts = broadcast_counts(emulator, "shared")
    assert set(counts) == set(chats) and set(counts.values()) == {1}
    last_room = max(c.time for c in emulator.calls if c.ok and c.chat_id in counts)
    for user in USERS:
        answers = [c for c in emulator.calls_for(user, ["sendMessage"]) if c.ok]
        assert len(answers) == 1 and answers[0].time < last_room
    assert min(first.sent_count(), second.sent_count()) > 0
