"""Test databases on both backends, shared by the test suite and the benchmarks.

SQLite: one migrated template file per process, copied for each test.
PostgreSQL: one migrated database per process (UTF-8 ctype, or pg_trgm ignores
Chinese), emptied between tests: only the tables that have rows, by DELETE (a TRUNCATE
of every table costs four times as much: each one makes new files), and the sequences
that moved are set back. Its commits do not wait for the WAL flush (the database's own
`synchronous_commit`): a crash of the shared server is not what the tests are about.

A data file the tests start from (the sample desk) is imported once per process and
backend and copied after that: the SQLite file as a whole, the PostgreSQL rows by binary
COPY. An import costs about 0.35 s, a copy a few milliseconds.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.config import async_database_url
from storage.dataio import import_file
from storage.db import PGBOUNCER_FLAG
from storage.db import Database
from storage.db import create_engine
from storage.db import through_pgbouncer
from storage.migrate import upgrade
from storage.models import Base

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_admin_url(admin_url: str | None = None) -> str:
    """The given URL, else TEST_POSTGRES_URL, in any form DATABASE_URL accepts."""
    return async_database_url(admin_url or os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))


async def postgres_available(admin_url: str | None = None) -> bool:
    engine = create_engine(postgres_admin_url(admin_url))
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means "not reachable"
        return False
    finally:
        await engine.dispose()


async def _on_admin_database(admin_url: str | None, *statements: str) -> None:
    """Run statements on the server's admin database, each on its own (CREATE and DROP
    DATABASE cannot run inside a transaction)."""
    admin = create_engine(postgres_admin_url(admin_url))
    try:
        async with admin.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await admin.dispose()


def _drop(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


async def create_postgres_database(name: str, admin_url: str | None = None) -> str:
    """(Re)create a UTF-8 database and return its URL."""
    await _on_admin_database(
        admin_url, _drop(name),
        f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
        "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
    )
    return make_url(postgres_admin_url(admin_url)).set(database=name).render_as_string(
        hide_password=False
    )


async def drop_postgres_database(name: str, admin_url: str | None = None) -> None:
    await _on_admin_database(admin_url, _drop(name))


# data_epoch keeps its one row (the DELETE triggers move it, as they should).
TABLES = [t.name for t in Base.metadata.sorted_tables if t.name != "data_epoch"]
_TABLES_WITH_ROWS = " UNION ALL ".join(
    f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM \"{name}\")" for name in TABLES)
_MOVED_SEQUENCES = ("SELECT format('%I.%I', schemaname, sequencename), last_value "
                    "FROM pg_sequences WHERE last_value IS NOT NULL")


async def empty_postgres(database_url: str) -> None:
    """Every table empty, every sequence back at its start, as after the migrations."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            filled = set((await connection.execute(text(_TABLES_WITH_ROWS))).scalars())
            # Referencing tables first, so no foreign key is in the way.
            for name in reversed(TABLES):
                if name in filled:
                    await connection.execute(text(f'DELETE FROM "{name}"'))
            moved = (await connection.execute(text(_MOVED_SEQUENCES))).scalars().all()
            if moved:
                await connection.execute(text("SELECT " + ", ".join(
                    f"setval('{name}', 1, false)" for name in moved)))
    finally:
        await engine.dispose()


async def _connect(database_url: str) -> asyncpg.Connection:
    """A plain asyncpg connection; behind PgBouncer (`?pgbouncer=true`) without a
    statement cache, used in one transaction."""
    url = make_url(database_url)
    pooled = through_pgbouncer(url)
    dsn = url.difference_update_query([PGBOUNCER_FLAG]).set(drivername="postgresql")
    return await asyncpg.connect(dsn.render_as_string(hide_password=False),
                                 statement_cache_size=0 if pooled else 100)


