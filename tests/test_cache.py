"""Lookups served from memory stay true: the data epoch moves with every change to what
they read (whoever writes it), and a new epoch empties the caches."""

from __future__ import annotations

import asyncio
from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy import delete
from sqlalchemy import update

from storage.access import audit
from storage.access import duty_room_by_chat
from storage.cache import EpochCache
from storage.cache import EpochWatch
from storage.cache import bump_data_epoch
from storage.cache import data_epoch
from storage.dataio import import_file
from storage.db import Database
from storage.models import Liaison
from storage.models import User
from storage.models import Zone
from storage.roster import roster_for_room
from storage.roster import set_override
from tools.testing import BotHarness

ADMIN = 910000001
OFFICER = 910000007  # 王雅琴, officer in 四川
SICHUAN_ROOM = -1001000000103


def test_an_epoch_cache_serves_only_its_epoch() -> None:
    cache = EpochCache(max_entries=2)
    cache.put(1, "a", "A1")
    assert cache.get(1, "a") == "A1"
    assert cache.get(0, "a") is None  # an older reader is not served
    cache.put(0, "b", "stale")  # nor kept
    assert cache.get(1, "b") is None
    cache.put(1, "b", "B1")
    cache.put(1, "c", "C1")  # the least recently used ("a") goes
    assert cache.get(1, "a") is None and len(cache) == 2
    assert cache.get(2, "b") is None and len(cache) == 0  # a new epoch starts empty


async def test_callers_share_epoch_reads_but_never_one_begun_before_they_came() -> None:
    committed = 0
    under_way, release = asyncio.Event(), asyncio.Event()

    async def read() -> int:
        seen = committed  # what a transaction beginning now would see
        under_way.set()
        await release.wait()
        return seen

    watch = EpochWatch(read)
    early = [asyncio.create_task(watch.current()) for _ in range(5)]
    await under_way.wait()
    committed = 1  # a change commits while the first read is under way
    late = asyncio.create_task(watch.current())
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*early) == [0] * 5
    assert await late == 1  # it waited for a read that began after it came
    assert watch.reads == 2


async def test_a_failed_epoch_read_fails_its_callers_and_the_next_read_goes_on() -> None:
    answers = iter([RuntimeError("database gone"), 7])

    async def read() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watch = EpochWatch(read)
    with pytest.raises(RuntimeError):
        await watch.current()
    assert await watch.current() == 7


async def test_every_watched_change_moves_the_epoch_and_others_do_not(db: Database) -> None:
    report = await import_file(db, "data/sample.yaml")
    assert not report.problems

    async def epoch() -> int:
        async with db.reading() as session:
            value = await data_epoch(session)
        assert await db.epoch.current() == value  # what updates read (on SQLite, its own way)
        return value

    before = await epoch()
    async with db.session() as session:  # what lookups never read
        await audit(session, "test.note")
    assert await epoch() == before
    changes = [
        update(Liaison).where(Liaison.name == "张伟").values(title="改"),
        update(User).where(User.telegram_id == OFFICER).values(active=False),
        update(Zone).values(short_name="改"),
        delete(Liaison).where(Liaison.name == "李娜"),
    ]
    for change in changes:
        async with db.session() as session:
            await session.execute(change)
        after = await epoch()
        assert after > before, change
        before = after
    async with db.session() as session:
        await bump_data_epoch(session)
    assert await epoch() == before + 1


async def test_the_epoch_connection_kept_on_sqlite_is_replaced_when_it_breaks(
    sqlite_db: Database,
) -> None:
    first = await sqlite_db.epoch.current()
    assert sqlite_db._epoch_connection is not None
    await sqlite_db._epoch_connection.close()  # as if the connection had failed under it
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver says, callers learn it
        await sqlite_db.epoch.current()
    async with sqlite_db.session() as session:
        await bump_data_epoch(session)
    assert await sqlite_db.epoch.current() == first + 1  # a fresh connection, current data


async def other_process(database_url: str, *statements: object) -> None:
    """A change made elsewhere: a second connection pool, as `python -m bot import` or
    another bot process would."""
    other = Database(database_url)
    try:
        async with other.session() as session:
            for statement in statements:
                await session.execute(statement)  # type: ignore[call-overload]
    finally:
        await other.dispose()


async def test_a_phone_changed_elsewhere_is_shown_at_once(desk: BotHarness) -> None:
    first = await desk.send(ADMIN, "/contact 陕西 刑侦")
    assert "+86 100 0000 0101" in first.text
    assert "+86 100 0000 0101" in (await desk.send(ADMIN, "/contact 陕西 刑侦")).text
    await other_process(desk.db.url, update(Liaison).where(Liaison.name == "王建国")
                        .values(phones=["+86 100 0000 9999"]))
    again = await desk.send(ADMIN, "/contact 陕西 刑侦")
    assert "+86 100 0000 9999" in again.text and "0000 0101" not in again.text


async def test_an_officer_deactivated_elsewhere_is_refused_at_once(desk: BotHarness) -> None:
    assert "👤" in (await desk.send(OFFICER, "/contact 陕西")).text
    await other_process(desk.db.url, update(User).where(User.telegram_id == OFFICER)
                        .values(active=False))
    refused = await desk.send(OFFICER, "/contact 陕西")
    assert "👤" not in refused.text and "0000 01" not in refused.text


async def test_who_is_on_duty_follows_the_clock_and_overrides_made_elsewhere(
    desk: BotHarness,
) -> None:
    assert "在班：邓建平" in (await desk.send(ADMIN, "/oncall 四川")).text
    other = Database(desk.db.url)
    try:
        async with other.session() as session:
            room = await duty_room_by_chat(session, SICHUAN_ROOM)
            assert room is not None
            roster = await roster_for_room(session, room.id)
            assert roster is not None
            member = next(m for m in roster.members if m.name not in {"邓建平", "王雅琴"})
            await set_override(session, roster, datetime(2026, 11, 23, 0, 30, tzinfo=UTC),
                               member, actor=None)
    finally:
        await other.dispose()
    assert f"在班：{member.name}" in (await desk.send(ADMIN, "/oncall 四川")).text
    desk.clock.set(datetime(2026, 11, 30, 1, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    assert "在班：王雅琴" in (await desk.send(ADMIN, "/oncall 四川")).text  # the next shift
