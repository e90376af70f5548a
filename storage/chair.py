"""Named queries and changes behind the chair rotation of a zone's joint meeting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from datetime import datetime

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.access import audit
from storage.models import ChairRotation
from storage.models import ChairRotationEntry
from storage.models import User
from storage.models import Zone


def _rotation_query() -> Select[tuple[ChairRotation]]:
    return select(ChairRotation).options(
        selectinload(ChairRotation.zone),
        selectinload(ChairRotation.entries).selectinload(ChairRotationEntry.unit),
    )


async def chair_rotations(session: AsyncSession) -> list[ChairRotation]:
    rows = await session.execute(
        _rotation_query()
        .where(ChairRotation.id.in_(select(ChairRotationEntry.rotation_id)))
        .order_by(ChairRotation.id)
    )
    return list(rows.scalars())


async def chair_rotation_for_zone(session: AsyncSession, zone_id: int) -> ChairRotation | None:
    return (
        await session.execute(_rotation_query().where(ChairRotation.zone_id == zone_id))
    ).scalar_one_or_none()


async def save_chair_rotation(
    session: AsyncSession,
    zone: Zone,
    *,
    unit_ids: Sequence[int],
    term_months: int,
    anchor_date: date,
    actor: User | None,
    now: datetime | None = None,
) -> ChairRotation:
    rotation = await chair_rotation_for_zone(session, zone.id)
    if rotation is None:
        rotation = ChairRotation(zone_id=zone.id, term_months=term_months,
                                 anchor_date=anchor_date, entries=[], created_at=now)
        session.add(rotation)
    rotation.term_months, rotation.anchor_date = term_months, anchor_date
    for entry in list(rotation.entries):
        rotation.entries.remove(entry)
    await session.flush()
    for index, unit_id in enumerate(unit_ids):
        rotation.entries.append(ChairRotationEntry(position=index, unit_id=unit_id))
    await session.flush()
    await audit(session, "chair.rotation.save", actor=actor, subject_type="zone",
                subject_id=zone.id, units=list(unit_ids), term_months=term_months,
                anchor_date=anchor_date.isoformat())
    loaded = await chair_rotation_for_zone(session, zone.id)
    assert loaded is not None
    return loaded
