"""Fixtures: a clean database per test on SQLite and on PostgreSQL.

PostgreSQL tests are skipped with a reason when no server answers, except
under CI (CI=true), where a missing server is an error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.testing_db import TestDatabases, postgres_available
from storage.db import Database

BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")]


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
    if not postgres_ok:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not reachable; CI must test against it")
        pytest.skip("PostgreSQL is not reachable (set TEST_POSTGRES_URL)")
    return await test_databases.postgres()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()
