"""Keeping the search index in step with the directory: the rows of liaisons and clauses
with their tokens, refreshed in part or rebuilt whole, in the caller's transaction.

`rowkey` puts the rank in the high bits and the id in the low 32 (`ID_MASK`), so index
order is rank order: role rank << 32 | liaison id; status rank << 34 | kind << 32 |
clause id.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.enums import AgreementStatus
from core.enums import LiaisonRole
from core.normalize import normalize_many
from core.normalize import normalize_phone
from core.tokens import FILLER
from core.tokens import index_tokens
from storage.cache import bump_data_epoch
from storage.models import Agreement
from storage.models import Clause
from storage.models import ClauseMechanism
from storage.models import ClauseSearchRow
from storage.models import Liaison
from storage.models import LiaisonSearchRow
from storage.models import Mechanism
from storage.search.vocabulary import invalidate_after_transaction
from storage.search.vocabulary import strings_of

ID_MASK = (1 << 32) - 1
ROLE_RANK = {LiaisonRole.primary: 0, LiaisonRole.backup: 1}
STATUS_RANK = {
    AgreementStatus.in_force: 0,
    AgreementStatus.draft: 1,
    AgreementStatus.expired: 2,
    AgreementStatus.superseded: 3,
}
# SQLite: the FTS5 table over each search table (migration 0002), kept in step by triggers.
FTS_TABLES = {"search_liaisons": "search_liaisons_fts", "search_clauses": "search_clauses_fts"}
_CHUNK = 5000

LIAISON_ROW = (
    "rowkey",
    "liaison_id",
    "unit_id",
    "branch_id",
    "name",
    "doc",
    "grams",
    "chars",
    "keys",
)
CLAUSE_ROW = (
    "rowkey",
    "clause_id",
    "agreement_id",
    "kind",
    "status_rank",
    "doc",
    "grams",
    "chars",
    "keys",
)


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def _token_columns(fields: Sequence[str], keys: list[str], postgres: bool) -> tuple[Any, Any, Any]:
    """(grams, chars, keys) as the driver takes them: arrays on PostgreSQL (grams
    holding every token and character, no filler), space-separated on SQLite."""
    stream, chars = index_tokens(fields)
    if postgres:
        grams = set(stream)
        grams.update(chars)
        grams.discard(FILLER)
        return list(grams), [], []
    return " ".join(stream), " ".join(chars), " ".join(keys)


def liaison_rows(records: Sequence[Any], dialect: str) -> list[tuple[Any, ...]]:
    """Index rows (`LIAISON_ROW` order) of liaisons given as (id, unit_id,
    branch_id, name, title, role, phones, telegram_username, notes) records."""
    postgres = dialect == "postgresql"
    texts: list[str | None] = []
    for r in records:
        texts.extend((r[3], r[4], r[7], r[8]))
    normalised = normalize_many(texts)
    rows = []
    for index, r in enumerate(records):
        ident, unit_id, branch_id, _, _, role, phones, _, _ = r
        name, title, username, notes = normalised[4 * index : 4 * index + 4]
        digits = [normalize_phone(str(p)) for p in (phones or []) if p]
        fields = [f for f in (name, title, *digits, username, notes) if f]
        keys = [f"u{unit_id}", f"b{branch_id}" if branch_id is not None else "bnone"]
        rank = ROLE_RANK.get(LiaisonRole(role), 1)
        rows.append(
            (
                rank << 32 | ident,
                ident,
                unit_id,
                branch_id,
                name[:60],
                "\n".join(fields),
                *_token_columns(fields, keys, postgres),
            )
        )
    return rows


def clause_rows(records: Sequence[Any], dialect: str) -> list[tuple[Any, ...]]:
    """Index rows (`CLAUSE_ROW` order) of clauses given as (id, agreement_id,
    status, heading, text, [mechanism names and aliases]) records: a heading row
    (kind 0) and a whole-clause row (kind 1)."""
    postgres = dialect == "postgresql"
    texts: list[str | None] = []
    for r in records:
        texts.extend((r[3], r[4], *r[5]))
    normalised = normalize_many(texts)
    rows = []
    at = 0
    for r in records:
        ident, agreement_id, status, _, _, mechanism_names = r
        heading, body = normalised[at], normalised[at + 1]
        names = [n for n in normalised[at + 2 : at + 2 + len(mechanism_names)] if n]
        at += 2 + len(mechanism_names)
        rank = STATUS_RANK.get(AgreementStatus(status), 3)
        title_fields = [f for f in (heading, *names) if f]
        variants = [(0, title_fields)] if title_fields else []
        variants.append((1, [*title_fields, body] if body else title_fields))
        for kind, fields in variants:
            keys = [f"a{agreement_id}", "full" if kind else "head"]
            rows.append(
                (
                    rank << 34 | kind << 32 | ident,
                    ident,
                    agreement_id,
                    kind,
                    rank,
                    "\n".join(fields),
                    *_token_columns(fields, keys, postgres),
                )
            )
    return rows


_LIAISON_COLUMNS = (
    Liaison.id,
    Liaison.unit_id,
    Liaison.branch_id,
    Liaison.name,
    Liaison.title,
    Liaison.role,
    Liaison.phones,
    Liaison.telegram_username,
    Liaison.notes,
)


async def _clause_records(session: AsyncSession, where: Any | None) -> list[tuple[Any, ...]]:
    stmt = select(
        Clause.id, Clause.agreement_id, Agreement.status, Clause.heading, Clause.text
    ).join(Agreement, Agreement.id == Clause.agreement_id)
    if where is not None:
        stmt = stmt.where(where)
    clauses = (await session.execute(stmt)).all()
    if not clauses:
        return []
    names: dict[int, list[str]] = {}
    mech_stmt = select(ClauseMechanism.clause_id, Mechanism.name, Mechanism.aliases).join(
        Mechanism, Mechanism.id == ClauseMechanism.mechanism_id
    )
    if where is not None:
        mech_stmt = mech_stmt.where(ClauseMechanism.clause_id.in_([c[0] for c in clauses]))
    for clause_id, name, aliases in await session.execute(mech_stmt):
        names.setdefault(clause_id, []).extend([name, *strings_of(aliases)])
    return [(*c, names.get(c[0], [])) for c in clauses]


async def _insert(
    session: AsyncSession, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Bulk insert through the driver, inside the session's transaction (already
    begun by the preceding DELETE): one executemany on SQLite, COPY on PostgreSQL.
    The ORM's bulk insert costs about ten times as much for 100,000 rows."""
    if not rows:
        return
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        if len(rows) > 100:
            await driver.copy_records_to_table(table, records=rows, columns=list(columns))
        else:
            marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
            await driver.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )
        return
    marks = ", ".join("?" for _ in columns)
    await driver.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


