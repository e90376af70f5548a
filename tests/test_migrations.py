"""The migrations build the schema the models describe, on both databases: autogenerate,
with the environment's filter, finds nothing to do. The filter leaves out SQLite's FTS5
search tables (made by hand in migration 0002) instead of proposing to drop them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.db import Database
from storage.migrate import FTS_TABLE_SUFFIXES
from storage.migrate import autogenerate_filter
from storage.models import Base


def changes(connection: Connection, *, filtered: bool = True) -> list[tuple]:
    options: dict[str, object] = {"compare_type": True}
    if filtered:
        options["include_object"] = autogenerate_filter(connection.dialect.name)
    context = MigrationContext.configure(connection, opts=options)
    return [tuple(change) if isinstance(change, tuple) else ("modify", change)
            for change in compare_metadata(context, Base.metadata)]


async def test_autogenerate_finds_nothing_to_do(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(changes) == []


async def test_only_the_fts5_tables_are_left_out(db: Database) -> None:
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        unfiltered = await connection.run_sync(lambda sync: changes(sync, filtered=False))
    fts = {name for name in tables if name.endswith(FTS_TABLE_SUFFIXES)}
    if db.dialect == "sqlite":
        assert {"search_liaisons_fts", "search_clauses_fts_data"} <= fts
        # Without the filter autogenerate would drop every one of them.
        dropped = {change[1].name for change in unfiltered if change[0] == "remove_table"}
        assert fts <= dropped
    else:
        assert fts == set()
