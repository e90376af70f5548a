"""Clause search: clauses whose heading, text or mechanism names contain every term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.enums import AgreementStatus
from core.normalize import normalize
from core.normalize import query_terms
from core.normalize import snippet
from core.tokens import term_pattern
from storage.search import limits
from storage.search.dialects import dialect_of
from storage.search.dialects import fetch
from storage.search.dialects import with_ctes
from storage.search.index import ID_MASK

STATUS_SCORE = {0: 1.0, 1: 0.8, 2: 0.5, 3: 0.4}
# Rank bound of agreements still applying (in force, draft) for include_superseded=False.
CURRENT_STATUS_LIMIT = 2


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
    offset, limit = limits.clamp(offset, limit)
    terms = tuple(dict.fromkeys(query_terms(normalize(query))))
    patterns = [p for p in (term_pattern(t) for t in terms) if p is not None]
    if not patterns or offset >= limits.RESULT_CAP:
        return ClauseResults([], 0, offset, limit, terms)
    limit = min(limit, limits.RESULT_CAP - offset)
    dialect = dialect_of(session)
    params: dict[str, Any] = {}
    rank_limit = None if include_superseded else CURRENT_STATUS_LIMIT
    ctes, total_sql, keys_sql = dialect.clause_sources(patterns, rank_limit, agreement_id, params)
    params.update(c_rows=2 * (offset + limit), c_limit=limit, c_offset=offset)
    sql = with_ctes(
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
    rows = await fetch(session, sql, params)
    if rows:
        found = int(rows[0][9])
    elif offset > 0 and limit > 0:
        found = int((await fetch(session, with_ctes(ctes) + f"SELECT {total_sql}", params))[0][0])
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
        hits, min(found, limits.RESULT_CAP), offset, limit, terms, capped=found > limits.RESULT_CAP
    )
