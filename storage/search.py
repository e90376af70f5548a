"""The search engine behind /contact, /agreement, plain-text lookups and inline mode.

How a contact query is answered
-------------------------------
1. The query is normalised (`bot.domain.normalize`) and parsed against an in-memory
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
   tier primary before backup. Each tier is counted and paged with LIMIT/OFFSET.

Clauses (`search_clauses`) are indexed twice: heading + mechanism names (kind 0)
and the whole clause (kind 1), `rowkey` = status rank << 34 | kind << 32 | clause
id. One ordered scan yields in-force before superseded, heading/mechanism matches
before text matches; the count is over kind 1 rows only.

Keeping the index in step: `refresh_search_index(session, ...)` after any change
of liaisons, clauses, agreements (status) or mechanisms; deleting a liaison or
clause removes its rows by cascade.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.domain.normalize import (
    FILLER,
    ParsedQuery,
    Suggestion,
    TermPattern,
    VocabItem,
    Vocabulary,
    char_tokens,
    normalize,
    normalize_many,
    normalize_phone,
    parse_query,
    query_terms,
    snippet,
    stream_tokens,
    term_pattern,
)
from bot.domain.normalize import suggest as suggest_from_vocabulary
from storage.models import (
    Agreement,
    AgreementStatus,
    Branch,
    Clause,
    ClauseMechanism,
    ClauseSearchRow,
    Liaison,
    LiaisonRole,
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
VOCABULARY_TTL_S = 300.0
MAX_LIMIT = 200
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
    tier_counts: dict[MatchTier, int] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)  # when total == 0

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

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.hits) < self.total


# --------------------------------------------------------------------------- vocabulary

_vocabularies: dict[str, tuple[float, Vocabulary]] = {}


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


async def load_vocabulary(session: AsyncSession, *, fresh: bool = False) -> Vocabulary:
    """The units, branches and zones the query parser knows (cached per database)."""
    key = _cache_key(session)
    cached = _vocabularies.get(key)
    if cached is not None and not fresh and time.monotonic() - cached[0] < VOCABULARY_TTL_S:
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
    _vocabularies[key] = (time.monotonic(), vocabulary)
    return vocabulary


def _invalidate_after_transaction(session: AsyncSession) -> None:
    key = _cache_key(session)
    _vocabularies.pop(key, None)

    def drop(*_args: Any) -> None:
        _vocabularies.pop(key, None)

    from sqlalchemy import event

    sync_session = session.sync_session
    for name in ("after_commit", "after_rollback"):
        if not event.contains(sync_session, name, drop):
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


class _Dialect:
    """Builds the one statement each search runs (a round trip costs more than the
    query itself), differing per backend only in how terms are matched."""

    name = "base"

    def liaison_source(self, f: _Filter, p: str, params: dict[str, Any]) -> tuple[str, str]:
        """(count SQL, page SQL without LIMIT) of one tier; the page yields
        rowkey, unit_id, branch_id in rank order."""
        raise NotImplementedError

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[str, str]:
        """(count SQL over whole-clause rows, ordered rowkeys SQL without LIMIT)."""
        raise NotImplementedError


class _PostgresDialect(_Dialect):
    """GIN-indexed `text[]` of tokens: containment, then a substring check."""

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

    def liaison_source(self, f: _Filter, p: str, params: dict[str, Any]) -> tuple[str, str]:
        conditions = self._term_conditions(f.patterns, p, params)
        if f.units is not None:
            params[f"{p}units"] = sorted(f.units)
            conditions.append(f"s.unit_id = ANY(CAST(:{p}units AS integer[]))")
        if f.branches is not None:
            params[f"{p}branches"] = sorted(f.branches)
            conditions.append(f"s.branch_id = ANY(CAST(:{p}branches AS integer[]))")
        if f.not_branches:
            params[f"{p}not_branches"] = sorted(f.not_branches)
            conditions.append(
                "(s.branch_id IS NULL OR NOT "
                f"s.branch_id = ANY(CAST(:{p}not_branches AS integer[])))"
            )
        if f.name is not None:
            params[f"{p}name"] = f.name
            conditions.append(f"s.name = :{p}name")
        if f.not_name is not None:
            params[f"{p}not_name"] = f.not_name
            conditions.append(f"s.name <> :{p}not_name")
        where = " AND ".join(conditions) or "TRUE"
        return (
            f"SELECT count(*) FROM search_liaisons s WHERE {where}",
            f"SELECT s.rowkey, s.unit_id, s.branch_id FROM search_liaisons s WHERE {where} "
            "ORDER BY s.rowkey",
        )

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[str, str]:
        conditions = self._term_conditions(patterns, "c_", params)
        if rank_limit is not None:
            params["c_bound"] = rank_limit << 34
            conditions.append("s.rowkey < :c_bound")
        if agreement_id is not None:
            params["c_agreement"] = int(agreement_id)
            conditions.append("s.agreement_id = :c_agreement")
        where = " AND ".join(conditions)
        return (
            f"SELECT count(*) FROM search_clauses s WHERE {where} AND s.kind = 1",
            f"SELECT s.rowkey AS k FROM search_clauses s WHERE {where} ORDER BY s.rowkey",
        )


class _SqliteDialect(_Dialect):
    """FTS5 phrase queries over the positional token stream; filters as key tokens."""

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

    def liaison_source(self, f: _Filter, p: str, params: dict[str, Any]) -> tuple[str, str]:
        names = []
        if f.name is not None:
            params[f"{p}name"] = f.name
            names.append(f"s.name = :{p}name")
        if f.not_name is not None:
            params[f"{p}not_name"] = f.not_name
            names.append(f"s.name != :{p}not_name")
        if f.patterns:
            params[f"{p}match"] = self._match(f)
            fts = f"search_liaisons_fts MATCH :{p}match"
            joined = (
                "FROM search_liaisons_fts JOIN search_liaisons s "
                f"ON s.rowkey = search_liaisons_fts.rowid WHERE {fts}"
                + "".join(f" AND {n}" for n in names)
            )
            count = (
                f"SELECT count(*) {joined}"
                if names
                else f"SELECT count(*) FROM search_liaisons_fts WHERE {fts}"
            )
            return count, (
                f"SELECT s.rowkey, s.unit_id, s.branch_id {joined} "
                "ORDER BY search_liaisons_fts.rowid"
            )
        conditions = list(names)
        if f.units is not None:
            conditions.append(f"s.unit_id IN ({_int_list(f.units)})")
        if f.branches is not None:
            conditions.append(f"s.branch_id IN ({_int_list(f.branches)})")
        if f.not_branches:
            conditions.append(
                f"(s.branch_id IS NULL OR s.branch_id NOT IN ({_int_list(f.not_branches)}))"
            )
        where = " AND ".join(conditions) or "1"
        return (
            f"SELECT count(*) FROM search_liaisons s WHERE {where}",
            f"SELECT s.rowkey, s.unit_id, s.branch_id FROM search_liaisons s WHERE {where} "
            "ORDER BY s.rowkey",
        )

    def clause_sources(
        self,
        patterns: Sequence[TermPattern],
        rank_limit: int | None,
        agreement_id: int | None,
        params: dict[str, Any],
    ) -> tuple[str, str]:
        parts = [f"({_fts_pattern(q)})" for q in patterns]
        if agreement_id is not None:
            parts.append(f"keys : a{int(agreement_id)}")
        params["c_match"] = " AND ".join(parts)
        params["c_full"] = " AND ".join([*parts, "keys : full"])
        bound = ""
        if rank_limit is not None:
            params["c_bound"] = rank_limit << 34
            bound = " AND rowid < :c_bound"
        return (
            "SELECT count(*) FROM search_clauses_fts "
            f"WHERE search_clauses_fts MATCH :c_full{bound}",
            "SELECT rowid AS k FROM search_clauses_fts "
            f"WHERE search_clauses_fts MATCH :c_match{bound} ORDER BY rowid",
        )


_DIALECTS: dict[str, _Dialect] = {"sqlite": _SqliteDialect(), "postgresql": _PostgresDialect()}


def _dialect(session: AsyncSession) -> _Dialect:
    name = session.bind.dialect.name if session.bind is not None else "sqlite"
    try:
        return _DIALECTS[name]
    except KeyError:
        raise RuntimeError(f"search does not support the {name} database") from None


# --------------------------------------------------------------------------- liaisons

# Up to this depth one statement fetches the counts and the first offset + limit
# rows of every tier; deeper pages count first, then fetch exactly.
ONE_STATEMENT_DEPTH = 500


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


def _liaison_statement(
    dialect: _Dialect,
    plan: list[tuple[MatchTier, _Filter]],
    *,
    counts: bool,
    pages: list[tuple[int, int]] | None,
) -> tuple[str, dict[str, Any]]:
    """One statement: rows (0, tier, count) and/or (1, tier, rowkey, unit, branch)."""
    params: dict[str, Any] = {}
    parts: list[str] = []
    for index, (_, spec) in enumerate(plan):
        count_sql, page_sql = dialect.liaison_source(spec, f"t{index}_", params)
        if counts:
            parts.append(
                f"SELECT 0 AS part, {index} AS tier, ({count_sql}) AS a, "
                "CAST(NULL AS INTEGER) AS b, CAST(NULL AS INTEGER) AS c"
            )
        if pages is not None and pages[index][1] > 0:
            offset, limit = pages[index]
            params[f"t{index}_limit"] = limit
            params[f"t{index}_offset"] = offset
            parts.append(
                f"SELECT * FROM (SELECT 1 AS part, {index} AS tier, page.* FROM ({page_sql} "
                f"LIMIT :t{index}_limit OFFSET :t{index}_offset) AS page) AS p{index}"
            )
    return " UNION ALL ".join(parts), params


async def search_liaisons(
    session: AsyncSession, query: str, *, offset: int = 0, limit: int = 10
) -> LiaisonResults:
    """Liaisons for a free-form query (unit, branch, zone, name, phone in any order).

    Hits are ranked by tier (`MatchTier`), then primary before backup, then id;
    `total` counts every hit for paging with `offset`/`limit`. With no hit,
    `suggestions` holds the nearest units, branches and zones.
    """
    offset, limit = _clamp(offset, limit)
    vocabulary = await load_vocabulary(session)
    parsed = parse_query(query, vocabulary)
    plan = _plan(parsed, vocabulary)
    dialect = _dialect(session)
    counts: dict[MatchTier, int] = {tier: 0 for tier, _ in plan}
    windows: dict[int, list[Any]] = {}
    if plan:
        if offset + limit <= ONE_STATEMENT_DEPTH:
            pages = [(0, offset + limit)] * len(plan)
            sql, params = _liaison_statement(dialect, plan, counts=True, pages=pages)
            rows = (await session.execute(text(sql), params)).all()
        else:
            sql, params = _liaison_statement(dialect, plan, counts=True, pages=None)
            rows = (await session.execute(text(sql), params)).all()
        for part, index, a, _, _ in rows:
            if part == 0:
                counts[plan[index][0]] = int(a)
        # Where the page [offset, offset + limit) falls in each tier.
        exact: list[tuple[int, int]] = []
        before = 0
        for tier, _ in plan:
            start = max(0, offset - before)
            stop = max(start, min(counts[tier], offset + limit - before))
            exact.append((start, stop - start))
            before += counts[tier]
        if offset + limit > ONE_STATEMENT_DEPTH and any(n for _, n in exact):
            sql, params = _liaison_statement(dialect, plan, counts=False, pages=exact)
            rows = (await session.execute(text(sql), params)).all()
            exact = [(0, n) for _, n in exact]
        fetched: dict[int, list[Any]] = {}
        for part, index, a, b, c in rows:
            if part == 1:
                fetched.setdefault(index, []).append((int(a), int(b), c))
        for index, (start, n) in enumerate(exact):
            windows[index] = fetched.get(index, [])[start : start + n]
    hits: list[LiaisonHit] = []
    for index, (tier, _) in enumerate(plan):
        for rowkey, unit_id, branch_id in windows.get(index, []):
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
    total = sum(counts.values())
    suggestions: list[Suggestion] = []
    if total == 0 and query.strip():
        suggestions = suggest_from_vocabulary(query, vocabulary)
    return LiaisonResults(hits, total, offset, limit, parsed, counts, suggestions)


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
    One statement: the count, the page (each clause has a heading row and a
    whole-clause row, so the first 2 × (offset + limit) rows hold it) and the
    clauses' details.
    """
    offset, limit = _clamp(offset, limit)
    terms = tuple(dict.fromkeys(query_terms(normalize(query))))
    patterns = [p for p in (term_pattern(t) for t in terms) if p is not None]
    if not patterns:
        return ClauseResults([], 0, offset, limit, terms)
    dialect = _dialect(session)
    params: dict[str, Any] = {}
    rank_limit = None if include_superseded else CURRENT_STATUS_LIMIT
    count_sql, keys_sql = dialect.clause_sources(patterns, rank_limit, agreement_id, params)
    params.update(c_rows=2 * (offset + limit), c_limit=limit, c_offset=offset)
    sql = (
        f"WITH hits AS ({keys_sql} LIMIT :c_rows), "
        f"page AS (SELECT k & {ID_MASK} AS clause_id, min(k) AS k FROM hits "
        f"GROUP BY k & {ID_MASK} ORDER BY min(k) LIMIT :c_limit OFFSET :c_offset) "
        "SELECT page.k, c.id, c.agreement_id, c.number, c.heading, c.text, a.short_title, "
        f"a.status, m.name, ({count_sql}) AS total "
        "FROM page JOIN clauses c ON c.id = page.clause_id "
        "JOIN agreements a ON a.id = c.agreement_id "
        "LEFT JOIN clause_mechanisms cm ON cm.clause_id = c.id "
        "LEFT JOIN mechanisms m ON m.id = cm.mechanism_id "
        "ORDER BY page.k, m.id"
    )
    rows = (await session.execute(text(sql), params)).all()
    if not rows:
        total = 0
        if offset > 0 and limit > 0:
            total = int((await session.execute(text(count_sql), params)).scalar_one())
        return ClauseResults([], total, offset, limit, terms)
    total = int(rows[0][9])
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
    return ClauseResults(hits, total, offset, limit, terms)


