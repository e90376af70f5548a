"""Scheduler leadership in one process: the lease itself on PostgreSQL (taken when free
or expired, kept by renewing, its token fencing claims), leaders and followers through
the real `Application` (a follower taking over, a follower's change reaching the leader
with or without NOTIFY, a leader whose lease was taken firing nothing), and the lone
SQLite process that always leads. Separate processes, killed with SIGKILL or frozen
with SIGSTOP, are in tests/test_multiprocess.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import ConfigError
from bot.config import load_settings
from bot.emulator import BotApiEmulator
from bot.health import check_scheduler
from bot.leader import APPLICATION_NAME
from bot.plans.meetings import NAME as MEETINGS
from bot.scheduler import JOB_PREFIX
from bot.scheduler import Occurrence
from bot.scheduler import claim_occurrences
from storage import lease
from storage.db import Database
from storage.lease import SCHEDULER
from storage.lease import Fence
from storage.lease import Fenced
from storage.models import ScheduleMark
from tests.cluster import FIRST_ROOM
from tests.cluster import eventually
from tests.cluster import reminders_sent
from tests.cluster import seed_reminder
from tools.testing import BotHarness

RETRY = 0.2
LEASE = 1.0
FAST = {"leader_retry_seconds": RETRY, "leader_lease_seconds": LEASE}


def meeting_jobs(harness: BotHarness) -> set[str]:
    queue = harness.application.job_queue
    assert queue is not None
    return {job.id for job in queue.scheduler.get_jobs()
            if job.id.startswith(f"{JOB_PREFIX}{MEETINGS}:")}


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("leader election is for several processes on PostgreSQL")


@pytest.fixture
async def autocommit(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection as the leader uses one: every statement its own transaction."""
    postgres_only(database_url)
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def expire(connection: AsyncConnection) -> None:
    """The holder stopped renewing (frozen) and its lease ran out."""
    await connection.execute(text(
        "UPDATE leader_lease SET expires_at = clock_timestamp() - interval '1 second'"))


async def marks(db: Database) -> int:
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(ScheduleMark))).scalar_one()


