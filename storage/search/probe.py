"""The start-up probe: can this database serve Chinese search?"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.search.index import FTS_TABLES


async def check_search_backend(engine: AsyncEngine) -> str | None:
    """A clear problem message when this database cannot serve Chinese search, else None.

    PostgreSQL: the database must be UTF-8 (character positions and arrays of
    Chinese tokens), and the search tables and GIN indexes must exist. The ctype
    does not matter (pg_trgm is not used; normalisation happens in Python), but
    it is named in the message when something else is wrong. SQLite: FTS5 must be
    available and the search tables and their FTS5 tables present.
    """
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                return await _check_postgres(connection)
            if engine.dialect.name == "sqlite":
                return await _check_sqlite(connection)
            return f"search does not support the {engine.dialect.name} database"
    except Exception as exc:  # reported, not raised: this is a start-up diagnosis
        return f"search backend check failed: {type(exc).__name__}: {exc}"


async def _check_postgres(connection: Any) -> str | None:
    encoding, ctype = (
        await connection.execute(
            text(
                "SELECT pg_encoding_to_char(encoding), datctype FROM pg_database "
                "WHERE datname = current_database()"
            )
        )
    ).one()
    if encoding != "UTF8":
        return (
            f"PostgreSQL database encoding is {encoding} (ctype {ctype}): Chinese text cannot "
            "be searched; recreate the database with ENCODING 'UTF8' (e.g. LC_CTYPE 'C.UTF-8')"
        )
    probe = (
        await connection.execute(
            text(
                "SELECT strpos('四川省公安厅刑侦总队', '刑侦') = 7, "
                "ARRAY['四川', '川省', '刑侦']::text[] @> ARRAY['刑侦']::text[]"
            )
        )
    ).one()
    if not all(probe):
        return (
            f"PostgreSQL does not compare Chinese text as characters here (encoding {encoding}, "
            f"ctype {ctype}); contact search would find nothing"
        )
    missing = []
    for name in (
        "search_liaisons",
        "search_clauses",
        "ix_search_liaisons_grams",
        "ix_search_clauses_grams",
    ):
        found = (await connection.execute(text("SELECT to_regclass(:n)"), {"n": name})).scalar()
        if found is None:
            missing.append(name)
    if missing:
        return "search index missing (" + ", ".join(missing) + "): run `db upgrade`"
    return None


async def _check_sqlite(connection: Any) -> str | None:
    try:
        await connection.execute(text("CREATE VIRTUAL TABLE temp.search_probe USING fts5(grams)"))
        await connection.execute(text("DROP TABLE temp.search_probe"))
    except Exception:
        return "this SQLite has no FTS5: contact and clause search cannot work"
    finally:
        await connection.rollback()
    names = {
        r[0]
        for r in await connection.execute(
            text("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        )
    }
    needed = {
        "search_liaisons",
        "search_clauses",
        *FTS_TABLES.values(),
        *(f"{t}_{s}" for t in FTS_TABLES for s in ("ai", "ad", "au")),
    }
    missing = sorted(needed - names)
    if missing:
        return "search index missing (" + ", ".join(missing) + "): run `db upgrade`"
    return None
