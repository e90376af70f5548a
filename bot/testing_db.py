"""Test databases on both backends, shared by the test suite and the benchmarks.

SQLite: one migrated template file per process, copied for each test.
PostgreSQL: one migrated database per process (UTF-8 ctype, or pg_trgm ignores
Chinese), truncated between tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.config import async_database_url
from storage.db import create_engine
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


async def create_postgres_database(name: str, admin_url: str | None = None) -> str:
    """(Re)create a UTF-8 database and return its URL."""
    admin = create_engine(postgres_admin_url(admin_url))
    try:
        async with admin.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(
                text(
                    f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
                    "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
                )
            )
    finally:
        await admin.dispose()
    return make_url(postgres_admin_url(admin_url)).set(database=name).render_as_string(
        hide_password=False
    )


async def drop_postgres_database(name: str, admin_url: str | None = None) -> None:
    admin = create_engine(postgres_admin_url(admin_url))
    try:
        async with admin.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def truncate_all(database_url: str) -> None:
    # data_epoch keeps its one row (the TRUNCATE triggers move it, as they should).
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables
                       if t.name != "data_epoch")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


class TestDatabases:
    """Per-process migrated databases, handed out clean to each test."""

    __test__ = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sqlite_template = workdir / "template.db"
        self.postgres_name = f"liaison_test_{os.getpid()}"
        self.postgres_url: str | None = None

    async def sqlite_url(self, directory: Path) -> str:
        if not self.sqlite_template.exists():
            await upgrade(f"sqlite+aiosqlite:///{self.sqlite_template}")
        target = directory / "test.db"
        await asyncio.to_thread(shutil.copyfile, self.sqlite_template, target)
        return f"sqlite+aiosqlite:///{target}"

    async def postgres(self) -> str:
        if self.postgres_url is None:
            self.postgres_url = await create_postgres_database(self.postgres_name)
            await upgrade(self.postgres_url)
        else:
            await truncate_all(self.postgres_url)
        return self.postgres_url

    async def close(self) -> None:
        if self.postgres_url is not None:
            await drop_postgres_database(self.postgres_name)