async def renewed_past_its_end(connection: AsyncConnection) -> None:
    """Wait until the lease as it stands now would have ended, and was renewed since."""
    held = await lease.holder(connection, SCHEDULER)
    assert held is not None and not held.expired

    async def renewed() -> bool:
        now = await lease.holder(connection, SCHEDULER)
        assert now is not None and now.token == held.token, "the lease changed hands"
        clock = (await connection.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return clock > held.expires_at and not now.expired

    await eventually(renewed, 10, "renewals past the lease's end")


def occurrence(key: str) -> list[tuple[Occurrence, str]]:
    return [(Occurrence(key, datetime.now(UTC)), "sent")]


# --------------------------------------------------------------------------- the lease


async def test_the_lease_is_taken_when_free_or_expired_and_kept_by_renewing(
    autocommit: AsyncConnection,
) -> None:
    first = await lease.acquire(autocommit, SCHEDULER, "a", 30)
    assert first == 1
    assert await lease.acquire(autocommit, SCHEDULER, "b", 30) is None
    before = await lease.holder(autocommit, SCHEDULER)
    renewed = await lease.renew(autocommit, SCHEDULER, first, 60)
    assert renewed is not None and 55 < renewed.seconds_left <= 60
    after = await lease.holder(autocommit, SCHEDULER)
    assert before is not None and after is not None
    assert after.expires_at > before.expires_at and after.holder == "a" and after.token == 1
    assert await lease.acquire(autocommit, SCHEDULER, "b", 30) is None
    # Frozen: no renewal, the lease runs out; the holder cannot renew an expired lease
    # (even though nobody took it yet), and the next taker gets a new token.
    await expire(autocommit)
    assert await lease.renew(autocommit, SCHEDULER, first, 30) is None
    second = await lease.acquire(autocommit, SCHEDULER, "b", 30)
    assert second == 2
    assert await lease.renew(autocommit, SCHEDULER, first, 30) is None
    assert await lease.acquire(autocommit, SCHEDULER, "a", 30) is None
    # Released on a normal stop: free at once.
    assert not await lease.release(autocommit, SCHEDULER, first)
    assert await lease.release(autocommit, SCHEDULER, second)
    held = await lease.holder(autocommit, SCHEDULER)
    assert held is not None and held.expired
    assert await lease.acquire(autocommit, SCHEDULER, "a", 30) == 3


async def test_a_claim_under_a_stale_token_is_refused(
    autocommit: AsyncConnection, db: Database
) -> None:
    old = await lease.acquire(autocommit, SCHEDULER, "old", 30)
    assert old is not None
    async with db.session() as session:
        assert await claim_occurrences(session, occurrence("k1"), datetime.now(UTC),
                                       fence=Fence(SCHEDULER, old, 30)) == {"k1"}
    await expire(autocommit)
    # Expired, nobody took it yet: refused all the same.
    with pytest.raises(Fenced):
        async with db.session() as session:
            await claim_occurrences(session, occurrence("k2"), datetime.now(UTC),
                                    fence=Fence(SCHEDULER, old, 30))
    new = await lease.acquire(autocommit, SCHEDULER, "new", 30)
    assert new == old + 1
    with pytest.raises(Fenced):
        async with db.session() as session:
            await claim_occurrences(session, occurrence("k2"), datetime.now(UTC),
                                    fence=Fence(SCHEDULER, old, 30))
    async with db.session() as session:
        assert await claim_occurrences(session, occurrence("k2"), datetime.now(UTC),
                                       fence=Fence(SCHEDULER, new, 30)) == {"k2"}
    assert await marks(db) == 2
    # This process's own reckoning says the lease is over: refused without asking.
    with pytest.raises(Fenced, match="past its end here"):
        async with db.session() as session:
            await claim_occurrences(session, occurrence("k3"), datetime.now(UTC),
                                    fence=Fence(SCHEDULER, new, 30, still_valid=lambda: False))


async def test_no_takeover_while_a_claim_under_the_old_token_is_open(
    autocommit: AsyncConnection, db: Database
) -> None:
    old = await lease.acquire(autocommit, SCHEDULER, "old", 0.5)
    assert old is not None
    async with db.session() as session:
        await claim_occurrences(session, occurrence("k1"), datetime.now(UTC),
                                fence=Fence(SCHEDULER, old, 30))
        # It runs out while this claim is being written (nothing can change the row
        # meanwhile, not even a test making it expire sooner).

        async def expired() -> bool:
            held = await lease.holder(autocommit, SCHEDULER)
            return held is not None and held.expired

        await eventually(expired, 10, "the lease's end")
        # The row is held for the claim: the follower does not wait, and does not take it.
        assert await lease.acquire(autocommit, SCHEDULER, "new", 30) is None
    assert await lease.acquire(autocommit, SCHEDULER, "new", 30) == old + 1
    assert await marks(db) == 1


async def test_a_claim_frozen_before_its_commit_is_ended_by_the_server(
    autocommit: AsyncConnection, database_url: str
) -> None:
    """A leader stopped inside a claiming transaction would hold the lease row: the
    server ends that transaction one lease after it went idle, and the row is free."""
    token = await lease.acquire(autocommit, SCHEDULER, "old", 30)
    assert token is not None
    frozen = Database(database_url)
    try:
        async with frozen.engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with frozen.sessionmaker(bind=connection) as session:
                await Fence(SCHEDULER, token, 0.3).check(session)

                async def ended() -> bool:
                    gone = (await autocommit.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pid})).scalar_one() == 0
                    return bool(gone)

                await eventually(ended, 10, "the idle claim ended by the server")
    except Exception as error:  # the dead connection's rollback fails: expected
        assert "terminat" in str(error).lower() or "closed" in str(error).lower(), error
    finally:
        await frozen.dispose()
    await expire(autocommit)
    assert await lease.acquire(autocommit, SCHEDULER, "new", 30) == token + 1


async def test_the_lease_must_outlast_two_renewals() -> None:
    with pytest.raises(ConfigError, match="LEADER_LEASE_SECONDS"):
        load_settings(_env_file=None, leader_retry_seconds=5, leader_lease_seconds=8)
    settings = load_settings(_env_file=None)
    assert (settings.leader_retry_seconds, settings.leader_lease_seconds) == (5, 15)


# --------------------------------------------------------------------------- leaders


