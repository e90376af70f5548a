"""The search engine behind /contact, /agreement, plain-text lookups and inline mode.

How a contact query is answered
-------------------------------
1. The query is normalised (`core.normalize`) and parsed against an in-memory
   `Vocabulary` of units, branches and zones (loaded from the database, cached per
   database; `invalidate()` drops it, `refresh_search_index` does so too).
   `四川 刑侦`, `川刑警`, `Sichuan CID` become unit and branch ids; what is left
   (names, phone digits, free text) becomes terms.
2. Units and branches are indexed columns of `search_liaisons`, answered by plain
   SQL on both backends. Terms go to the token index:

   * SQLite: an FTS5 table over `search_liaisons` holding the positional stream of
     overlapping two-character (Chinese) and three-character (ASCII) tokens, with a
     filler token at punctuation and field boundaries; a term is a phrase query
     (`grams : "张伟 伟民"`), a single Chinese character a lookup in the `chars`
     column, unit and branch filters `keys : u12`/`keys : b3` in the same MATCH.
     (FTS5's own trigram tokenizer finds nothing for two characters.)
   * PostgreSQL: the same tokens (plus single characters) as a `text[]` column with
     a GIN index: `grams @> ARRAY[...]`, confirmed by `strpos` on the normalised
     document unless one token is the whole term. No pg_trgm, so the database's
     ctype does not matter.

3. Ranking is cheap by construction: `rowkey` = role rank << 32 | liaison id, so
   index order is rank order. Tiers: `EXACT` (unit and branch as asked), then `UNIT`
   (that unit, other or no branch), `BRANCH` (branch only asked), `NAME` (the name
   is the term), `FUZZY` (name, phone digits or text contain the terms); within a
   tier primary before backup, then id.
4. Limit early: counts stop at `RESULT_CAP` (200: "200+"; counting every match of
   a frequent term was the slow part), and each search is ONE statement — the
   capped count and the first offset + limit rows of every tier together — run
   through the driver (`_fetch`): on a busy machine the hand-offs to aiosqlite's
   thread and SQLAlchemy's result layers cost more than the query itself.

Clauses (`search_clauses`) are indexed twice: heading + mechanism names (kind 0)
and the whole clause (kind 1), `rowkey` = status rank << 34 | kind << 32 | clause
id. One ordered scan yields in-force before superseded, heading/mechanism matches
before text matches; the count is over kind 1 rows only. The same statement
fetches the page's clauses, agreements and mechanism names; snippets are cut from
the original text around the match found in the normalised text.

Keeping the index in step: `refresh_search_index(session, ...)` after any change
of liaisons, clauses, agreements (status) or mechanisms (the importer calls it);
deleting a liaison or clause removes its rows by cascade (SQLite: triggers keep
the FTS5 tables in step). A full rebuild drops the secondary indexes, writes the
rows in rank order through the driver (COPY on PostgreSQL) and rebuilds them.
`check_search_backend(engine)` is the start-up probe, `ensure_search_index`
fills an empty index.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.enums import AgreementStatus, LiaisonRole
from core.normalize import (
    FILLER,
    ParsedQuery,
    Suggestion,
    TermPattern,
    VocabItem,
    Vocabulary,
    index_tokens,
    normalize,
    normalize_many,
    normalize_phone,
    parse_query,
    query_terms,
    snippet,
    term_pattern,
)
from core.normalize import suggest as suggest_from_vocabulary
from storage.cache import EpochCache, bump_data_epoch, data_epoch
from storage.models import (
    Agreement,
    Branch,
    Clause,
    ClauseMechanism,
    ClauseSearchRow,
    Liaison,
    LiaisonSearchRow,
    Mechanism,
    Unit,
    Zone,
    ZoneMembership,
)

__all__ = [
    "ClauseHit",
    "ClauseResults",
    "LiaisonHit",
    "LiaisonResults",
    "MatchTier",
    "check_search_backend",
    "ensure_search_index",
    "invalidate",
    "load_vocabulary",
    "refresh_search_index",
    "search_clauses",
    "search_liaisons",
    "search_liaisons_cached",
    "suggest",
]

ID_MASK = (1 << 32) - 1
ROLE_RANK = {LiaisonRole.primary: 0, LiaisonRole.backup: 1}
STATUS_RANK = {
    AgreementStatus.in_force: 0,
    AgreementStatus.draft: 1,
    AgreementStatus.expired: 2,
    AgreementStatus.superseded: 3,
}
STATUS_SCORE = {0: 1.0, 1: 0.8, 2: 0.5, 3: 0.4}
# Rank bound of agreements still applying (in force, draft) for include_superseded=False.
CURRENT_STATUS_LIMIT = 2
FTS_TABLES = {"search_liaisons": "search_liaisons_fts", "search_clauses": "search_clauses_fts"}
MAX_LIMIT = 200
# Hits are counted (and paged) up to this many: "200+". Counting every match of a
# frequent term is what makes search slow; nobody pages past this.
RESULT_CAP = 200
_CHUNK = 5000


class MatchTier(enum.IntEnum):
    """Why a liaison matched; lower is better."""

    EXACT = 0  # the unit and the branch asked for
    UNIT = 1  # the unit asked for, another or no branch
    BRANCH = 2  # the branch asked for (no unit given)
    NAME = 3  # the name is the query term
    FUZZY = 4  # name, phone digits or text contain the terms


TIER_SCORE = {
    MatchTier.EXACT: 1.0,
    MatchTier.UNIT: 0.8,
    MatchTier.BRANCH: 0.7,
    MatchTier.NAME: 0.6,
    MatchTier.FUZZY: 0.4,
}


@dataclass(frozen=True)
class LiaisonHit:
    liaison_id: int
    tier: MatchTier
    score: float  # 0..1, higher is better; tier score, less 0.05 for a backup
    unit_id: int
    branch_id: int | None
    primary: bool


@dataclass
class LiaisonResults:
    hits: list[LiaisonHit]
    total: int
    offset: int
    limit: int
    query: ParsedQuery
    tier_counts: dict[MatchTier, int] = field(default_factory=dict)  # each capped at cap + 1
    suggestions: list[Suggestion] = field(default_factory=list)  # when nothing matched
    capped: bool = False  # more than RESULT_CAP hits; total == RESULT_CAP
    # A unit and a branch asked for: the units' liaisons of other branches, counted
    # (up to RESULT_CAP + 1) but not listed, so that a count never mixes the two.
    other_branches: int = 0

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.hits) < self.total


@dataclass(frozen=True)
class ClauseHit:
    clause_id: int
    agreement_id: int
    agreement_short_title: str
    agreement_status: AgreementStatus
    number: str
    heading: str | None
    mechanisms: tuple[str, ...]
    snippet: str
    in_heading: bool  # matched in the heading or mechanism names, not only the text
    score: float


@dataclass
class ClauseResults:
    hits: list[ClauseHit]
    total: int
    offset: int
    limit: int
    terms: tuple[str, ...]
    capped: bool = False  # more than RESULT_CAP hits; total == RESULT_CAP

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.hits) < self.total


# --------------------------------------------------------------------------- vocabulary

_vocabularies: dict[str, tuple[int, Vocabulary]] = {}


def _cache_key(session: AsyncSession) -> str:
    bind = session.bind
    return bind.url.render_as_string(hide_password=True) if bind is not None else "?"


def invalidate(engine: AsyncEngine | None = None) -> None:
    """Forget the cached vocabulary (of one engine's database, or of all)."""
    if engine is None:
        _vocabularies.clear()
    else:
        _vocabularies.pop(engine.url.render_as_string(hide_password=True), None)


def _strings(values: Any) -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(str(v) for v in values if v)


async def load_vocabulary(session: AsyncSession, *, epoch: int | None = None) -> Vocabulary:
    """The units, branches and zones the query parser knows, cached per database and
    data epoch (any change to them, by any process, moves the epoch: storage/cache.py).
    Pass the `epoch` when the caller has read it already (negative: not read)."""
    key = _cache_key(session)
    if epoch is None or epoch < 0:
        epoch = await data_epoch(session)
    cached = _vocabularies.get(key)
    if cached is not None and cached[0] == epoch:
        return cached[1]
    items: list[VocabItem] = []
    units = await session.execute(
        select(Unit.id, Unit.name, Unit.short_name, Unit.abbreviation, Unit.english, Unit.aliases)
    )
    for ident, name, short, abbreviation, english, aliases in units:
        items.append(
            VocabItem(
                "unit",
                ident,
                name,
                names=_strings([short, english, *(aliases or [])]),
                abbreviations=_strings([abbreviation]),
            )
        )
    branches = await session.execute(select(Branch.id, Branch.name, Branch.english, Branch.aliases))
    for ident, name, english, aliases in branches:
        items.append(VocabItem("branch", ident, name, names=_strings([english, *(aliases or [])])))
    members: dict[int, set[int]] = {}
    for zone_id, unit_id in await session.execute(
        select(ZoneMembership.zone_id, ZoneMembership.unit_id)
    ):
        members.setdefault(zone_id, set()).add(unit_id)
    zones = await session.execute(
        select(Zone.id, Zone.name, Zone.short_name, Zone.english, Zone.aliases)
    )
    for ident, name, short, english, aliases in zones:
        items.append(
            VocabItem(
                "zone",
                ident,
                name,
                names=_strings([short, english, *(aliases or [])]),
                members=frozenset(members.get(ident, ())),
            )
        )
    vocabulary = Vocabulary(items)
    _vocabularies[key] = (epoch, vocabulary)
    return vocabulary


def _invalidate_after_transaction(session: AsyncSession) -> None:
    key = _cache_key(session)
    _vocabularies.pop(key, None)

    def drop(*_args: Any) -> None:
        _vocabularies.pop(key, None)

    sync_session = session.sync_session
    for name in ("after_commit", "after_rollback"):
        event.listen(sync_session, name, drop, once=True)


async def suggest(session: AsyncSession, query: str, *, limit: int = 5) -> list[Suggestion]:
    """Nearest units, branches and zones for a query that found nothing."""
    return suggest_from_vocabulary(query, await load_vocabulary(session), limit=limit)


# --------------------------------------------------------------------------- SQL per backend


@dataclass(frozen=True)
class _Filter:
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


class _Dialect:
    """Builds the one statement each search runs (a round trip costs more than the
    query itself); the backends differ in how terms are matched."""

    name = "base"

    def liaison_tier(self, f: _Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
        raise NotImplementedError

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[list[str], str, str]:
        """(common table expressions, total expression capped at RESULT_CAP + 1,
        rowkeys in rank order without LIMIT)."""
        raise NotImplementedError

    @staticmethod
    def _structured(f: _Filter, p: str, params: dict[str, Any], *, arrays: bool) -> list[str]:
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
            f"LIMIT {RESULT_CAP + 1}) AS capped",
            page=f"SELECT s.rowkey, s.unit_id, s.branch_id FROM search_liaisons s WHERE {where} "
            f"ORDER BY s.rowkey LIMIT :{p}rows",
        )


class _PostgresDialect(_Dialect):
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

    def liaison_tier(self, f: _Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
        structured = self._structured(f, p, params, arrays=True)
        where = " AND ".join(self._term_conditions(f.patterns, p, params) + structured) or "TRUE"
        if not f.patterns:
            return self._plain_tier(where, p, params, rows)
        params[f"{p}rows"] = rows
        m = f"{p}m"
        return _Tier(
            ctes=[
                f"{m} AS MATERIALIZED (SELECT s.rowkey, s.unit_id, s.branch_id "
                f"FROM search_liaisons s WHERE {where} LIMIT {RESULT_CAP + 1})"
            ],
            count=f"SELECT count(*) FROM {m}",
            page=f"SELECT * FROM {m} ORDER BY rowkey LIMIT :{p}rows",
        )

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[list[str], str, str]:
        conditions = self._term_conditions(patterns, "c_", params)
        if rank_limit is not None:
            params["c_bound"] = rank_limit << 34
            conditions.append("s.rowkey < :c_bound")
        if agreement_id is not None:
            params["c_agreement"] = int(agreement_id)
            conditions.append("s.agreement_id = :c_agreement")
        cap = 2 * (RESULT_CAP + 1)  # rows: each clause has at most two
        ctes = [
            "m AS MATERIALIZED (SELECT s.rowkey AS k, s.kind FROM search_clauses s "
            f"WHERE {' AND '.join(conditions)} LIMIT {cap})",
        ]
        # Over the cap when the rows ran out first (then at least cap / 2 clauses).
        total = (
            f"(SELECT CASE WHEN count(*) >= {cap} THEN {RESULT_CAP + 1} "
            "ELSE count(*) FILTER (WHERE kind = 1) END FROM m)"
        )
        return ctes, total, "SELECT k FROM m ORDER BY k"


class _SqliteDialect(_Dialect):
    """FTS5 phrase queries over the positional token stream; unit and branch filters
    as key tokens in the same MATCH, so FTS5 intersects everything itself."""

    name = "sqlite"

    @staticmethod
    def _match(f: _Filter) -> str:
        positive = [f"({_fts_pattern(q)})" for q in f.patterns]
        if f.units is not None:
            positive.append(_fts_any("u", f.units))
        if f.branches is not None:
            positive.append(_fts_any("b", f.branches))
        expression = " AND ".join(positive)
        if f.not_branches:
            expression = f"({expression}) NOT {_fts_any('b', f.not_branches)}"
        return expression

    def liaison_tier(self, f: _Filter, p: str, params: dict[str, Any], rows: int) -> _Tier:
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
            f"LIMIT {RESULT_CAP + 1}) AS capped",
            page="SELECT s.rowkey, s.unit_id, s.branch_id FROM (SELECT rowid AS k "
            f"FROM search_liaisons_fts WHERE {fts} ORDER BY rowid LIMIT :{p}rows) AS hit "
            "JOIN search_liaisons s ON s.rowkey = hit.k",
        )

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[list[str], str, str]:
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
            f"WHERE search_clauses_fts MATCH :c_full{bound} LIMIT {RESULT_CAP + 1}) AS capped)"
        )
        keys = (
            "SELECT rowid AS k FROM search_clauses_fts "
            f"WHERE search_clauses_fts MATCH :c_match{bound} ORDER BY rowid"
        )
        return [], total, keys


