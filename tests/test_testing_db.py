"""TEST_POSTGRES_URL takes the same forms as DATABASE_URL (one normalisation serves both);
a data file the tests start from is copied as it was imported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Column
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.config import load_settings
from storage.dataio import import_file
from storage.db import Database
from storage.models import Base
from storage.models import Unit
from storage.models import UTCDateTime
from tests.conftest import SAMPLE_NOW
from tests.conftest import unavailable
from tools.testing_db import TABLES
from tools.testing_db import TestDatabases
from tools.testing_db import create_postgres_database
from tools.testing_db import drop_postgres_database
from tools.testing_db import postgres_admin_url
from tools.testing_db import postgres_available


@pytest.mark.parametrize("given", [
    "postgresql://postgres@db.example:5432/postgres",
    "postgres://postgres@db.example:5432/postgres",
    "postgresql+asyncpg://postgres@db.example:5432/postgres",
])
def test_test_postgres_url_accepts_what_database_url_accepts(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("TEST_POSTGRES_URL", given)

    assert postgres_admin_url() == "postgresql+asyncpg://postgres@db.example:5432/postgres"
    assert postgres_admin_url() == load_settings(_env_file=None, database_url=given).database_url


async def test_a_plain_postgresql_url_reaches_the_server(
    monkeypatch: pytest.MonkeyPatch, postgres_ok: bool
) -> None:
    if not postgres_ok:
        unavailable("PostgreSQL is not reachable (set TEST_POSTGRES_URL)")
    plain = make_url(postgres_admin_url()).set(drivername="postgresql")
    monkeypatch.setenv("TEST_POSTGRES_URL", plain.render_as_string(hide_password=False))
    name = f"liaison_plain_url_{os.getpid()}"

    assert await postgres_available()
    url = await create_postgres_database(name)
    try:
        assert url.startswith("postgresql+asyncpg://") and url.endswith(f"/{name}")
    finally:
        await drop_postgres_database(name)


def stamped_now(column: Column[object]) -> bool:
    """A time the import takes from the real clock (a copy has the first import's), or
    the audit chain's hashes over such a time, or when it was sealed."""
    return (isinstance(column.type, UTCDateTime) and column.default is not None
            and getattr(column.default, "is_callable", False)) \
        or column.name.endswith("hash") or column.name == "sealed_at"


async def rows_of_every_table(url: str) -> dict[str, list[tuple[object, ...]]]:
    db = Database(url)
    try:
        async with db.session() as session:
            return {name: sorted((tuple(row) for row in (await session.execute(select(
                *(c for c in Base.metadata.tables[name].columns if not stamped_now(c)))
            )).all()), key=repr) for name in TABLES}
    finally:
        await db.dispose()


async def test_a_data_file_loaded_again_is_a_copy_of_its_import(
    test_databases: TestDatabases, database_url: str, tmp_path: Path
) -> None:
    """What the desk fixtures start from: the same rows as an import, and the sequences
    where the import left them (a new unit gets the next id)."""
    async def clean() -> str:
        if database_url.startswith("sqlite"):
            return await test_databases.sqlite_url(tmp_path / f"db{len(urls)}")
        return await test_databases.postgres()

    urls = [database_url]
    db = Database(database_url)
    assert not (await import_file(db, "data/sample.yaml", now=SAMPLE_NOW)).problems
    await db.dispose()
    imported = await rows_of_every_table(database_url)
    for _ in range(2):  # the first load in this process imports, the next one copies
        (tmp_path / f"db{len(urls)}").mkdir()
        urls.append(await clean())
        await test_databases.load(urls[-1], "data/sample.yaml", SAMPLE_NOW)
    assert await rows_of_every_table(urls[-1]) == imported
    db = Database(urls[-1])
    try:
        async with db.session() as session:
            unit = Unit(code="new", name="新单位", short_name="新单位")
            session.add(unit)
            await session.flush()
            assert unit.id == max(row[0] for row in imported["units"]) + 1
    finally:
        await db.dispose()
