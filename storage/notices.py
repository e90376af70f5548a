"""Notices (通报) in SQL: numbering, the audience's rooms, deliveries and their
acknowledgement, each room's state and the counts, the status message's outbox rows,
lists and the planner's candidates.

services/notices.py combines these named queries with the rules (core/notices.py) and
the rendering (views/notices.py) in one unit of work.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm import selectinload

from core.enums import NoticeStatus
from core.enums import OutboxState
from core.notices import NO_ROOMS
from core.notices import PREFIX
from core.notices import Tally
from core.notices import room_key
from storage.db import dialect_insert
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeCounter
from storage.models import NoticeDelivery
from storage.models import OutboxMessage
from storage.models import RoomState
from storage.models import Unit
from storage.models import User
from storage.models import ZoneMembership
from storage.units import SENIOR_FIRST

PAGE_SIZE = 8


# --------------------------------------------------------------------------- numbering


async def next_number(session: AsyncSession, year: int) -> str:
    """TB-<year>-<n>, atomically (an upsert increments the year's counter)."""
    statement = dialect_insert(session)(NoticeCounter).values(year=year, last=1)
    statement = statement.on_conflict_do_update(
        index_elements=["year"], set_={"last": NoticeCounter.last + 1}
    ).returning(NoticeCounter.last)
    sequence = (await session.execute(statement)).scalar_one()
    return f"{PREFIX}-{year}-{sequence:06d}"


async def number_of_submission(session: AsyncSession, submission_key: str) -> str | None:
    """The number of the notice a draft with this identity became, if stored already."""
    return (await session.execute(
        select(Notice.number).where(Notice.submission_key == submission_key)
    )).scalar_one_or_none()


# --------------------------------------------------------------------------- audience


async def audience_rooms(session: AsyncSession, audience: dict[str, Any]) -> list[DutyRoom]:
    """The active, registered duty rooms the audience names (whole zones' member units,
    chosen units, or all), with their units loaded, in id order."""
    query = select(DutyRoom).options(selectinload(DutyRoom.unit)).where(
        DutyRoom.active.is_(True), DutyRoom.chat_id.is_not(None)).order_by(DutyRoom.id)
    if not audience.get("all"):
        zone_ids = list(audience.get("zones") or [])
        unit_ids = list(audience.get("units") or [])
        members = select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(zone_ids))
        query = query.where(or_(DutyRoom.unit_id.in_(unit_ids), DutyRoom.unit_id.in_(members)))
    return list((await session.execute(query)).scalars())


async def units_with_rooms(session: AsyncSession, *, limit: int = 12) -> list[Unit]:
    """Units that have an active duty room, senior first: the audience's unit buttons."""
    rooms = select(DutyRoom.unit_id).where(DutyRoom.active.is_(True),
                                           DutyRoom.chat_id.is_not(None))
    return list((await session.execute(select(Unit).where(Unit.id.in_(rooms)).order_by(
        *SENIOR_FIRST).limit(limit))).scalars())


async def duty_room(session: AsyncSession, room_id: int) -> DutyRoom:
    """The room with its unit loaded."""
    return (await session.execute(select(DutyRoom).options(selectinload(DutyRoom.unit)).where(
        DutyRoom.id == room_id))).scalar_one()


# --------------------------------------------------------------------------- deliveries


async def add_deliveries(session: AsyncSession, notice_id: int,
                         rooms: list[DutyRoom]) -> list[DutyRoom]:
    """One delivery row per room the notice has none for yet, in bulk; returns those
    rooms (a second call adds nothing)."""
    known = set((await session.execute(select(NoticeDelivery.duty_room_id).where(
        NoticeDelivery.notice_id == notice_id))).scalars())
    fresh = [room for room in rooms if room.id not in known]
    if fresh:
        await session.execute(insert(NoticeDelivery), [
            {"notice_id": notice_id, "duty_room_id": room.id,
             "message_key": room_key(notice_id, room.id)} for room in fresh])
    return fresh


