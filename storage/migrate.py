"""Schema migrations through Alembic, callable from the CLI, `run` and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# SQLite's FTS5 search tables (migration 0002): the virtual tables and their shadow tables.
FTS_TABLE_SUFFIXES = ("_fts", "_fts_data", "_fts_idx", "_fts_docsize", "_fts_config",
                      "_fts_content")


def autogenerate_filter(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for this dialect: autogenerate compares only what the
    models describe here, so it never proposes dropping the FTS5 tables the search
    migration made by hand on SQLite, nor adding an index the models keep for another
    dialect (the PostgreSQL GIN indexes)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool,
                _compare_to: Any) -> bool:
        if type_ == "table" and reflected and name and name.endswith(FTS_TABLE_SUFFIXES):
            return False
        if type_ == "index":
            only = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
            if only and dialect not in ((only,) if isinstance(only, str) else tuple(only)):
                return False
        return True

    return include


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def _upgrade_sync(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "heads")


async def upgrade(database_url: str) -> None:
    """Apply pending migrations (Alembic runs its own event loop, so off this one)."""
    await asyncio.to_thread(_upgrade_sync, database_url)


async def is_up_to_date(database_url: str) -> bool:
    """True when the database is at every newest revision (used by `check`)."""
    heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
    finally:
        await engine.dispose()
    return heads == set(current)
