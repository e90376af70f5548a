"""The one statement each search runs, built per backend (FTS5 on SQLite, a GIN-indexed
`text[]` on PostgreSQL), and the driver-level call that runs it."""

from __future__ import annotations

import re
from abc import ABC
from abc import abstractmethod
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.tokens import TermPattern
from storage.search import limits


@dataclass(frozen=True)
class Filter:
    """Which liaisons a tier holds (None: no condition)."""

    units: frozenset[int] | None = None
    branches: frozenset[int] | None = None
    not_branches: frozenset[int] | None = None
    patterns: tuple[TermPattern, ...] = ()
    name: str | None = None
    not_name: str | None = None


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _fts_pattern(pattern: TermPattern) -> str:
    parts = []
    if pattern.phrase:
        parts.append("grams : " + _quote(" ".join(pattern.phrase)))
    parts.extend("chars : " + _quote(c) for c in pattern.chars)
    return " AND ".join(parts)


def _fts_any(prefix: str, ids: Iterable[int]) -> str:
    return "keys : (" + " OR ".join(f"{prefix}{int(i)}" for i in sorted(ids)) + ")"


def _int_list(ids: Iterable[int]) -> str:
    return ", ".join(str(int(i)) for i in sorted(ids))


@dataclass
class _Tier:
    """SQL of one tier: common table expressions, a (capped) count, a page."""

    ctes: list[str]
    count: str
    page: str  # yields rowkey, unit_id, branch_id (any order; sorted in Python)


# The clause search's SQL: common table expressions, the total's expression (capped at
# RESULT_CAP + 1), and the query of the rowkeys in rank order (without LIMIT).
ClauseSql = tuple[list[str], str, str]