# --------------------------------------------------------------------------- indexing


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def _token_columns(fields: Sequence[str], keys: list[str], dialect: str) -> dict[str, Any]:
    stream = stream_tokens(fields)
    chars = char_tokens(fields)
    if dialect == "postgresql":
        grams = sorted({t for t in stream if t != FILLER} | set(chars))
        return {"grams": grams, "chars": [], "keys": []}
    return {"grams": stream, "chars": chars, "keys": keys}


def liaison_rows(records: Sequence[Any], dialect: str) -> list[dict[str, Any]]:
    """Index rows of liaisons given as (id, unit_id, branch_id, name, title, role,
    phones, telegram_username, notes) records (pure; used by refresh and the bench)."""
    texts: list[str | None] = []
    for r in records:
        texts.extend((r[3], r[4], r[7], r[8]))
    normalised = normalize_many(texts)
    rows = []
    for index, r in enumerate(records):
        ident, unit_id, branch_id, _, _, role, phones, _, _ = r
        name, title, username, notes = normalised[4 * index : 4 * index + 4]
        digits = [normalize_phone(str(p)) for p in (phones or []) if p]
        fields = [name, title, *[d for d in digits if d], username, notes]
        fields = [f for f in fields if f]
        keys = [f"u{unit_id}", f"b{branch_id}" if branch_id is not None else "bnone"]
        rank = ROLE_RANK.get(LiaisonRole(role), 1)
        rows.append(
            {
                "rowkey": rank << 32 | ident,
                "liaison_id": ident,
                "unit_id": unit_id,
                "branch_id": branch_id,
                "name": name[:60],
                "doc": "\n".join(fields),
                **_token_columns(fields, keys, dialect),
            }
        )
    return rows