async def _rebuild(
    session: AsyncSession, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Replace a whole search table in the caller's transaction: its secondary
    indexes (and, on SQLite, the FTS5 triggers) are dropped, the rows written in
    rank order (see `dialects.PostgresDialect`) and the indexes rebuilt from their own
    definitions — several times faster than maintaining them row by row. SQLite
    then rebuilds the FTS5 index in one pass. DDL is transactional on both
    backends; on PostgreSQL readers of the table wait for the commit."""
    rows.sort(key=lambda row: row[0])
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        ddl = (
            await connection.execute(
                text(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = :t "
                    "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type"
                ),
                {"t": table},
            )
        ).all()
        for kind, name, _ in ddl:
            await connection.exec_driver_sql(f'DROP {kind.upper()} "{name}"')
        await connection.exec_driver_sql(f"DELETE FROM {table}")
        await _insert(session, table, columns, rows)
        fts = FTS_TABLES[table]
        await connection.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
        for _, _, sql in ddl:
            await connection.exec_driver_sql(sql)
    else:
        ddl = (
            await connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE schemaname = current_schema() AND tablename = :t AND indexname NOT IN "
                    "(SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass))"
                ),
                {"t": table},
            )
        ).all()
        for name, _ in ddl:
            await connection.exec_driver_sql(f'DROP INDEX "{name}"')
        await connection.exec_driver_sql(f"TRUNCATE {table}")
        await connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        await _insert(session, table, columns, rows)
        for _, sql in ddl:
            await connection.exec_driver_sql(sql)
        await connection.exec_driver_sql(f"ANALYZE {table}")


async def refresh_search_index(
    session: AsyncSession,
    *,
    liaison_ids: Iterable[int] | None = None,
    clause_ids: Iterable[int] | None = None,
    agreement_ids: Iterable[int] | None = None,
) -> None:
    """Bring the search index in step with the tables, in the caller's transaction.

    With no argument, everything is rebuilt (bulk: seconds for 100,000 liaisons).
    Otherwise only the given liaisons, clauses and the clauses of the given
    agreements (after a status change) are re-indexed; deleted or deactivated
    ones leave the index. The cached vocabulary of units, branches and zones is
    dropped in every case (and again when the transaction ends).
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    full = liaison_ids is None and clause_ids is None and agreement_ids is None
    if full:
        connection = await session.connection()  # Core: the ORM layer costs seconds here
        records = (
            await connection.execute(select(*_LIAISON_COLUMNS).where(Liaison.active.is_(True)))
        ).all()
        await _rebuild(session, "search_liaisons", LIAISON_ROW, liaison_rows(records, dialect))
        clauses = clause_rows(await _clause_records(session, None), dialect)
        await _rebuild(session, "search_clauses", CLAUSE_ROW, clauses)
    else:
        if liaison_ids is not None:
            for chunk in _chunks(sorted(set(liaison_ids))):
                await session.execute(
                    delete(LiaisonSearchRow).where(LiaisonSearchRow.liaison_id.in_(chunk))
                )
                records = (
                    await session.execute(
                        select(*_LIAISON_COLUMNS).where(
                            Liaison.id.in_(chunk), Liaison.active.is_(True)
                        )
                    )
                ).all()
                rows = liaison_rows(records, dialect)
                await _insert(session, "search_liaisons", LIAISON_ROW, rows)
        targets: list[Any] = []
        if clause_ids is not None:
            targets.extend(("clause", chunk) for chunk in _chunks(sorted(set(clause_ids))))
        if agreement_ids is not None:
            targets.extend(("agreement", chunk) for chunk in _chunks(sorted(set(agreement_ids))))
        for kind, chunk in targets:
            column = ClauseSearchRow.clause_id if kind == "clause" else ClauseSearchRow.agreement_id
            await session.execute(delete(ClauseSearchRow).where(column.in_(chunk)))
            where = Clause.id.in_(chunk) if kind == "clause" else Clause.agreement_id.in_(chunk)
            records = await _clause_records(session, where)
            rows = clause_rows(records, dialect)
            await _insert(session, "search_clauses", CLAUSE_ROW, rows)
    await bump_data_epoch(session)  # cached search results are of the old index
    invalidate_after_transaction(session)


async def ensure_search_index(session: AsyncSession) -> bool:
    """Rebuild the index when it is empty but there is something to find (first
    start after the migration, or a database filled without the importer)."""
    indexed = await session.execute(
        select(
            select(LiaisonSearchRow.rowkey).limit(1).exists(),
            select(ClauseSearchRow.rowkey).limit(1).exists(),
        )
    )
    has_liaisons, has_clauses = indexed.one()
    if has_liaisons or has_clauses:
        return False
    source = await session.execute(
        select(
            select(Liaison.id).where(Liaison.active.is_(True)).limit(1).exists(),
            select(Clause.id).limit(1).exists(),
        )
    )
    if not any(source.one()):
        return False
    await refresh_search_index(session)
    return True
