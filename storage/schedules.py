"""What the schedules are about and the scheduler's own records: units (with their
ancestors), zones (by name in either script), duty rooms (of units, by name), users;
the open items a handover brief lists; the scheduler's heartbeat and the occurrences
it missed.

The schedules themselves have modules of their own: `storage.meetings`,
`storage.roster`, `storage.chair`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.enums import NoticeStatus
from core.enums import RequestStatus
from core.normalize import name_key
from storage.models import AssistanceRequest
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import ScheduleMark
from storage.models import SchedulerHeartbeat
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership
from storage.search.vocabulary import load_vocabulary
from storage.units import zone_ids_of

OPEN_REQUEST_STATES = (RequestStatus.open, RequestStatus.accepted)


# --------------------------------------------------------------------------- rooms and units


async def rooms_for_units(
    session: AsyncSession, unit_ids: Iterable[int], *, with_unit: bool = True
) -> dict[int, DutyRoom]:
    """The active, registered duty room of each unit that has one (`room.unit` loaded
    unless `with_unit` is off)."""
    ids = set(unit_ids)
    if not ids:
        return {}
    query = select(DutyRoom)
    if with_unit:
        query = query.options(selectinload(DutyRoom.unit))
    rows = await session.execute(
        query
        .where(DutyRoom.unit_id.in_(ids), DutyRoom.active.is_(True), DutyRoom.chat_id.is_not(None))
        .order_by(DutyRoom.id)
    )
    rooms: dict[int, DutyRoom] = {}
    for room in rows.scalars():
        rooms.setdefault(room.unit_id, room)
    return rooms


async def unit_with_ancestors(session: AsyncSession, unit_id: int) -> list[Unit]:
    """The unit, its parent, its parent's parent…: whose meetings an officer may see."""
    chain: list[Unit] = []
    seen: set[int] = set()
    current: int | None = unit_id
    while current is not None and current not in seen:
        seen.add(current)
        unit = await session.get(Unit, current)
        if unit is None:
            break
        chain.append(unit)
        current = unit.parent_id
    return chain


async def units_by_ids(session: AsyncSession, unit_ids: Iterable[int]) -> dict[int, Unit]:
    ids = set(unit_ids)
    if not ids:
        return {}
    rows = await session.execute(select(Unit).where(Unit.id.in_(ids)))
    return {unit.id: unit for unit in rows.scalars()}


async def users_by_ids(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, User]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = await session.execute(select(User).where(User.id.in_(ids)))
    return {user.id: user for user in rows.scalars()}


# --------------------------------------------------------------------------- zones


async def find_zones(session: AsyncSession, text: str) -> list[Zone]:
    """Zones whose code or one of whose names (full, short, English, alias; in either
    script) is `text`; failing that, zones whose full name contains it."""
    folded = text.strip()
    key = name_key(folded)
    if not key:
        return []
    ids = (await load_vocabulary(session)).named("zone", folded)
    every = list((await session.execute(select(Zone).order_by(Zone.id))).scalars())
    found = [z for z in every if z.code == folded or z.id in ids]
    return found or [z for z in every if len(key) > 1 and key in name_key(z.name)]


async def zones_of_unit(session: AsyncSession, unit_id: int) -> list[Zone]:
    """Its own zones and its ancestors' (storage.units.zone_ids_of)."""
    rows = await session.execute(
        select(Zone).where(Zone.id.in_(zone_ids_of(unit_id))).order_by(Zone.id))
    return list(rows.scalars())


async def zone_member_ids(session: AsyncSession, zone_id: int) -> list[int]:
    rows = await session.execute(
        select(ZoneMembership.unit_id)
        .where(ZoneMembership.zone_id == zone_id)
        .order_by(ZoneMembership.id)
    )
    return list(rows.scalars())


async def all_zones(session: AsyncSession) -> list[Zone]:
    return list((await session.execute(select(Zone).order_by(Zone.id))).scalars())


# --------------------------------------------------------------------------- rooms by name


