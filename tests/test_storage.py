"""The storage layer behaves the same on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import Unit, User


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
