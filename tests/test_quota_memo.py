"""The quotas' memo of a person's history (storage.quota.history): what it reads, when,
and what it counts without reading. On both databases."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from core.quota import DAY
from storage import quota as store
from storage.access import audit_many
from storage.access import audit_row
from storage.db import Database

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
PERSON = 910000077
HOUR = timedelta(hours=1)


def card(liaison: int, unit: int = 7) -> dict[str, object]:
    return audit_row("contact.view", actor_telegram_id=PERSON, subject_type="liaison",
                     subject_id=liaison, unit_id=unit)


async def write(db: Database, at: datetime, *rows: dict[str, object]) -> None:
    """Rows as another process writes them (this one's memo does not hear of them)."""
    async with db.session() as session:
        await audit_many(session, [{**row, "at": at} for row in rows])


async def seen(db: Database, now: datetime) -> set[str]:
    async with db.reading() as session:
        history = await store.history(session, PERSON, now=now, since=now - DAY,
                                      views_since=now - HOUR)
    return {subject for _kind, subject in history.seen}


async def test_another_process_lookups_count_from_the_next_read(db: Database) -> None:
    await write(db, NOW - timedelta(hours=3), card(1))
    assert await seen(db, NOW) == {"1"}  # the whole day, read once
    await write(db, NOW + timedelta(seconds=1), card(2))
    # Within FRESH of the read the memo answers alone; after it, the newer rows count.
    assert await seen(db, NOW + timedelta(seconds=1)) == {"1"}
    assert await seen(db, NOW + store.FRESH + timedelta(seconds=1)) == {"1", "2"}
    # A row committed late (stamped before the last read, less the overlap) counts from
    # the next whole read.
    late = NOW
    await write(db, late, card(3))
    assert await seen(db, NOW + 2 * store.FRESH + timedelta(seconds=2)) == {"1", "2"}
    assert await seen(db, NOW + store.REREAD + timedelta(seconds=1)) == {"1", "2", "3"}
    # Nearly a day later the first one is out of the window.
    assert await seen(db, NOW + DAY - timedelta(seconds=30)) == {"2", "3"}


async def test_this_process_lookups_count_at_once_and_a_lift_rereads(db: Database) -> None:
    assert await seen(db, NOW) == set()
    async with db.reading() as session:
        store.shown(session, PERSON, [card(5)], NOW)
    assert await seen(db, NOW + timedelta(seconds=1)) == {"5"}
    async with db.session() as session:
        await store.record(session, store.UNBLOCK, now=NOW + timedelta(seconds=1),
                           subject_type="user", subject_id=PERSON)
    async with db.reading() as session:
        history = await store.history(session, PERSON, now=NOW + timedelta(seconds=1),
                                      since=NOW - DAY, views_since=NOW - HOUR)
    assert history.lifted_at == NOW + timedelta(seconds=1)


async def test_a_clock_set_back_reads_the_whole_day_again(db: Database) -> None:
    assert await seen(db, NOW) == set()
    await write(db, NOW - timedelta(minutes=30), card(8))
    assert await seen(db, NOW - timedelta(minutes=1)) == {"8"}