def clause_rows(records: Sequence[Any], dialect: str) -> list[dict[str, Any]]:
    """Index rows of clauses given as (id, agreement_id, status, heading, text,
    [mechanism names and aliases]) records: a heading row and a whole-clause row."""
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
                {
                    "rowkey": rank << 34 | kind << 32 | ident,
                    "clause_id": ident,
                    "agreement_id": agreement_id,
                    "kind": kind,
                    "status_rank": rank,
                    "doc": "\n".join(fields),
                    **_token_columns(fields, keys, dialect),
                }
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


async def _insert(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dialect == "postgresql" and len(rows) > 1000:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if hasattr(driver, "copy_records_to_table"):
            columns = list(rows[0])
            await driver.copy_records_to_table(
                table.__tablename__,
                records=[tuple(r[c] for c in columns) for r in rows],
                columns=columns,
            )
            return
    for start in range(0, len(rows), _CHUNK):
        await session.execute(insert(table), rows[start : start + _CHUNK])


async def _sqlite_triggers(session: AsyncSession, table: str, *, create: bool) -> None:
    fts = FTS_TABLES[table]
    if not create:
        for suffix in ("ai", "ad", "au"):
            await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_{suffix}"))
        return
    new = "new.rowkey, new.grams, new.chars, new.keys"
    old = "old.rowkey, old.grams, old.chars, old.keys"
    columns = "rowid, grams, chars, keys"
    statements = [
        f"CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}({columns}) VALUES ({new}); END",
        f"CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, {columns}) VALUES ('delete', {old}); END",
        f"CREATE TRIGGER {table}_au AFTER UPDATE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, {columns}) VALUES ('delete', {old}); "
        f"INSERT INTO {fts}({columns}) VALUES ({new}); END",
    ]
    for statement in statements:
        await session.execute(text(statement))


async def _rebuild(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """Replace a whole search table: on SQLite without the per-row triggers, then
    one FTS5 'rebuild' (seconds for 100,000 rows instead of a trigger per row)."""
    name = table.__tablename__
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await _sqlite_triggers(session, name, create=False)
        await session.execute(delete(table))
        await _insert(session, table, rows)
        fts = FTS_TABLES[name]
        await session.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')"))
        await _sqlite_triggers(session, name, create=True)
    else:
        await session.execute(delete(table))
        await _insert(session, table, rows)


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
        records = (
            await session.execute(select(*_LIAISON_COLUMNS).where(Liaison.active.is_(True)))
        ).all()
        await _rebuild(session, LiaisonSearchRow, liaison_rows(records, dialect))
        await _rebuild(
            session, ClauseSearchRow, clause_rows(await _clause_records(session, None), dialect)
        )
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
                await _insert(session, LiaisonSearchRow, liaison_rows(records, dialect))
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
            await _insert(session, ClauseSearchRow, clause_rows(records, dialect))
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
