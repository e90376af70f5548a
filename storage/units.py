"""Units by what people type: `find_units` is the one resolution of a typed unit name
for every command (and the CLI), on the query parser's vocabulary; `folded_names` are
the names a partial match, and the mechanisms' lookup, compare."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import aliased

from core.enums import UnitLevel
from core.normalize import normalize
from core.normalize import normalize_many
from storage.models import Mechanism
from storage.models import Unit
from storage.models import ZoneMembership
from storage.search.vocabulary import load_vocabulary

# A partial name offers at most this many units (they become buttons to choose from).
PARTIAL_LIMIT = 8

# Ministry, provinces, cities, counties: the enum's order. Ordering by the column itself
# would be alphabetical (city < county < ministry < province): cities before provinces.
SENIOR_FIRST: tuple[ColumnElement[Any] | InstrumentedAttribute[int], ...] = (
    case({level: rank for rank, level in enumerate(UnitLevel)}, value=Unit.level,
         else_=len(UnitLevel)),
    Unit.id,
)

# Folded names by the raw names they come from: content-addressed, so never stale, and
# a directory of thousands of units is folded once per process, not once per lookup.
_folded: dict[tuple[str, ...], frozenset[str]] = {}


def folded_names(item: Unit | Mechanism) -> frozenset[str]:
    """Every name of a unit or mechanism, folded (NFKC, Simplified, case)."""
    raw = [item.name, item.code, *(item.aliases or []), item.english or ""]
    if isinstance(item, Unit):
        raw += [item.short_name, item.abbreviation or ""]
    key = tuple(raw)
    folded = _folded.get(key)
    if folded is None:
        folded = frozenset(name for name in normalize_many([n for n in raw if n]) if name)
        if len(_folded) > 50_000:
            _folded.clear()
        _folded[key] = folded
    return folded


def zone_ids_of(unit_id: int) -> Select[int]:
    """The zones a unit belongs to, as a subquery: its own and its ancestors' (a city
    bureau sits in its province's zones without a membership of its own)."""
    lineage = select(Unit.id, Unit.parent_id).where(Unit.id == unit_id).cte(
        "lineage", recursive=True)
    parent = aliased(Unit)
    lineage = lineage.union(  # UNION, not UNION ALL: a cycle of parents ends
        select(parent.id, parent.parent_id).join(lineage, parent.id == lineage.c.parent_id))
    return select(ZoneMembership.zone_id).where(ZoneMembership.unit_id.in_(select(lineage.c.id)))


async def find_units(session: AsyncSession, name: str, *, partial: bool = False) -> list[Unit]:
    """Units whose code (any case), or one of whose names (full, short, abbreviation,
    English, alias; in either script, any punctuation), is `name`: the resolution every
    command that takes a unit shares with the query parser. With `partial` (a name typed
    to choose among units), failing that, the units one of whose names contains it; then
    PARTIAL_LIMIT at most, exact or not."""
    # Control characters name nothing, and PostgreSQL's text refuses a NUL outright.
    typed = "".join(c for c in name if c.isprintable()).strip()
    folded = normalize(typed)
    if not folded:
        return []
    ids = (await load_vocabulary(session)).named("unit", typed)
    exact = list((await session.execute(
        select(Unit).where(or_(Unit.code == typed, func.lower(Unit.code) == folded,
                               Unit.id.in_(ids)))
        .order_by(*SENIOR_FIRST)
    )).scalars())
    if not partial:
        return exact
    if exact:
        return exact[:PARTIAL_LIMIT]
    units = (await session.execute(select(Unit).order_by(*SENIOR_FIRST))).scalars()
    return [unit for unit in units if any(folded in n for n in folded_names(unit))][
        :PARTIAL_LIMIT]