class PostgresRows:
    """What a PostgreSQL database holds: each table's rows (binary COPY) and where its
    sequences stand; put into another database of the same schema, emptied first."""

    def __init__(self, tables: dict[str, bytes], sequences: dict[str, int]) -> None:
        self.tables = tables
        self.sequences = sequences

    @classmethod
    async def take(cls, database_url: str) -> PostgresRows:
        connection = await _connect(database_url)
        try:
            async with connection.transaction():
                filled = {row[0] for row in await connection.fetch(_TABLES_WITH_ROWS)}
                tables: dict[str, bytes] = {}
                for name in TABLES:  # referenced tables first
                    if name in filled:
                        rows = io.BytesIO()
                        await connection.copy_from_table(name, output=rows, format="binary")
                        tables[name] = rows.getvalue()
                sequences = dict(await connection.fetch(_MOVED_SEQUENCES))
        finally:
            await connection.close()
        return cls(tables, sequences)

    async def put(self, database_url: str) -> None:
        connection = await _connect(database_url)
        try:
            async with connection.transaction():
                if await connection.fetch(_TABLES_WITH_ROWS):
                    raise RuntimeError("rows are put into an empty database only")
                for name, rows in self.tables.items():
                    await connection.copy_to_table(name, source=io.BytesIO(rows),
                                                   format="binary")
                for name, value in self.sequences.items():
                    await connection.execute("SELECT setval($1::text::regclass, $2)",
                                             name, value)
        finally:
            await connection.close()


class TestDatabases:
    """Per-process migrated databases, handed out clean to each test."""

    __test__ = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sqlite_template = workdir / "template.db"
        self.postgres_name = f"liaison_test_{os.getpid()}"
        self.postgres_url: str | None = None
        self._postgres_loaded: dict[tuple[str, datetime], PostgresRows] = {}

    async def sqlite_url(self, directory: Path) -> str:
        if not self.sqlite_template.exists():
            await upgrade(f"sqlite+aiosqlite:///{self.sqlite_template}")
        target = directory / "test.db"
        await asyncio.to_thread(shutil.copyfile, self.sqlite_template, target)
        return f"sqlite+aiosqlite:///{target}"

    async def postgres(self) -> str:
        if self.postgres_url is None:
            # Kept only once migrated: a migration cut short (the server out of
            # connections, say) is done again for the next test, not reused half-built.
            url = await create_postgres_database(self.postgres_name)
            await _commit_without_waiting(url, self.postgres_name)
            await upgrade(url)
            self.postgres_url = url
        else:
            await empty_postgres(self.postgres_url)
        return self.postgres_url

    async def load(self, database_url: str, data_file: str, now: datetime) -> None:
        """`data_file` as `import_file(…, now=now)` leaves it, in the empty database just
        handed out (`sqlite_url` or `postgres`): imported the first time, copied then."""
        if make_url(database_url).get_backend_name() == "sqlite":
            await self._load_sqlite(database_url, data_file, now)
            return
        key = (data_file, now)
        rows = self._postgres_loaded.get(key)
        if rows is None:
            await _import(database_url, data_file, now)
            self._postgres_loaded[key] = await PostgresRows.take(database_url)
        else:
            await rows.put(database_url)

    async def _load_sqlite(self, database_url: str, data_file: str, now: datetime) -> None:
        target = Path(make_url(database_url).database or "")
        if target.with_name(target.name + "-wal").exists():
            raise RuntimeError(f"{target} is in use: load data before connecting to it")
        loaded = self.workdir / f"{Path(data_file).stem}-{now:%Y%m%dT%H%M%S}.db"
        if loaded.exists():
            await asyncio.to_thread(shutil.copyfile, loaded, target)
            return
        await _import(database_url, data_file, now)  # closes its connections: no WAL left
        await asyncio.to_thread(shutil.copyfile, target, loaded)

    async def close(self) -> None:
        if self.postgres_url is not None:
            await drop_postgres_database(self.postgres_name)


async def _import(database_url: str, data_file: str, now: datetime) -> None:
    db = Database(database_url)
    try:
        report = await import_file(db, data_file, now=now)
    finally:
        await db.dispose()
    if report.problems:
        raise AssertionError(f"{data_file}: {report.problems}")


async def _commit_without_waiting(database_url: str, name: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        await engine.dispose()
