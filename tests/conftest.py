"""Fixtures: a clean database per test on SQLite and on PostgreSQL; the bot on the emulator.

PostgreSQL tests are skipped with a reason when no server answers, except
under CI (CI=true), where a missing server is an error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import pytest

from bot import loop
from bot.emulator import BotApiEmulator
from storage.db import Database
from storage.models import Unit
from storage.models import Zone
from storage.models import ZoneMembership
from tests.private_postgres import PG_BIN
from tests.private_postgres import PrivatePostgres
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing_db import TestDatabases
from tools.testing_db import postgres_available

BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The tests run on the event loop the bot runs on (bot/loop.py)."""
    return {"uvloop": loop.new_event_loop}


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    databases = TestDatabases(tmp_path_factory.mktemp("databases"))
    yield databases
    asyncio.run(databases.close())


@pytest.fixture(scope="session")
def postgres_ok() -> bool:
    return asyncio.run(postgres_available())


@pytest.fixture(params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest,
    test_databases: TestDatabases,
    postgres_ok: bool,
    tmp_path: Path,
) -> str:
    if request.param == "sqlite":
        return await test_databases.sqlite_url(tmp_path)
    return await clean_postgres(test_databases, postgres_ok)


# Fixtures that give a test PostgreSQL of its own, outside `database_url`'s parameters.
POSTGRES_ONLY = {"postgres_url", "private_postgres"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """TEST_DATABASES leaves a database out on purpose (chosen, not missing): the tests
    only it runs are deselected, as `database_url`'s parameters leave its half out. A
    server that is missing goes through unavailable() instead."""
    def left_out(item: pytest.Item) -> bool:
        marker = item.get_closest_marker("database")
        needs = {marker.args[0]} if marker else set()
        if POSTGRES_ONLY & set(getattr(item, "fixturenames", ())):
            needs.add("postgresql")
        return not needs <= set(BACKENDS)

    deselected = [item for item in items if left_out(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not left_out(item)]


@pytest.fixture
async def postgres_url(test_databases: TestDatabases, postgres_ok: bool) -> str:
    """A clean PostgreSQL database, for what only PostgreSQL does (several processes
    sharing it, a pooler in front): not run on SQLite at all."""
    return await clean_postgres(test_databases, postgres_ok)


async def clean_postgres(test_databases: TestDatabases, postgres_ok: bool) -> str:
    if not postgres_ok:
        unavailable("PostgreSQL is not reachable (set TEST_POSTGRES_URL)")
    return await test_databases.postgres()


def unavailable(reason: str) -> NoReturn:
    """Skip what cannot run on this machine; under CI (CI=true), where everything must
    run, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run it")
    pytest.skip(reason)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(test_databases: TestDatabases, tmp_path: Path) -> AsyncIterator[Database]:
    """For what only SQLite has (its pragmas, its single writer, the kept epoch connection)."""
    database = Database(await test_databases.sqlite_url(tmp_path))
    yield database
    await database.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of its own for a test that stops and starts the server."""
    if not (PG_BIN / "initdb").exists() or (os.geteuid() == 0 and not shutil.which("runuser")):
        unavailable(f"no PostgreSQL binaries in {PG_BIN} to start a private cluster")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- the bot


ADMIN_ID = 910000001


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator() as emu:
        yield emu


@pytest.fixture
async def directory(db: Database) -> dict[str, int]:
    """A small directory: one zone, two provinces, an admin; returns unit ids by code."""
    async with db.session() as session:
        zone = Zone(code="psw", name="泛西南地区警务合作", short_name="泛西南")
        sichuan = Unit(code="sc", name="四川省公安厅", short_name="四川", abbreviation="川",
                       english="Sichuan")
        yunnan = Unit(code="yn", name="云南省公安厅", short_name="云南", abbreviation="滇",
                      english="Yunnan")
        session.add_all([zone, sichuan, yunnan])
        await session.flush()
        session.add_all([ZoneMembership(zone_id=zone.id, unit_id=u.id) for u in (sichuan, yunnan)])
        return {"sc": sichuan.id, "yn": yunnan.id, "zone": zone.id}


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: dict[str, int]
) -> AsyncIterator[BotHarness]:
    emulator.add_user(ADMIN_ID, "管理员", username="desk_admin")
    async with BotHarness(emulator, database_url, admin_ids=[ADMIN_ID]) as harness:
        yield harness


# --------------------------------------------------------------------------- the sample desk

SAMPLE_ADMIN = 910000001  # 周立新, administrator, zh-Hans
SAMPLE_OFFICER = 910000007  # 王雅琴, officer in 四川, zh-Hant
SAMPLE_STRANGER = 910000099
SAMPLE_SICHUAN_ROOM = -1001000000103
SAMPLE_OTHER_GROUP = -1009999999999
# Wednesday 25 November 2026, 11:00 in Beijing: week 4 of 四川's weekly roster (邓建平).
SAMPLE_NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.fixture
async def desk(
    emulator: BotApiEmulator, database_url: str, test_databases: TestDatabases
) -> AsyncIterator[BotHarness]:
    """The bot on data/sample.yaml at SAMPLE_NOW (a FakeClock, as `desk.clock`), with its
    administrator, a 四川 officer, a stranger, 四川's duty room and an unregistered group."""
    await test_databases.load(database_url, "data/sample.yaml", SAMPLE_NOW)
    emulator.add_user(SAMPLE_ADMIN, "周立新")
    emulator.add_user(SAMPLE_OFFICER, "王雅琴", language_code="zh-hant")
    emulator.add_user(SAMPLE_STRANGER, "王五")
    emulator.add_group(SAMPLE_SICHUAN_ROOM, "四川省公安厅指挥中心值班室",
                       members=[SAMPLE_ADMIN, SAMPLE_OFFICER])
    emulator.add_group(SAMPLE_OTHER_GROUP, "闲聊群", members=[SAMPLE_ADMIN, SAMPLE_STRANGER])
    clock = FakeClock(SAMPLE_NOW)
    async with BotHarness(emulator, database_url, now=clock) as harness:
        harness.clock = clock  # type: ignore[attr-defined]
        yield harness


# --------------------------------------------------------------------------- the Traditional desk

HANT_DATA = "tests/data/jingjinji_hant.yaml"
HANT_ADMIN = 920000001  # 趙國強, administrator in 北京, zh-Hant
HANT_COORDINATOR = 920000002  # 錢麗華, coordinator in 天津, zh-Hant
HANT_OFFICER = 920000003  # 孫建軍, officer in 河北 (no duty room), zh-Hans
HANT_DUTY_OFFICER = 920000004  # 李曉東, duty officer in 北京's first room, zh-Hant
HANT_ENGLISH = 920000005  # 周文博, officer in 雄安 (no room, no duty phone), en
HANT_SIMPLIFIED_DUTY = 920000006  # 吳海燕, duty officer in 北京's first room, zh-Hans
HANT_BEIJING_ROOM = -1002000000201
HANT_BEIJING_TRAFFIC_ROOM = -1002000000202
HANT_TIANJIN_ROOM = -1002000000203
# Wednesday 2 December 2026, 11:00 in Beijing.
HANT_NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
async def hant_desk(
    emulator: BotApiEmulator, database_url: str, test_databases: TestDatabases
) -> AsyncIterator[BotHarness]:
    """The bot on tests/data/jingjinji_hant.yaml (Traditional only, a zone the sample lacks,
    a unit with two duty rooms, units with none) at HANT_NOW (`hant_desk.clock`)."""
    await test_databases.load(database_url, HANT_DATA, HANT_NOW)
    for user_id, name, language in [
        (HANT_ADMIN, "趙國強", "zh-hant"), (HANT_COORDINATOR, "錢麗華", "zh-hant"),
        (HANT_OFFICER, "孙建军", "zh-hans"), (HANT_DUTY_OFFICER, "李曉東", "zh-hant"),
        (HANT_ENGLISH, "Zhou Wenbo", "en"), (HANT_SIMPLIFIED_DUTY, "吴海燕", "zh-hans"),
    ]:
        emulator.add_user(user_id, name, language_code=language)
    emulator.add_group(HANT_BEIJING_ROOM, "北京市公安局指揮中心值班室",
                       members=[HANT_ADMIN, HANT_DUTY_OFFICER, HANT_SIMPLIFIED_DUTY])
    emulator.add_group(HANT_BEIJING_TRAFFIC_ROOM, "北京市公安局交管指揮中心值班室",
                       members=[HANT_ADMIN])
    emulator.add_group(HANT_TIANJIN_ROOM, "天津市公安局指揮中心值班室",
                       members=[HANT_ADMIN, HANT_COORDINATOR])
    clock = FakeClock(HANT_NOW)
    async with BotHarness(emulator, database_url, now=clock) as harness:
        harness.clock = clock  # type: ignore[attr-defined]
        yield harness
