"""Directory and agreement reads for the lookup handlers (contacts, /oncall, /agreement)."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

from sqlalchemy import Select
from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from core.enums import AgreementStatus
from storage.cache import EpochCache
from storage.models import Agreement
from storage.models import AgreementParty
from storage.models import Branch
from storage.models import Clause
from storage.models import ClauseMechanism
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Unit
from storage.models import Zone
from storage.models import ZoneMembership
from storage.units import zone_ids_of

# In force first, superseded last: the order readers should meet agreements in.
STATUS_ORDER = case(
    {AgreementStatus.in_force.value: 0, AgreementStatus.draft.value: 1,
     AgreementStatus.expired.value: 2, AgreementStatus.superseded.value: 3},
    value=Agreement.status, else_=4,
)


async def liaisons_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Liaison]:
    """In the order asked for (search ranking), with unit and branch loaded."""
    if not ids:
        return []
    rows = await session.execute(
        select(Liaison)
        .options(joinedload(Liaison.unit), joinedload(Liaison.branch))
        .where(Liaison.id.in_(list(ids)))
    )
    by_id = {liaison.id: liaison for liaison in rows.scalars()}
    return [by_id[i] for i in ids if i in by_id]


async def liaisons_cached(session: AsyncSession, cache: EpochCache, epoch: int,
                          ids: Sequence[int]) -> list[Liaison]:
    """`liaisons_by_ids`, reading only those not already held for this data epoch."""
    found: dict[int, Liaison | None] = {i: cache.get(epoch, i) for i in ids}
    for liaison in await liaisons_by_ids(session, [i for i, held in found.items() if not held]):
        found[liaison.id] = liaison
        cache.put(epoch, liaison.id, liaison)
    return [held for i in ids if (held := found.get(i)) is not None]


async def zones(session: AsyncSession) -> list[Zone]:
    return list((await session.execute(select(Zone).order_by(Zone.id))).scalars())


async def zone_units(session: AsyncSession, zone_id: int) -> list[Unit]:
    rows = await session.execute(
        select(Unit)
        .join(ZoneMembership, ZoneMembership.unit_id == Unit.id)
        .where(ZoneMembership.zone_id == zone_id)
        .order_by(ZoneMembership.kind, Unit.id)
    )
    return list(rows.scalars())


async def zone_ids_of_unit(session: AsyncSession, unit_id: int) -> list[int]:
    """Its own zones and its ancestors' (storage.units.zone_ids_of)."""
    return list((await session.execute(zone_ids_of(unit_id))).scalars())


async def units_of_zones(session: AsyncSession, zone_ids: Iterable[int]) -> list[int]:
    rows = await session.execute(
        select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(list(zone_ids)))
    )
    return list(dict.fromkeys(rows.scalars()))


async def branches_of_unit(session: AsyncSession, unit_id: int) -> list[Branch]:
    """Branches that have an active liaison in the unit (what is worth offering)."""
    rows = await session.execute(
        select(Branch)
        .where(Branch.id.in_(
            select(Liaison.branch_id).where(Liaison.unit_id == unit_id, Liaison.active.is_(True))
        ))
        .order_by(Branch.id)
    )
    return list(rows.scalars())


async def get_unit(session: AsyncSession, unit_id: int) -> Unit | None:
    return await session.get(Unit, unit_id)


async def get_branch(session: AsyncSession, branch_id: int) -> Branch | None:
    return await session.get(Branch, branch_id)


async def get_zone(session: AsyncSession, zone_id: int) -> Zone | None:
    return await session.get(Zone, zone_id)


async def agreements(session: AsyncSession) -> list[Agreement]:
    rows = await session.execute(
        select(Agreement)
        .options(selectinload(Agreement.zone),
                 selectinload(Agreement.parties).selectinload(AgreementParty.unit))
        .order_by(STATUS_ORDER, Agreement.signed_on.desc(), Agreement.id)
    )
    return list(rows.scalars())


async def mechanisms(session: AsyncSession) -> list[Mechanism]:
    """Mechanisms that tag at least one clause."""
    rows = await session.execute(
        select(Mechanism)
        .where(Mechanism.id.in_(select(ClauseMechanism.mechanism_id)))
        .order_by(Mechanism.id)
    )
    return list(rows.scalars())


def _clause_query() -> Select[tuple[Clause]]:
    return select(Clause).options(selectinload(Clause.agreement), selectinload(Clause.mechanisms))


async def clause_with_neighbours(
    session: AsyncSession, clause_id: int
) -> tuple[Clause | None, int | None, int | None]:
    """The clause and the ids of the previous and next clause of its agreement."""
    found = await session.execute(_clause_query().where(Clause.id == clause_id))
    clause = found.scalar_one_or_none()
    if clause is None:
        return None, None, None
    previous = (await session.execute(
        select(Clause.id).where(Clause.agreement_id == clause.agreement_id,
                                Clause.position < clause.position)
        .order_by(Clause.position.desc()).limit(1)
    )).scalar_one_or_none()
    following = (await session.execute(
        select(Clause.id).where(Clause.agreement_id == clause.agreement_id,
                                Clause.position > clause.position)
        .order_by(Clause.position).limit(1)
    )).scalar_one_or_none()
    return clause, previous, following


async def clauses_of_mechanism(session: AsyncSession, mechanism_id: int) -> list[Clause]:
    rows = await session.execute(
        _clause_query()
        .join(Agreement, Agreement.id == Clause.agreement_id)
        .join(ClauseMechanism, ClauseMechanism.clause_id == Clause.id)
        .where(ClauseMechanism.mechanism_id == mechanism_id)
        .order_by(STATUS_ORDER, Agreement.id, Clause.position)
    )
    return list(rows.scalars())