async def delivery_to(session: AsyncSession, notice_id: int,
                      room_id: int) -> NoticeDelivery | None:
    return (await session.execute(select(NoticeDelivery).where(
        NoticeDelivery.notice_id == notice_id, NoticeDelivery.duty_room_id == room_id)
    )).scalar_one_or_none()


async def reload_delivery(session: AsyncSession, delivery_id: int) -> NoticeDelivery:
    """The delivery as the database has it now (another press may have changed it)."""
    return (await session.execute(
        select(NoticeDelivery).where(NoticeDelivery.id == delivery_id)
        .execution_options(populate_existing=True))).scalar_one()


async def claim_acknowledgement(session: AsyncSession, delivery_id: int, *, user_id: int,
                                revision: int, now: datetime) -> bool:
    """Record the acknowledgement unless this revision (or a later one) was acknowledged
    first: a conditional UPDATE, so two presses at once make one."""
    claimed = await session.execute(
        update(NoticeDelivery)
        .where(NoticeDelivery.id == delivery_id,
               or_(NoticeDelivery.acknowledged_at.is_(None),
                   func.coalesce(NoticeDelivery.acknowledged_revision, 1) < revision))
        .values(acknowledged_at=now, acknowledged_by_id=user_id,
                acknowledged_revision=revision)
        .returning(NoticeDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return claimed.first() is not None


async def mark_reminded(session: AsyncSession, delivery_ids: list[int], now: datetime) -> None:
    for start in range(0, len(delivery_ids), 500):
        await session.execute(
            update(NoticeDelivery).where(NoticeDelivery.id.in_(delivery_ids[start:start + 500]))
            .values(reminded_at=now).execution_options(synchronize_session=False))


# --------------------------------------------------------------------------- loading


async def get_notice(session: AsyncSession, *, notice_id: int | None = None,
                     number: str | None = None, for_update: bool = False) -> Notice | None:
    statement = select(Notice)
    if notice_id is not None:
        statement = statement.where(Notice.id == notice_id)
    elif number is not None:
        statement = statement.where(Notice.number == number.strip().upper())
    else:
        raise ValueError("notice_id or number is required")
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(
        statement.execution_options(populate_existing=True))).scalar_one_or_none()


async def creator(session: AsyncSession, notice: Notice) -> User | None:
    """Who created the notice, with their unit (the status message's reader)."""
    if notice.created_by_id is None:
        return None
    return (await session.execute(select(User).options(selectinload(User.unit)).where(
        User.id == notice.created_by_id))).scalar_one_or_none()


ACKED = NoticeDelivery.acknowledged_at.is_not(None)
FAILED = (OutboxMessage.state == OutboxState.failed) & NoticeDelivery.acknowledged_at.is_(None)
PENDING = NoticeDelivery.acknowledged_at.is_(None) & or_(
    OutboxMessage.state.is_(None), OutboxMessage.state != OutboxState.failed)
TO_REMIND = PENDING & NoticeDelivery.reminded_at.is_(None)


async def room_states(session: AsyncSession, notice: Notice, *, where: Any = None,
                      limit: int | None = None, by_ack: bool = False) -> list[RoomState]:
    """The rooms of the notice (all, or those `where` selects, at most `limit`) with
    their acknowledgement and their outbox row's state; by unit, or by
    acknowledgement time."""
    acker = aliased(User)
    statement = (
        select(NoticeDelivery, DutyRoom, Unit, acker, OutboxMessage.state,
               OutboxMessage.sent_at, OutboxMessage.last_error)
        .join(DutyRoom, DutyRoom.id == NoticeDelivery.duty_room_id)
        .join(Unit, Unit.id == DutyRoom.unit_id)
        .outerjoin(acker, acker.id == NoticeDelivery.acknowledged_by_id)
        .outerjoin(OutboxMessage, OutboxMessage.dedup_key == NoticeDelivery.message_key)
        .where(NoticeDelivery.notice_id == notice.id)
        .order_by(*([NoticeDelivery.acknowledged_at] if by_ack else []), *SENIOR_FIRST,
                  DutyRoom.id)
        .limit(limit)
    )
    if where is not None:
        statement = statement.where(where)
    rows = await session.execute(statement)
    return [RoomState(d, r, u, a, s, t, e) for d, r, u, a, s, t, e in rows]


async def tallies(session: AsyncSession, notice_ids: list[int]) -> dict[int, Tally]:
    """Counts per notice in one grouped query (for lists)."""
    if not notice_ids:
        return {}
    rows = await session.execute(
        select(
            NoticeDelivery.notice_id, func.count(),
            func.sum(case((OutboxMessage.state == OutboxState.sent, 1), else_=0)),
            func.sum(case((ACKED, 1), else_=0)),
            func.sum(case((FAILED, 1), else_=0)),
            func.sum(case((NoticeDelivery.reminded_at.is_not(None), 1), else_=0)),
        )
        .outerjoin(OutboxMessage, OutboxMessage.dedup_key == NoticeDelivery.message_key)
        .where(NoticeDelivery.notice_id.in_(notice_ids))
        .group_by(NoticeDelivery.notice_id)
    )
    found = {nid: Tally(int(n), int(d or 0), int(a or 0), int(f or 0), int(r or 0))
             for nid, n, d, a, f, r in rows}
    return {nid: found.get(nid, NO_ROOMS) for nid in notice_ids}


# --------------------------------------------------------------------------- the status message

_TEXT_METHODS = ["sendMessage", "editMessageText"]


async def replace_waiting_status(session: AsyncSession, key: str,
                                 payload: dict[str, Any]) -> bool:
    """Give the status message (or its edit) still waiting in the outbox this payload;
    False when none waits."""
    waiting = await session.execute(
        update(OutboxMessage)
        .where(or_(OutboxMessage.dedup_key == key, OutboxMessage.reply_to_key == key),
               OutboxMessage.method.in_(_TEXT_METHODS),
               OutboxMessage.state == OutboxState.pending)
        .values(payload=payload)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return waiting.first() is not None


async def last_status_message(session: AsyncSession, key: str) -> Row[Any] | None:
    """The payload, state and sending time of the status message's latest text that has
    not failed, or None."""
    return (await session.execute(
        select(OutboxMessage.payload, OutboxMessage.state, OutboxMessage.sent_at)
        .where(or_(OutboxMessage.dedup_key == key, OutboxMessage.reply_to_key == key),
               OutboxMessage.method.in_(_TEXT_METHODS),
               OutboxMessage.state != OutboxState.failed)
        .order_by(OutboxMessage.id.desc()).limit(1)
    )).first()


# --------------------------------------------------------------------------- lists, planner


async def recent_notices(session: AsyncSession, *, page: int = 0) -> tuple[list[Notice], int]:
    total = (await session.execute(select(func.count()).select_from(Notice))).scalar_one()
    rows = await session.execute(
        select(Notice).order_by(Notice.created_at.desc(), Notice.id.desc())
        .offset(page * PAGE_SIZE).limit(PAGE_SIZE))
    return list(rows.scalars()), total


async def latest_notice(session: AsyncSession) -> Notice | None:
    return (await session.execute(select(Notice).where(Notice.sent_at.is_not(None)).order_by(
        Notice.sent_at.desc(), Notice.id.desc()).limit(1))).scalar_one_or_none()


async def planner_candidates(session: AsyncSession, start: datetime,
                             end: datetime) -> list[Notice]:
    """Notices with something due in [start, end): a scheduled send, a reminder, or the
    status check a minute after sending."""
    rows = await session.execute(select(Notice).where(or_(
        (Notice.status == NoticeStatus.scheduled) & (Notice.scheduled_for < end),
        (Notice.status == NoticeStatus.sent) & (
            ((Notice.remind_at >= start) & (Notice.remind_at < end)) |
            ((Notice.sent_at >= start - timedelta(minutes=1)) & (Notice.sent_at < end))),
    )).order_by(Notice.id))
    return list(rows.scalars())
