"""Scheduler leadership in one process: the election on PostgreSQL (one leader, a follower
taking over, changes made on a follower reaching the leader, a lost connection ending
leadership) and the lone SQLite process that always leads. Separate processes, killed
with SIGKILL, are in tests/test_multiprocess.py."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bot.emulator import BotApiEmulator
from bot.health import check_scheduler
from bot.leader import APPLICATION_NAME
from bot.scheduler import JOB_PREFIX
from bot.testing import BotHarness
from tests.cluster import FIRST_ROOM, eventually, seed_reminder

RETRY = 0.2


def meeting_jobs(harness: BotHarness) -> set[str]:
    queue = harness.application.job_queue
    assert queue is not None
    return {job.id for job in queue.scheduler.get_jobs() if job.id.startswith(JOB_PREFIX)}


def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("leader election is for several processes on PostgreSQL")


async def test_the_lone_sqlite_process_leads(emulator: BotApiEmulator, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    async with BotHarness(emulator, database_url) as harness:
        assert harness.services.leader is not None
        assert harness.services.leader.is_leader and not harness.services.leader.elected
        assert harness.services.scheduler is not None
        assert harness.services.scheduler.job_queue is harness.application.job_queue


async def test_one_leader_and_a_follower_that_takes_over(
    emulator: BotApiEmulator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    postgres_only(database_url)
    caplog.set_level(logging.INFO, logger="bot.leader")
    emulator.add_group(FIRST_ROOM, "值班室")
    emulator.add_group(FIRST_ROOM - 1, "值班室")
    first = BotHarness(emulator, database_url, leader_retry_seconds=RETRY)
    second = BotHarness(emulator, database_url, leader_retry_seconds=RETRY)
    await seed_reminder(first.db, FIRST_ROOM, datetime.now(UTC) + timedelta(hours=1))
    async with first:
        assert first.services.leader is not None and first.services.leader.is_leader
        async with second:
            assert second.services.leader is not None
            assert not second.services.leader.is_leader
            assert len(meeting_jobs(first)) == 1 and not meeting_jobs(second)
            # A follower's change is placed by the leader (NOTIFY), not by the follower.
            await seed_reminder(second.db, FIRST_ROOM - 1,
                                datetime.now(UTC) + timedelta(hours=2))
            await second.services.rescheduled("meetings")
            await eventually(lambda: len(meeting_jobs(first)) == 2)
            assert not meeting_jobs(second)
            # Several rounds later there is still exactly one leader.
            await asyncio.sleep(RETRY * 3)
            assert first.services.leader.is_leader and not second.services.leader.is_leader
            await first.__aexit__(None, None, None)
            await eventually(lambda: len(meeting_jobs(second)) == 2)
            assert second.services.leader.is_leader
            await first.__aenter__()  # the harness's own exit closes it again
            await asyncio.sleep(RETRY * 3)
            assert second.services.leader.is_leader and not first.services.leader.is_leader
    assert any("is now the leader" in r.getMessage() for r in caplog.records)
    assert any("is a follower" in r.getMessage() for r in caplog.records)


async def test_a_leader_that_loses_its_connection_stops_scheduling(
    emulator: BotApiEmulator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    postgres_only(database_url)
    caplog.set_level(logging.INFO, logger="bot.leader")
    emulator.add_group(FIRST_ROOM, "值班室")
    emulator.add_group(FIRST_ROOM - 1, "值班室")
    async with BotHarness(emulator, database_url, leader_retry_seconds=RETRY) as harness:
        await seed_reminder(harness.db, FIRST_ROOM, datetime.now(UTC) + timedelta(hours=1))
        await harness.services.rescheduled("meetings")
        leader = harness.services.leader
        assert leader is not None and leader.is_leader and meeting_jobs(harness)
        async with harness.db.session() as session:
            ended = (await session.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE :name AND datname = current_database()"),
                {"name": APPLICATION_NAME + "%"})).scalar_one()
        assert ended == 1
        await eventually(lambda: any("no longer the leader" in r.getMessage()
                                     for r in caplog.records))
        # Leadership lost means no jobs here; the next round wins the lock again and
        # rebuilds them from the database.
        await eventually(lambda: leader.is_leader and bool(meeting_jobs(harness)))


async def test_check_names_the_leader(emulator: BotApiEmulator, database_url: str) -> None:
    async with BotHarness(emulator, database_url) as harness:
        result = await check_scheduler(harness.settings)
        assert result.ok
        if database_url.startswith("sqlite"):
            assert "SQLite" in result.detail
        else:
            assert harness.services.leader is not None
            assert f"{APPLICATION_NAME} {harness.services.leader.name}" in result.detail
    if database_url.startswith("postgresql"):
        assert "no process leads" in (await check_scheduler(harness.settings)).detail
