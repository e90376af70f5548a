"""Contact search: liaisons for a free-form query, ranked by tier (`MatchTier`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.tokens import term_pattern
from core.vocabulary import ParsedQuery
from core.vocabulary import Suggestion
from core.vocabulary import Vocabulary
from core.vocabulary import parse_query
from core.vocabulary import suggest as suggest_from_vocabulary
from storage.cache import EpochCache
from storage.search import limits
from storage.search.dialects import Dialect
from storage.search.dialects import Filter
from storage.search.dialects import dialect_of
from storage.search.dialects import fetch
from storage.search.dialects import with_ctes
from storage.search.index import ID_MASK
from storage.search.vocabulary import load_vocabulary


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


def _plan(parsed: ParsedQuery, vocabulary: Vocabulary) -> list[tuple[MatchTier, Filter]]:
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
            (MatchTier.EXACT, Filter(units=units, branches=branches, patterns=patterns)),
            (MatchTier.UNIT, Filter(units=units, not_branches=branches, patterns=patterns)),
        ]
    if units is not None:
        return [(MatchTier.UNIT, Filter(units=units, patterns=patterns))]
    if branches is not None:
        return [(MatchTier.BRANCH, Filter(branches=branches, patterns=patterns))]
    if not patterns:
        return []
    if len(parsed.terms) == 1:
        name = parsed.terms[0]
        return [
            (MatchTier.NAME, Filter(name=name)),
            (MatchTier.FUZZY, Filter(patterns=patterns, not_name=name)),
        ]
    return [(MatchTier.FUZZY, Filter(patterns=patterns))]


def _listed(plan: list[tuple[MatchTier, Filter]]) -> list[tuple[MatchTier, Filter]]:
    """The tiers whose hits are listed: with a unit and a branch asked for, only the
    exact ones (the rest of the units' liaisons are counted apart)."""
    return [(tier, spec) for tier, spec in plan
            if not (tier is MatchTier.UNIT and plan[0][0] is MatchTier.EXACT)]


def _liaison_statement(
    dialect: Dialect, plan: list[tuple[MatchTier, Filter]], rows: int
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
    return with_ctes(ctes) + " UNION ALL ".join(parts), params


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
    offset, limit = limits.clamp(offset, limit)
    vocabulary = await load_vocabulary(session, epoch=epoch)
    parsed = parse_query(query, vocabulary)
    plan = _plan(parsed, vocabulary)
    counts: dict[MatchTier, int] = {tier: 0 for tier, _ in plan}
    fetched: dict[int, list[tuple[int, int, int | None]]] = {}
    if plan:
        # Counts and the first offset + limit rows of every tier, in one round trip.
        rows_wanted = min(offset + limit, limits.RESULT_CAP) if offset < limits.RESULT_CAP else 0
        sql, params = _liaison_statement(dialect_of(session), plan, rows_wanted)
        for part, index, a, b, c in await fetch(session, sql, params):
            if part == 0:
                counts[plan[index][0]] = int(a)
            else:
                fetched.setdefault(index, []).append((int(a), int(b), c))
    listed = _listed(plan)
    other_branches = 0 if len(listed) == len(plan) else counts[MatchTier.UNIT]
    found = sum(counts.values()) - other_branches
    total = min(found, limits.RESULT_CAP)
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
        hits, total, offset, limit, parsed, counts, suggestions, capped=found > limits.RESULT_CAP,
        other_branches=min(other_branches, limits.RESULT_CAP),
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
