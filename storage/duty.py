"""Who is on duty now in each unit's duty room: rosters and overrides through the
rotation arithmetic, for contact cards and /oncall."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.domain.rotation import RosterSpec, Shift, who_is_on_duty
from storage.models import DutyRoom, Roster, RosterMember, ShiftOverride


@dataclass(frozen=True)
class OnDuty:
    room_id: int
    unit_id: int
    room_title: str
    room_phone: str | None
    timezone: str
    officer: str | None
    officer_phone: str | None
    until: datetime | None
    next_officer: str | None
    overridden: bool = False


def _name(members: list[RosterMember], shift: Shift) -> tuple[str | None, str | None]:
    by_position = {m.position: m for m in members}
    member = by_position.get(shift.member_position)
    return (member.name, member.phone) if member else (None, None)


async def on_duty(
    session: AsyncSession, now: datetime, *, unit_ids: Iterable[int] | None = None,
    default_timezone: str = "Asia/Shanghai",
) -> dict[int, OnDuty]:
    """unit id → its duty room's current officer (units without a room are absent)."""
    query = (
        select(DutyRoom)
        .options(selectinload(DutyRoom.roster).selectinload(Roster.members),
                 selectinload(DutyRoom.unit))
        .where(DutyRoom.active.is_(True))
        .order_by(DutyRoom.id)
    )
    if unit_ids is not None:
        query = query.where(DutyRoom.unit_id.in_(list(set(unit_ids))))
    rooms = list((await session.execute(query)).scalars())
    roster_ids = [r.roster.id for r in rooms if r.roster is not None and r.roster.members]
    overrides: dict[int, dict[datetime, int]] = {}
    if roster_ids:
        rows = await session.execute(
            select(ShiftOverride.roster_id, ShiftOverride.shift_start, RosterMember.position)
            .join(RosterMember, RosterMember.id == ShiftOverride.member_id)
            .where(ShiftOverride.roster_id.in_(roster_ids))
        )
        for roster_id, start, position in rows:
            overrides.setdefault(roster_id, {})[start] = position
    found: dict[int, OnDuty] = {}
    for room in rooms:
        if room.unit_id in found:
            continue
        roster = room.roster
        timezone = (roster.timezone if roster else None) or room.timezone or \
            room.unit.timezone or default_timezone
        base = {"room_id": room.id, "unit_id": room.unit_id, "room_title": room.title,
                "room_phone": room.phone or room.unit.duty_phone, "timezone": timezone}
        if roster is None or not roster.members:
            found[room.unit_id] = OnDuty(**base, officer=None, officer_phone=None, until=None,
                                         next_officer=None)
            continue
        spec = RosterSpec.build(roster.pattern.value, roster.anchor_date, roster.timezone,
                                roster.shift_starts, len(roster.members))
        current, following = who_is_on_duty(spec, overrides.get(roster.id, {}), now)
        officer, phone = _name(roster.members, current)
        found[room.unit_id] = OnDuty(**base, officer=officer, officer_phone=phone,
                                     until=current.end,
                                     next_officer=_name(roster.members, following)[0],
                                     overridden=current.overridden)
    return found
