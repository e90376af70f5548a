"""Lookups' audit entries: on record before the answer, many lookups to one commit."""

from __future__ import annotations

import asyncio
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.viewlog import ViewLog
from storage.access import audit_row
from storage.db import Database
from storage.models import AuditEntry


def viewed(telegram_id: int) -> list[dict[str, object]]:
    return [audit_row("contact.view", actor_telegram_id=telegram_id, subject_type="liaison",
                      subject_id=n, query="四川") for n in range(3)]


async def count(db: Database) -> int:
    async with db.reading() as session:
        return (await session.execute(select(func.count(AuditEntry.id)))).scalar_one()


async def test_lookups_arriving_together_share_a_commit(db: Database) -> None:
    log = ViewLog(db)
    await asyncio.gather(*(log.record(viewed(n)) for n in range(20)))
    assert await count(db) == 60
    assert log.commits < 20


async def test_each_lookup_returns_only_once_its_entries_are_committed(db: Database) -> None:
    log = ViewLog(db)
    await log.record(viewed(1))
    assert await count(db) == 3
    await log.record([])
    assert log.commits == 1


async def test_a_failed_commit_fails_every_lookup_in_it(db: Database) -> None:
    log = ViewLog(db)
    broken = [{**viewed(2)[0], "action": None}]  # action is NOT NULL
    results = await asyncio.gather(log.record(viewed(1)), log.record(broken),
                                   return_exceptions=True)
    assert all(isinstance(result, IntegrityError) for result in results)
    assert await count(db) == 0
    await log.record(viewed(3))  # and the log goes on
    assert await count(db) == 3


async def test_entries_are_stamped_with_the_bots_clock(db: Database) -> None:
    """The lookup quotas count by the bot's clock (a FakeClock in the tests); an entry
    that carries its own time keeps it."""
    moment = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    log = ViewLog(db, now=lambda: moment)
    earlier = moment - timedelta(minutes=5)
    await log.record([*viewed(1)[:1], {**viewed(1)[1], "at": earlier}])
    async with db.reading() as session:
        times = (await session.execute(select(AuditEntry.at).order_by(AuditEntry.id))).scalars()
        assert list(times) == [moment, earlier]