_DIALECTS: dict[str, _Dialect] = {"sqlite": _SqliteDialect(), "postgresql": _PostgresDialect()}


def _dialect(session: AsyncSession) -> _Dialect:
    name = session.bind.dialect.name if session.bind is not None else "sqlite"
    try:
        return _DIALECTS[name]
    except KeyError:
        raise RuntimeError(f"search does not support the {name} database") from None


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


async def _fetch(session: AsyncSession, sql: str, params: dict[str, Any]) -> Sequence[Any]:
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


def _with(ctes: Sequence[str]) -> str:
    return ("WITH " + ", ".join(ctes) + " ") if ctes else ""


# --------------------------------------------------------------------------- liaisons


def _clamp(offset: int, limit: int) -> tuple[int, int]:
    return max(0, int(offset)), max(0, min(int(limit), MAX_LIMIT))


def _plan(parsed: ParsedQuery, vocabulary: Vocabulary) -> list[tuple[MatchTier, _Filter]]:
    patterns = tuple(p for p in (term_pattern(t) for t in parsed.terms) if p is not None)
    units: frozenset[int] | None = parsed.unit_ids or None
    if parsed.zone_ids:
        zone_units = vocabulary.units_of_zones(parsed.zone_ids)
        units = zone_units if units is None else units & zone_units
        if not units:
            return []
    branches: frozenset[int] | None = parsed.branch_ids or None
    if units is not None and branches is not None:
        # The UNIT tier is counted only (`LiaisonResults.other_branches`).
        return [
            (MatchTier.EXACT, _Filter(units=units, branches=branches, patterns=patterns)),
            (MatchTier.UNIT, _Filter(units=units, not_branches=branches, patterns=patterns)),
        ]
    if units is not None:
        return [(MatchTier.UNIT, _Filter(units=units, patterns=patterns))]
    if branches is not None:
        return [(MatchTier.BRANCH, _Filter(branches=branches, patterns=patterns))]
    if not patterns:
        return []
    if len(parsed.terms) == 1:
        name = parsed.terms[0]
        return [
            (MatchTier.NAME, _Filter(name=name)),
            (MatchTier.FUZZY, _Filter(patterns=patterns, not_name=name)),
        ]
    return [(MatchTier.FUZZY, _Filter(patterns=patterns))]