class Dialect(ABC):
    """Builds the one statement each search runs (a round trip costs more than the
    query itself); the backends differ in how terms are matched."""

    name = "base"

    @abstractmethod
    def liaison_tier(self, f: Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
        """One tier of the liaison search: its common table expressions, count and page."""

    @abstractmethod
    def clause_sources(self, patterns: Sequence[TermPattern], rank_limit: int | None,
                       agreement_id: int | None, params: dict[str, Any]) -> ClauseSql:
        """The clause search's SQL for these terms (and bounds)."""

    @staticmethod
    def _structured(f: Filter, p: str, params: dict[str, Any], *, arrays: bool) -> list[str]:
        """Unit, branch and name conditions on `search_liaisons s`: integer arrays as
        parameters on PostgreSQL (one prepared statement per shape), inlined IN
        lists on SQLite (the ids come from the vocabulary, never from the user)."""

        def member(column: str, key: str, values: frozenset[int], negate: bool = False) -> str:
            if len(values) == 1:  # an equality keeps an index's rank order (no sort)
                params[f"{p}{key}"] = next(iter(values))
                return f"{column} {'<>' if negate else '='} :{p}{key}"
            if arrays:
                params[f"{p}{key}"] = sorted(values)
                test = f"{column} = ANY(CAST(:{p}{key} AS integer[]))"
                return f"NOT {test}" if negate else test
            return f"{column} {'NOT IN' if negate else 'IN'} ({_int_list(values)})"

        conditions = []
        if f.units is not None:
            conditions.append(member("s.unit_id", "units", f.units))
        if f.branches is not None:
            conditions.append(member("s.branch_id", "branches", f.branches))
        if f.not_branches:
            excluded = member("s.branch_id", "not_branches", f.not_branches, negate=True)
            conditions.append(f"(s.branch_id IS NULL OR {excluded})")
        if f.name is not None:
            params[f"{p}name"] = f.name
            conditions.append(f"s.name = :{p}name")
        if f.not_name is not None:
            params[f"{p}not_name"] = f.not_name
            conditions.append(f"s.name <> :{p}not_name")
        return conditions

    def _plain_tier(self, where: str, p: str, params: dict[str, Any], rows: int) -> _Tier:
        params[f"{p}rows"] = rows
        return _Tier(
            ctes=[],
            count=f"SELECT count(*) FROM (SELECT 1 FROM search_liaisons s WHERE {where} "
            f"LIMIT {limits.RESULT_CAP + 1}) AS capped",
            page=f"SELECT s.rowkey, s.unit_id, s.branch_id FROM search_liaisons s WHERE {where} "
            f"ORDER BY s.rowkey LIMIT :{p}rows",
        )


class PostgresDialect(Dialect):
    """GIN-indexed `text[]` of tokens: containment, then a substring check.

    The planner cannot estimate `@>` over correlated tokens (it guesses a dozen
    rows for `office`, which has thousands), so left alone it may walk the primary
    key through the whole table for a rare name, or sort every match of a
    frequent one. Each tier therefore materialises at most RESULT_CAP + 1 matches
    through the index and ranks those: all of them when there are no more
    (exact), else the first ones found — the best-ranked ones, as a full rebuild
    writes the rows in rank order and the scans read them in that order (rows
    re-indexed since may be placed out of order until the next full rebuild).
    """

    name = "postgresql"

    @staticmethod
    def _term_conditions(
        patterns: Sequence[TermPattern], p: str, params: dict[str, Any]
    ) -> list[str]:
        if not patterns:
            return []
        params[f"{p}tokens"] = list(dict.fromkeys(t for q in patterns for t in q.tokens))
        conditions = [f"s.grams @> CAST(:{p}tokens AS text[])"]
        for index, pattern in enumerate(patterns):
            if not pattern.single_token:
                params[f"{p}term{index}"] = pattern.term
                conditions.append(f"strpos(s.doc, :{p}term{index}) > 0")
        return conditions

    def liaison_tier(self, f: Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
        structured = self._structured(f, p, params, arrays=True)
        where = " AND ".join(self._term_conditions(f.patterns, p, params) + structured) or "TRUE"
        if not f.patterns:
            return self._plain_tier(where, p, params, rows)
        params[f"{p}rows"] = rows
        m = f"{p}m"
        return _Tier(
            ctes=[
                f"{m} AS MATERIALIZED (SELECT s.rowkey, s.unit_id, s.branch_id "
                f"FROM search_liaisons s WHERE {where} LIMIT {limits.RESULT_CAP + 1})"
            ],
            count=f"SELECT count(*) FROM {m}",
            page=f"SELECT * FROM {m} ORDER BY rowkey LIMIT :{p}rows",
        )

    def clause_sources(self, patterns: Sequence[TermPattern], rank_limit: int | None,
                       agreement_id: int | None, params: dict[str, Any]) -> ClauseSql:
        conditions = self._term_conditions(patterns, "c_", params)
        if rank_limit is not None:
            params["c_bound"] = rank_limit << 34
            conditions.append("s.rowkey < :c_bound")
        if agreement_id is not None:
            params["c_agreement"] = int(agreement_id)
            conditions.append("s.agreement_id = :c_agreement")
        cap = 2 * (limits.RESULT_CAP + 1)  # rows: each clause has at most two
        ctes = [
            "m AS MATERIALIZED (SELECT s.rowkey AS k, s.kind FROM search_clauses s "
            f"WHERE {' AND '.join(conditions)} LIMIT {cap})",
        ]
        # Over the cap when the rows ran out first (then at least cap / 2 clauses).
        total = (
            f"(SELECT CASE WHEN count(*) >= {cap} THEN {limits.RESULT_CAP + 1} "
            "ELSE count(*) FILTER (WHERE kind = 1) END FROM m)"
        )
        return ctes, total, "SELECT k FROM m ORDER BY k"


class SqliteDialect(Dialect):
    """FTS5 phrase queries over the positional token stream; unit and branch filters
    as key tokens in the same MATCH, so FTS5 intersects everything itself."""

    name = "sqlite"

    @staticmethod
    def _match(f: Filter) -> str:
        positive = [f"({_fts_pattern(q)})" for q in f.patterns]
        if f.units is not None:
            positive.append(_fts_any("u", f.units))
        if f.branches is not None:
            positive.append(_fts_any("b", f.branches))
        expression = " AND ".join(positive)
        if f.not_branches:
            expression = f"({expression}) NOT {_fts_any('b', f.not_branches)}"
        return expression

    def liaison_tier(self, f: Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
        if not f.patterns:
            where = " AND ".join(self._structured(f, p, params, arrays=False)) or "1"
            return self._plain_tier(where, p, params, rows)
        params[f"{p}match"] = self._match(f)
        params[f"{p}rows"] = rows
        fts = f"search_liaisons_fts MATCH :{p}match"
        if f.not_name is not None:  # the NAME tier's rows, excluded without a join
            params[f"{p}not_name"] = f.not_name
            fts += (
                f" AND rowid NOT IN (SELECT rowkey FROM search_liaisons WHERE name = :{p}not_name)"
            )
        return _Tier(
            ctes=[],
            count=f"SELECT count(*) FROM (SELECT 1 FROM search_liaisons_fts WHERE {fts} "
            f"LIMIT {limits.RESULT_CAP + 1}) AS capped",
            page="SELECT s.rowkey, s.unit_id, s.branch_id FROM (SELECT rowid AS k "
            f"FROM search_liaisons_fts WHERE {fts} ORDER BY rowid LIMIT :{p}rows) AS hit "
            "JOIN search_liaisons s ON s.rowkey = hit.k",
        )

    def clause_sources(self, patterns: Sequence[TermPattern], rank_limit: int | None,
                       agreement_id: int | None, params: dict[str, Any]) -> ClauseSql:
        parts = [f"({_fts_pattern(q)})" for q in patterns]
        if agreement_id is not None:
            parts.append(f"keys : a{int(agreement_id)}")
        params["c_match"] = " AND ".join(parts)
        params["c_full"] = " AND ".join([*parts, "keys : full"])
        bound = ""
        if rank_limit is not None:
            params["c_bound"] = rank_limit << 34
            bound = " AND rowid < :c_bound"
        total = (
            "(SELECT count(*) FROM (SELECT 1 FROM search_clauses_fts "
            f"WHERE search_clauses_fts MATCH :c_full{bound} "
            f"LIMIT {limits.RESULT_CAP + 1}) AS capped)"
        )
        keys = (
            "SELECT rowid AS k FROM search_clauses_fts "
            f"WHERE search_clauses_fts MATCH :c_match{bound} ORDER BY rowid"
        )
        return [], total, keys


_DIALECTS: dict[str, Dialect] = {"sqlite": SqliteDialect(), "postgresql": PostgresDialect()}


def dialect_of(session: AsyncSession) -> Dialect:
    name = session.bind.dialect.name if session.bind is not None else "sqlite"
    try:
        return _DIALECTS[name]
    except KeyError:
        raise RuntimeError(f"search does not support the {name} database") from None


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


async def fetch(session: AsyncSession, sql: str, params: dict[str, Any]) -> Sequence[Any]:
    """Run one read statement through the driver, in the session's transaction.

    Through SQLAlchemy's adapters a statement costs four hand-offs to aiosqlite's
    thread (cursor, execute, fetch, close) and several layers of result
    processing; the driver call is one. On a busy two-core machine that is most
    of a search's latency. Statements here are plain SQL with `:name` parameters
    (turned into `$n` for asyncpg) and simple result types.
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()  # as session.execute would (autoflush)
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if connection.dialect.name == "postgresql":
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        numbered = _NAMED_PARAMETER.sub(number, sql)
        return await driver.fetch(numbered, *(params[n] for n in names))
    return await driver.execute_fetchall(sql, params)


def with_ctes(ctes: Sequence[str]) -> str:
    return ("WITH " + ", ".join(ctes) + " ") if ctes else ""
