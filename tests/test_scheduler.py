"""The scheduler fires each occurrence once: on time, late within the grace period, or
recorded as missed; twice-fired jobs and concurrent firing send nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import ApplicationBuilder

from bot import scheduler as scheduler_module
from bot.scheduler import Occurrence
from bot.scheduler import Outcome
from bot.scheduler import Scheduler
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from storage.models import ScheduleMark
from storage.models import SchedulerHeartbeat
from storage.schedules import beat

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class EveryTenMinutes:
    """A planner due every ten minutes from T0, sending one message to chat 1 (keys by
    the time of day, or by `stamp`)."""

    name = "test"

    def __init__(self, stamp: str = "%H%M") -> None:
        self.missed_keys: list[str] = []
        self.stamp = stamp

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        found, due = [], T0
        while due < end:
            if due >= start:
                found.append(Occurrence(f"tick:{due:{self.stamp}}", due))
            due += timedelta(minutes=10)
        return found

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        text = f"{occurrence.key}{' (late)' if late else ''}"
        await outbox.enqueue(session, chat_id=1, kind="test", text=text,
                             dedup_key=occurrence.key)

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        self.missed_keys.append(occurrence.key)


async def alive_at(db: Database, instant: datetime) -> None:
    """The heartbeat a running scheduler writes (the first one also marks its first run)."""
    async with db.session() as session:
        await beat(session, instant)


async def texts(db: Database) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(select(OutboxMessage.payload).order_by(OutboxMessage.id))
        return [payload["text"] for payload in rows.scalars()]


async def test_fires_each_occurrence_once(db: Database) -> None:
    clock = Clock(T0 + timedelta(seconds=5))
    scheduler = Scheduler(db, [EveryTenMinutes()], now=clock)
    assert (await scheduler.run_due())[Outcome.sent] == 1
    assert (await scheduler.run_due())[Outcome.sent] == 0
    clock.now = T0 + timedelta(minutes=10, seconds=1)
    await scheduler.run_due()
    await scheduler.fire("test", Occurrence("tick:0110", T0 + timedelta(minutes=10)))
    assert await texts(db) == ["tick:0100", "tick:0110"]


async def test_restart_sends_late_within_grace_and_records_the_rest_as_missed(
    db: Database,
) -> None:
    planner = EveryTenMinutes()
    # Down from T0 - 1 min until T0 + 35 min; grace 15 minutes.
    await alive_at(db, T0 - timedelta(hours=1))
    await alive_at(db, T0 - timedelta(minutes=1))
    clock = Clock(T0 + timedelta(minutes=35))
    scheduler = Scheduler(db, [planner], now=clock, grace=timedelta(minutes=15))
    counts = await scheduler.run_due()
    assert counts == {Outcome.sent: 0, Outcome.late: 2, Outcome.missed: 2}
    assert await texts(db) == ["tick:0120 (late)", "tick:0130 (late)"]
    assert planner.missed_keys == ["tick:0100", "tick:0110"]
    async with db.session() as session:
        rows = await session.execute(select(ScheduleMark.key, ScheduleMark.outcome))
        outcomes = dict(rows.all())
    assert outcomes == {"tick:0100": "missed", "tick:0110": "missed",
                        "tick:0120": "late", "tick:0130": "late"}
    # A second restart changes nothing.
    assert await Scheduler(db, [planner], now=clock).run_due() == {
        Outcome.sent: 0, Outcome.late: 0, Outcome.missed: 0}


async def test_a_first_start_reports_nothing_missed(db: Database) -> None:
    # The data says ticks were due for two days, but no scheduler ever ran here: nothing
    # was missed; what is still within the grace period goes out late.
    planner = EveryTenMinutes()
    clock = Clock(T0 + timedelta(days=2, minutes=2))
    scheduler = Scheduler(db, [planner], now=clock, grace=timedelta(minutes=15))
    assert await scheduler.run_due() == {Outcome.sent: 0, Outcome.late: 2, Outcome.missed: 0}
    assert planner.missed_keys == []
    assert await texts(db) == ["tick:0050 (late)", "tick:0100 (late)"]
    async with db.session() as session:
        heartbeat = await session.get(SchedulerHeartbeat, 1)
    assert heartbeat is not None and heartbeat.first_alive_at == clock.now
    # Later sweeps do not reach back before the first run either.
    assert scheduler.window_start(clock.now + timedelta(hours=1)) == \
        clock.now - timedelta(minutes=15)


async def test_a_week_long_outage_lists_a_week_of_misses(db: Database) -> None:
    planner = EveryTenMinutes(stamp="%d%H%M")
    clock = Clock(T0 + timedelta(seconds=5))
    first = Scheduler(db, [planner], now=clock, grace=timedelta(minutes=15))
    assert (await first.run_due())[Outcome.sent] == 1  # tick:0100, on time
    await alive_at(db, T0 + timedelta(minutes=1))  # its last heartbeat; then down a week
    clock.now = T0 + timedelta(days=7, minutes=2)
    second = Scheduler(db, [planner], now=clock, grace=timedelta(minutes=15))
    await second.start()
    # Every tick from T0 + 10 min to a week later: the last two within the grace period.
    assert second.fired == {Outcome.sent: 0, Outcome.late: 2, Outcome.missed: 7 * 144 - 2}
    assert planner.missed_keys[0] == "tick:010110" and len(set(planner.missed_keys)) == 1006
    # Caught up: the hourly sweep looks back the usual two days, not to the outage.
    clock.now += timedelta(hours=1)
    assert second.window_start(clock.now) == clock.now - second.lookback


async def test_the_running_scheduler_beats_every_minute(db: Database) -> None:
    application = ApplicationBuilder().token("1:x").updater(None).build()
    clock = Clock(T0)
    scheduler = Scheduler(db, [EveryTenMinutes()], now=clock)
    scheduler.attach(application.job_queue)
    await application.job_queue.start()
    try:
        await scheduler.start()
        job = application.job_queue.scheduler.get_job(scheduler_module.HEARTBEAT_JOB)
        assert job is not None
        assert job.trigger.interval == scheduler_module.HEARTBEAT_EVERY
        clock.now = T0 + timedelta(minutes=1)
        await job.args[1].run(application)  # as APScheduler runs it
        async with db.session() as session:
            heartbeat = await session.get(SchedulerHeartbeat, 1)
        assert heartbeat is not None
        assert (heartbeat.first_alive_at, heartbeat.alive_at) == (T0, clock.now)
        scheduler.detach()  # another process leads now: it beats, not this one
        assert application.job_queue.scheduler.get_job(scheduler_module.HEARTBEAT_JOB) is None
    finally:
        await application.job_queue.stop()


async def test_concurrent_firing_sends_once(db: Database) -> None:
    clock = Clock(T0 + timedelta(seconds=1))
    schedulers = [Scheduler(db, [EveryTenMinutes()], now=clock) for _ in range(4)]
    occurrence = Occurrence("tick:0100", T0)
    results = await asyncio.gather(*(s.fire("test", occurrence) for s in schedulers))
    assert sorted(map(str, results)) == ["None", "None", "None", Outcome.sent]
    async with db.session() as session:
        assert (await session.execute(select(func.count(OutboxMessage.id)))).scalar_one() == 1


async def test_rebuild_places_one_job_per_future_occurrence(db: Database) -> None:
    application = ApplicationBuilder().token("1:x").updater(None).build()
    clock = Clock(T0 + timedelta(minutes=1))
    scheduler = Scheduler(db, [EveryTenMinutes()], now=clock, horizon=timedelta(hours=1))
    scheduler.attach(application.job_queue)
    await application.job_queue.start()
    try:
        assert await scheduler.rebuild() == 6
        assert await scheduler.rebuild() == 6  # replaced, not duplicated
        jobs = [j for j in application.job_queue.scheduler.get_jobs() if j.id.startswith("due:")]
        assert len(jobs) == 6
        assert min(j.next_run_time for j in jobs) == T0 + timedelta(minutes=10)
    finally:
        await application.job_queue.stop()


class Raising(EveryTenMinutes):
    """Writes its message, then raises the error `error_for` gives the occurrence, if any
    (a failure after the work, so the test sees that the work is rolled back)."""

    def __init__(self, error_for: Callable[[Occurrence], Exception | None]) -> None:
        super().__init__()
        self.error_for = error_for

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        await super().fire(session, occurrence, now, late)
        error = self.error_for(occurrence)
        if error is not None:
            raise error


def locked(failures: int) -> Raising:
    """Fails its first `failures` writes as SQLite does when the write lock stays taken."""
    left = [failures]

    def error_for(_occurrence: Occurrence) -> Exception | None:
        if not left[0]:
            return None
        left[0] -= 1
        return OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    return Raising(error_for)


async def test_a_job_that_cannot_get_the_database_is_tried_again_and_sends_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "FIRE_RETRY_DELAY", 0.01)
    clock = Clock(T0 + timedelta(seconds=1))
    scheduler = Scheduler(db, [locked(failures=2)], now=clock)
    assert await scheduler.fire("test", Occurrence("tick:0100", T0)) == Outcome.sent
    assert await texts(db) == ["tick:0100"]  # the failed attempts left nothing behind
    # Past the attempts the error is not swallowed (the job's error handler logs it) …
    clock.now = T0 + timedelta(minutes=10, seconds=1)
    stubborn = Scheduler(db, [locked(failures=scheduler_module.FIRE_ATTEMPTS)], now=clock)
    with pytest.raises(OperationalError):
        await stubborn.fire("test", Occurrence("tick:0110", T0 + timedelta(minutes=10)))
    # … and the occurrence stays unclaimed, so the next sweep still fires it.
    clock.now = T0 + timedelta(minutes=10, seconds=30)
    assert (await scheduler.run_due())[Outcome.sent] == 1
    assert await texts(db) == ["tick:0100", "tick:0110"]


async def test_jobs_due_together_share_transactions_and_one_error_costs_nobody_else(
    db: Database,
) -> None:
    clock = Clock(T0 + timedelta(seconds=1))
    broken = {"job:3"}
    planner = Raising(lambda o: ValueError("cannot be rendered") if o.key in broken else None)
    scheduler = Scheduler(db, [planner], now=clock)
    due = [Occurrence(f"job:{n}", T0) for n in range(5)]
    results = await asyncio.gather(*(scheduler.fire("test", o) for o in [*due, due[1]]),
                                   return_exceptions=True)
    assert isinstance(results[3], ValueError)  # its own caller learns of it (the job's log)
    assert [results[n] for n in (0, 1, 2, 4)] == [Outcome.sent] * 4
    assert results[5] is None  # the same occurrence twice in one batch: fired once
    assert sorted(await texts(db)) == ["job:0", "job:1", "job:2", "job:4"]
    # All six came due before the first transaction began: one batch (which failed as a
    # whole, and was then fired one by one).
    assert scheduler._due_now.batches == 1
    # The broken one was left unclaimed: it can still fire.
    broken.clear()
    assert await scheduler.fire("test", due[3]) == Outcome.sent
    assert sorted(await texts(db)) == ["job:0", "job:1", "job:2", "job:3", "job:4"]


async def test_catching_up_fires_many_in_few_transactions(db: Database) -> None:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    clock = Clock(T0 + timedelta(hours=20))
    scheduler = Scheduler(db, [EveryTenMinutes()], now=clock, grace=timedelta(hours=21))
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        counts = await scheduler.run_due()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert counts[Outcome.late] == 120  # every ten minutes for 20 hours
    assert len(await texts(db)) == 120
    claims = [s for s in statements if s.startswith("INSERT INTO schedule_marks")]
    assert len(claims) == 1


async def test_the_same_occurrence_twice_in_one_batch_fires_once(db: Database) -> None:
    clock = Clock(T0 + timedelta(seconds=1))
    scheduler = Scheduler(db, [EveryTenMinutes()], now=clock)
    first, second = Occurrence("job:a", T0), Occurrence("job:b", T0)
    results = await asyncio.gather(*(scheduler.fire("test", o) for o in (first, second, first)))
    assert results == [Outcome.sent, Outcome.sent, None]
    assert scheduler._due_now.batches == 1  # one multi-row claim, duplicates and all
    assert sorted(await texts(db)) == ["job:a", "job:b"]