def _listed(plan: list[tuple[MatchTier, _Filter]]) -> list[tuple[MatchTier, _Filter]]:
    """The tiers whose hits are listed: with a unit and a branch asked for, only the
    exact ones (the rest of the units' liaisons are counted apart)."""
    return [(tier, spec) for tier, spec in plan
            if not (tier is MatchTier.UNIT and plan[0][0] is MatchTier.EXACT)]


def _liaison_statement(
    dialect: _Dialect, plan: list[tuple[MatchTier, _Filter]], rows: int
) -> tuple[str, dict[str, Any]]:
    """One statement: rows (0, tier, count) and (1, tier, rowkey, unit, branch)
    for the first `rows` rows of every listed tier (`_listed`)."""
    params: dict[str, Any] = {}
    ctes: list[str] = []
    parts: list[str] = []
    listed = _listed(plan)
    for index, (tier_kind, spec) in enumerate(plan):
        listed_rows = rows if (tier_kind, spec) in listed else 0
        tier = dialect.liaison_tier(spec, f"t{index}_", params, listed_rows)
        ctes.extend(tier.ctes)
        parts.append(
            f"SELECT 0 AS part, {index} AS tier, ({tier.count}) AS a, "
            "CAST(NULL AS INTEGER) AS b, CAST(NULL AS INTEGER) AS c"
        )
        if listed_rows > 0:
            parts.append(
                f"SELECT * FROM (SELECT 1 AS part, {index} AS tier, page.* "
                f"FROM ({tier.page}) AS page) AS p{index}"
            )
    return _with(ctes) + " UNION ALL ".join(parts), params