async def test_the_lone_sqlite_process_leads(emulator: BotApiEmulator, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    async with BotHarness(emulator, database_url) as harness:
        assert harness.services.leader is not None
        assert harness.services.leader.is_leader and not harness.services.leader.elected
        assert harness.services.scheduler is not None
        assert harness.services.scheduler.job_queue is harness.application.job_queue


async def test_one_leader_and_a_follower_that_takes_over(
    emulator: BotApiEmulator, database_url: str, autocommit: AsyncConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.leader")
    emulator.add_group(FIRST_ROOM, "值班室")
    emulator.add_group(FIRST_ROOM - 1, "值班室")
    first = BotHarness(emulator, database_url, **FAST)
    second = BotHarness(emulator, database_url, **FAST)
    await seed_reminder(first.db, FIRST_ROOM, datetime.now(UTC) + timedelta(hours=1))
    async with first:
        assert first.services.leader is not None and first.services.leader.is_leader
        async with second:
            assert second.services.leader is not None
            assert not second.services.leader.is_leader
            assert len(meeting_jobs(first)) == 1 and not meeting_jobs(second)
            # A follower's change is placed by the leader, not by the follower.
            await seed_reminder(second.db, FIRST_ROOM - 1,
                                datetime.now(UTC) + timedelta(hours=2))
            await second.services.rescheduled("meetings")
            await eventually(lambda: len(meeting_jobs(first)) == 2)
            assert not meeting_jobs(second)
            # Renewals past the first lease's end: still exactly one leader.
            token = first.services.leader.token
            await renewed_past_its_end(autocommit)
            assert first.services.leader.is_leader and not second.services.leader.is_leader
            assert first.services.leader.token == token
            # A leader stopping ends its lease: the follower takes over at its next try.
            await first.__aexit__(None, None, None)
            await eventually(lambda: len(meeting_jobs(second)) == 2)
            assert second.services.leader.is_leader
            assert second.services.leader.token == token + 1
            await first.__aenter__()  # the harness's own exit closes it again
            await renewed_past_its_end(autocommit)
            assert second.services.leader.is_leader and not first.services.leader.is_leader
    assert any("is now the leader" in r.getMessage() for r in caplog.records)
    assert any("is a follower" in r.getMessage() for r in caplog.records)


async def test_a_change_reaches_the_leader_without_notify(
    emulator: BotApiEmulator, database_url: str, autocommit: AsyncConnection
) -> None:
    """Behind PgBouncer in transaction mode LISTEN does not work: the change counter
    the leader reads with each renewal is enough."""
    emulator.add_group(FIRST_ROOM, "值班室")
    async with BotHarness(emulator, database_url, **FAST) as harness:
        leader = harness.services.leader
        assert leader is not None and leader.is_leader and not meeting_jobs(harness)
        await leader._unlisten()  # deaf to NOTIFY from here on
        await seed_reminder(harness.db, FIRST_ROOM, datetime.now(UTC) + timedelta(hours=1))
        await lease.bump_changes(autocommit, ["meetings"])  # what a follower does
        await eventually(lambda: len(meeting_jobs(harness)) == 1, 10, "the job placed")


async def test_a_leader_whose_lease_was_taken_fires_nothing_and_steps_down(
    emulator: BotApiEmulator, database_url: str, autocommit: AsyncConnection,
) -> None:
    """What a leader finds when it wakes from a freeze: another process holds the lease.
    What falls due is fenced off (by its claim, or because its renewal failed first),
    its jobs go; once it leads again it sends it, once."""
    emulator.add_group(FIRST_ROOM, "值班室")
    async with BotHarness(emulator, database_url, leader_retry_seconds=RETRY,
                          leader_lease_seconds=30) as harness:
        leader, scheduler = harness.services.leader, harness.services.scheduler
        assert leader is not None and scheduler is not None and leader.is_leader
        await seed_reminder(harness.db, FIRST_ROOM - 1, datetime.now(UTC) + timedelta(hours=1))
        await harness.services.rescheduled("meetings")
        assert meeting_jobs(harness)
        token = leader.token
        assert token is not None
        await expire(autocommit)
        assert await lease.acquire(autocommit, SCHEDULER, "elsewhere:1", 3600) == token + 1
        meeting_id = await seed_reminder(harness.db, FIRST_ROOM,
                                         datetime.now(UTC) - timedelta(seconds=30))
        counts = await scheduler.run_due()
        assert sum(counts.values()) == 0 and await marks(harness.db) == 0
        await eventually(lambda: not leader.is_leader, 5, "stepping down")
        assert not meeting_jobs(harness)
        assert not (await harness.deliver()).messages
        # The other process stops: this one leads again and its catch-up sends it.
        assert await lease.release(autocommit, SCHEDULER, token + 1)
        await eventually(lambda: leader.is_leader and bool(meeting_jobs(harness)), 10,
                         "leading again")
        assert leader.token == token + 2
        await harness.deliver()
        assert reminders_sent(emulator, meeting_id) == 1 and await marks(harness.db) == 1


async def test_a_leader_that_loses_its_connection_keeps_its_lease(
    emulator: BotApiEmulator, database_url: str, autocommit: AsyncConnection
) -> None:
    """A connection is not leadership: the next renewal connects again, same token."""
    async with BotHarness(emulator, database_url, **FAST) as harness:
        leader = harness.services.leader
        assert leader is not None and leader.is_leader
        token = leader.token
        ended = (await autocommit.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE :name AND datname = current_database()"),
            {"name": APPLICATION_NAME + "%"})).scalar_one()
        assert ended >= 1
        since = (await autocommit.execute(text("SELECT clock_timestamp()"))).scalar_one()

        async def renewed() -> bool:
            held = await lease.holder(autocommit, SCHEDULER)
            return held is not None and held.expires_at > since + timedelta(seconds=LEASE / 2)

        await eventually(renewed, 10, "a renewal after the connection was lost")
        assert leader.is_leader and leader.token == token


async def test_check_names_the_leader(emulator: BotApiEmulator, database_url: str) -> None:
    async with BotHarness(emulator, database_url) as harness:
        result = await check_scheduler(harness.settings)
        assert result.ok
        if database_url.startswith("sqlite"):
            assert "SQLite" in result.detail
        else:
            assert harness.services.leader is not None
            assert f"{APPLICATION_NAME} {harness.services.leader.name}" in result.detail
            assert "lease #1" in result.detail
    if database_url.startswith("postgresql"):
        assert "no process leads" in (await check_scheduler(harness.settings)).detail