async def rooms_of_unit(session: AsyncSession, unit_id: int) -> list[DutyRoom]:
    """Every active, registered duty room of a unit (a unit may have several)."""
    rows = await session.execute(
        select(DutyRoom).options(selectinload(DutyRoom.unit))
        .where(DutyRoom.unit_id == unit_id, DutyRoom.active.is_(True),
               DutyRoom.chat_id.is_not(None))
        .order_by(DutyRoom.id)
    )
    return list(rows.scalars())


async def rooms_named(
    session: AsyncSession, text: str, *, partial: bool = True, registered: bool = True
) -> list[DutyRoom]:
    """Active duty rooms (`registered`: with their group) whose title is `text` (either
    script, any punctuation, the trailing 值班室 optional), or failing that and when
    `partial`, whose title contains it."""
    wanted = _room_key(text)
    if len(wanted) < 2:
        return []
    query = select(DutyRoom).options(selectinload(DutyRoom.unit)) \
        .where(DutyRoom.active.is_(True)).order_by(DutyRoom.id)
    if registered:
        query = query.where(DutyRoom.chat_id.is_not(None))
    rooms = list((await session.execute(query)).scalars())
    exact = [r for r in rooms if _room_key(r.title) == wanted]
    if exact or not partial:
        return exact
    return [r for r in rooms if wanted in _room_key(r.title)]


def _room_key(text: str) -> str:
    return name_key(text).replace(" ", "").removesuffix("值班室")


# --------------------------------------------------------------------------- handover brief


async def open_incoming_requests(
    session: AsyncSession, unit_id: int, *, limit: int = 20
) -> list[AssistanceRequest]:
    """Requests to the unit still waiting for it (open or accepted), nearest deadline first."""
    deadline = func.coalesce(AssistanceRequest.ack_due_at, AssistanceRequest.reply_due_at)
    rows = await session.execute(
        select(AssistanceRequest)
        .options(selectinload(AssistanceRequest.from_unit))
        .where(
            AssistanceRequest.to_unit_id == unit_id,
            AssistanceRequest.status.in_(OPEN_REQUEST_STATES),
        )
        .order_by(deadline.is_(None), deadline, AssistanceRequest.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def unacknowledged_notices(
    session: AsyncSession, room_id: int, *, limit: int = 20
) -> list[Notice]:
    """Notices sent to the room that it has not acknowledged (in their latest revision)."""
    rows = await session.execute(
        select(Notice)
        .join(NoticeDelivery, NoticeDelivery.notice_id == Notice.id)
        .where(
            NoticeDelivery.duty_room_id == room_id,
            Notice.status == NoticeStatus.sent,
            or_(
                NoticeDelivery.acknowledged_at.is_(None),
                and_(
                    NoticeDelivery.acknowledged_revision.is_not(None),
                    NoticeDelivery.acknowledged_revision < Notice.revision,
                ),
            ),
        )
        .order_by(Notice.sent_at, Notice.id)
        .limit(limit)
    )
    return list(rows.scalars())


# --------------------------------------------------------------------------- heartbeat


async def beat(
    session: AsyncSession, now: datetime, process: str | None = None
) -> tuple[datetime | None, datetime | None]:
    """Record that the scheduler is alive at `now`; returns when it first ran on this
    database and when it last beat before this, (None, None) the first time ever."""
    row = await session.get(SchedulerHeartbeat, 1, with_for_update=True)
    if row is None:
        session.add(SchedulerHeartbeat(id=1, first_alive_at=now, alive_at=now, process=process))
        await session.flush()
        return None, None
    first, last = row.first_alive_at, row.alive_at
    row.alive_at, row.process = now, process
    return first, last


# --------------------------------------------------------------------------- missed occurrences


async def missed_marks(
    session: AsyncSession, since: datetime, *, limit: int = 30
) -> list[ScheduleMark]:
    """Occurrences the bot did not send because it was down past the grace period."""
    rows = await session.execute(
        select(ScheduleMark)
        .where(ScheduleMark.outcome == "missed", ScheduleMark.due_at >= since)
        .order_by(ScheduleMark.due_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