async def search_liaisons(
    session: AsyncSession, query: str, *, offset: int = 0, limit: int = 10,
    epoch: int | None = None,
) -> LiaisonResults:
    """Liaisons for a free-form query (unit, branch, zone, name, phone in any order).

    Hits are ranked by tier (`MatchTier`), then primary before backup, then id.
    `total` counts the hits for paging with `offset`/`limit`, up to RESULT_CAP
    (`capped` is then true: "200+"; pages stop there). With no hit, `suggestions`
    holds the nearest units, branches and zones.
    """
    offset, limit = _clamp(offset, limit)
    vocabulary = await load_vocabulary(session, epoch=epoch)
    parsed = parse_query(query, vocabulary)
    plan = _plan(parsed, vocabulary)
    counts: dict[MatchTier, int] = {tier: 0 for tier, _ in plan}
    fetched: dict[int, list[tuple[int, int, int | None]]] = {}
    if plan:
        # Counts and the first offset + limit rows of every tier, in one round trip.
        rows_wanted = min(offset + limit, RESULT_CAP) if offset < RESULT_CAP else 0
        sql, params = _liaison_statement(_dialect(session), plan, rows_wanted)
        for part, index, a, b, c in await _fetch(session, sql, params):
            if part == 0:
                counts[plan[index][0]] = int(a)
            else:
                fetched.setdefault(index, []).append((int(a), int(b), c))
    listed = _listed(plan)
    other_branches = 0 if len(listed) == len(plan) else counts[MatchTier.UNIT]
    found = sum(counts.values()) - other_branches
    total = min(found, RESULT_CAP)
    hits: list[LiaisonHit] = []
    before = 0
    for index, (tier, spec) in enumerate(plan):
        if (tier, spec) not in listed:
            continue
        rows = sorted(fetched.get(index, []))
        start = max(0, offset - before)
        stop = max(0, min(offset + limit, total) - before)
        before += counts[tier]
        for rowkey, unit_id, branch_id in rows[start:stop]:
            primary = rowkey >> 32 == 0
            hits.append(
                LiaisonHit(
                    liaison_id=rowkey & ID_MASK,
                    tier=tier,
                    score=round(TIER_SCORE[tier] - (0 if primary else 0.05), 3),
                    unit_id=unit_id,
                    branch_id=branch_id,
                    primary=primary,
                )
            )
    suggestions: list[Suggestion] = []
    if found == 0 and not other_branches and query.strip():
        recognised = {(kind, ident) for kind, ident, _ in parsed.recognised}
        suggestions = [s for s in suggest_from_vocabulary(query, vocabulary)
                       if (s.kind, s.id) not in recognised]
    return LiaisonResults(
        hits, total, offset, limit, parsed, counts, suggestions, capped=found > RESULT_CAP,
        other_branches=min(other_branches, RESULT_CAP),
    )


