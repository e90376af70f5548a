"""The storage layer behaves the same on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError

from storage import db as storage_db
from storage.db import Database
from storage.models import Unit
from storage.models import User


async def test_times_come_back_aware_utc(db: Database) -> None:
    beijing = timezone(timedelta(hours=8))
    async with db.session() as session:
        session.add(User(telegram_id=1, created_at=datetime(2026, 1, 1, 8, 0, tzinfo=beijing)))
    async with db.session() as session:
        user = (await session.execute(select(User))).scalar_one()
    assert user.created_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert user.created_at.tzinfo is not None


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.session() as session:
            session.add(User(telegram_id=2, created_at=datetime(2026, 1, 1)))


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(User(telegram_id=3, unit_id=999))


async def test_failed_unit_of_work_changes_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            session.add(Unit(code="sc", name="四川省公安厅", short_name="四川"))
            await session.flush()
            raise RuntimeError("boom")
    async with db.session() as session:
        assert (await session.execute(select(Unit))).first() is None


async def test_concurrent_writers_lose_no_update(db: Database) -> None:
    """Read-modify-write from many units of work at once: BEGIN IMMEDIATE on SQLite (and
    row locks on PostgreSQL) serialise them instead of losing updates or failing."""
    async with db.session() as session:
        session.add(User(telegram_id=42, preferences={"count": 0}))

    async def increment() -> None:
        async with db.session() as session:
            user = (
                await session.execute(select(User).where(User.telegram_id == 42).with_for_update())
            ).scalar_one()
            user.preferences = {"count": user.preferences["count"] + 1}

    await asyncio.gather(*(increment() for _ in range(20)))
    async with db.session() as session:
        user = (await session.execute(select(User).where(User.telegram_id == 42))).scalar_one()
    assert user.preferences["count"] == 20


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 5000


async def test_sqlite_writers_of_a_process_take_turns_in_arrival_order(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First come, first served, instead of SQLite's busy handler polling; a writer that
    waits longer than the busy timeout fails as SQLite would ("database is locked")."""
    order: list[int] = []

    async def write(n: int) -> None:
        async with sqlite_db.session() as session:
            order.append(n)
            session.add(User(telegram_id=1000 + n))
            await session.flush()
            await asyncio.sleep(0.005)

    await asyncio.gather(*(write(n) for n in range(12)))
    assert order == list(range(12))

    monkeypatch.setattr(storage_db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with sqlite_db.session():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    with pytest.raises(OperationalError, match="database is locked"):
        await write(99)
    release.set()
    await holder
    await write(99)  # and the next writer goes on
    assert order[-1] == 99