async def search_liaisons_cached(
    session: AsyncSession, cache: EpochCache, epoch: int, query: str, *, offset: int = 0,
    limit: int = 10,
) -> LiaisonResults:
    """`search_liaisons`, answered from memory while the data epoch stands
    (storage/cache.py): officers ask for the same provinces all day."""
    return await cache.get_or_load(
        epoch, (query, offset, limit),
        lambda: search_liaisons(session, query, offset=offset, limit=limit, epoch=epoch))


# --------------------------------------------------------------------------- clauses


async def search_clauses(
    session: AsyncSession,
    query: str,
    *,
    limit: int = 10,
    offset: int = 0,
    include_superseded: bool = True,
    agreement_id: int | None = None,
) -> ClauseResults:
    """Clauses whose heading, text or mechanism names contain every term of `query`.

    In-force agreements first (then draft, expired, superseded), then matches in
    the heading or mechanism names before matches only in the text. Without
    `include_superseded`, only agreements in force (or draft) are searched.
    `total` is capped at RESULT_CAP like contacts. One statement: the count, the
    page (each clause has a heading row and a whole-clause row, so the first
    2 × (offset + limit) rows hold it) and the clauses' details.
    """
    offset, limit = _clamp(offset, limit)
    terms = tuple(dict.fromkeys(query_terms(normalize(query))))
    patterns = [p for p in (term_pattern(t) for t in terms) if p is not None]
    if not patterns or offset >= RESULT_CAP:
        return ClauseResults([], 0, offset, limit, terms)
    limit = min(limit, RESULT_CAP - offset)
    dialect = _dialect(session)
    params: dict[str, Any] = {}
    rank_limit = None if include_superseded else CURRENT_STATUS_LIMIT
    ctes, total_sql, keys_sql = dialect.clause_sources(patterns, rank_limit, agreement_id, params)
    params.update(c_rows=2 * (offset + limit), c_limit=limit, c_offset=offset)
    sql = _with(
        [
            *ctes,
            f"hits AS ({keys_sql} LIMIT :c_rows)",
            f"page AS (SELECT k & {ID_MASK} AS clause_id, min(k) AS k FROM hits "
            f"GROUP BY k & {ID_MASK} ORDER BY min(k) LIMIT :c_limit OFFSET :c_offset)",
        ]
    ) + (
        "SELECT page.k, c.id, c.agreement_id, c.number, c.heading, c.text, a.short_title, "
        f"a.status, mech.name, {total_sql} AS total "
        "FROM page JOIN clauses c ON c.id = page.clause_id "
        "JOIN agreements a ON a.id = c.agreement_id "
        "LEFT JOIN clause_mechanisms cm ON cm.clause_id = c.id "
        "LEFT JOIN mechanisms mech ON mech.id = cm.mechanism_id "
        "ORDER BY page.k, mech.id"
    )
    rows = await _fetch(session, sql, params)
    if rows:
        found = int(rows[0][9])
    elif offset > 0 and limit > 0:
        found = int((await _fetch(session, _with(ctes) + f"SELECT {total_sql}", params))[0][0])
    else:
        found = 0
    grouped: dict[int, list[Any]] = {}
    mechanisms: dict[int, list[str]] = {}
    for row in rows:
        grouped.setdefault(row[1], list(row))
        if row[8] is not None:
            mechanisms.setdefault(row[1], []).append(row[8])
    needle = max(terms, key=len)
    hits = []
    for clause_id, row in grouped.items():
        rowkey, _, agreement, number, heading, body, short_title, status = row[:8]
        status_rank, in_heading = rowkey >> 34, (rowkey >> 32) & 1 == 0
        hits.append(
            ClauseHit(
                clause_id=clause_id,
                agreement_id=agreement,
                agreement_short_title=short_title,
                agreement_status=AgreementStatus(status),
                number=number,
                heading=heading,
                mechanisms=tuple(mechanisms.get(clause_id, ())),
                snippet=snippet(body or "", needle, others=terms),
                in_heading=in_heading,
                score=round(STATUS_SCORE.get(status_rank, 0.3) - (0 if in_heading else 0.1), 3),
            )
        )
    return ClauseResults(
        hits, min(found, RESULT_CAP), offset, limit, terms, capped=found > RESULT_CAP
    )


# --------------------------------------------------------------------------- indexing

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
        names.setdefault(clause_id, []).extend([name, *_strings(aliases)])
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
    rank order (see `_PostgresDialect`) and the indexes rebuilt from their own
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
    _invalidate_after_transaction(session)


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


# --------------------------------------------------------------------------- start-up probe


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
