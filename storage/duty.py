"""Rosters in time: a roster with its overrides answering "who has which shift", for
the handover planner, /roster and /swap, and "who is on duty now" in each unit's duty
room for contact cards and /oncall. One way of loading and reading a roster for all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.rotation import RosterSpec
from core.rotation import Shift
from core.rotation import apply_overrides
from core.rotation import boundary
from core.rotation import shift_at
from core.rotation import who_is_on_duty
from storage.cache import EpochCache
from storage.models import DutyRoom
from storage.models import Roster
from storage.models import RosterMember
from storage.models import ShiftOverride
from storage.models import Unit
from storage.roster import overrides_between

# Overrides are loaded for shifts starting this much either side of the instants asked
# about: a weekly shift that is on now started less than 8 days ago.
OVERRIDE_MARGIN = timedelta(days=8)
UNSTAFFED_RECHECK = timedelta(minutes=1)


# --------------------------------------------------------------------------- a roster in time


@dataclass
class RosterView:
    """A roster with its overrides, answering "who has which shift" in UTC instants."""

    roster: Roster
    spec: RosterSpec
    members: list[RosterMember]
    overrides: dict[datetime, int]  # shift start → index in `members`
    reasons: dict[datetime, str | None]

    @property
    def room_id(self) -> int:
        return self.roster.duty_room_id

    @property
    def first_start(self) -> datetime:
        return boundary(self.spec, 0)

    def shift_at(self, instant: datetime) -> Shift:
        return apply_overrides(shift_at(self.spec, instant), self.overrides)

    def shifts(self, start: datetime, end: datetime) -> list[Shift]:
        """Shifts starting in [start, end), on or after the anchor, overrides applied."""
        found = []
        shift = shift_at(self.spec, max(start, self.first_start))
        while shift.start < end:
            if shift.start >= start and shift.index >= 0:
                found.append(apply_overrides(shift, self.overrides))
            shift = shift_at(self.spec, shift.end)
        return found

    def member(self, shift: Shift) -> RosterMember:
        return self.members[shift.member_position]

    def previous(self, shift: Shift) -> Shift | None:
        if shift.index <= 0:
            return None
        return self.shift_at(shift.start - timedelta(seconds=1))


def view_of(roster: Roster, overrides: Iterable[ShiftOverride]) -> RosterView | None:
    members = sorted(roster.members, key=lambda m: m.position)
    if not members:
        return None
    spec = RosterSpec.build(roster.pattern.value, roster.anchor_date, roster.timezone,
                            list(roster.shift_starts or []), len(members))
    index = {m.id: i for i, m in enumerate(members)}
    mapped = {o.shift_start: index[o.member_id] for o in overrides if o.member_id in index}
    reasons = {o.shift_start: o.reason for o in overrides}
    return RosterView(roster, spec, members, mapped, reasons)


async def load_view(
    session: AsyncSession, roster: Roster, start: datetime, end: datetime
) -> RosterView | None:
    """The roster with the overrides of shifts starting in [start - 8 days, end + 8 days)."""
    overrides = await overrides_between(session, [roster.id], start - OVERRIDE_MARGIN,
                                        end + OVERRIDE_MARGIN)
    return view_of(roster, overrides)


# --------------------------------------------------------------------------- on duty now


@dataclass(frozen=True)
class OnDuty:
    """One duty room now: its phone and who holds the shift."""

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


@dataclass(frozen=True)
class UnitDuty:
    """A unit's duty rooms now, every one of them (none for a unit without a room);
    its duty phone from the data, and its parent's, so an officer can always call."""

    unit_id: int
    unit_name: str
    duty_phone: str | None
    parent_name: str | None
    parent_phone: str | None
    rooms: tuple[OnDuty, ...]


async def on_duty_cached(
    session: AsyncSession, cache: EpochCache, epoch: int, now: datetime, *,
    unit_ids: Iterable[int], default_timezone: str = "Asia/Shanghai",
) -> dict[int, UnitDuty]:
    """`on_duty`, held until the first of its shifts ends (a room without an officer on
    the roster: a minute at most), or the data changes."""
    units = frozenset(unit_ids)
    held = cache.get(epoch, (units, default_timezone))
    if held is not None and held[0] <= now < held[1]:
        cached: dict[int, UnitDuty] = held[2]
        return cached
    duties = await on_duty(session, now, unit_ids=units, default_timezone=default_timezone)
    ends = [room.until if room.until else now + UNSTAFFED_RECHECK
            for duty in duties.values() for room in duty.rooms]
    cache.put(epoch, (units, default_timezone),
              (now, min(ends, default=now + UNSTAFFED_RECHECK), duties))
    return duties


async def on_duty(
    session: AsyncSession, now: datetime, *, unit_ids: Iterable[int],
    default_timezone: str = "Asia/Shanghai",
) -> dict[int, UnitDuty]:
    """unit id → every active duty room of the unit with its current officer, for each
    unit asked (units with a room first, in room order; then the others by id)."""
    wanted = sorted(set(unit_ids))
    units = {unit.id: unit for unit in (await session.execute(
        select(Unit).options(selectinload(Unit.parent)).where(Unit.id.in_(wanted))
    )).scalars()}
    rooms = list((await session.execute(
        select(DutyRoom)
        .options(selectinload(DutyRoom.roster).selectinload(Roster.members))
        .where(DutyRoom.active.is_(True), DutyRoom.unit_id.in_(list(units)))
        .order_by(DutyRoom.id)
    )).scalars())
    by_roster: dict[int, list[ShiftOverride]] = {}
    for override in await overrides_between(
        session, [r.roster.id for r in rooms if r.roster is not None and r.roster.members],
        now - OVERRIDE_MARGIN, now + OVERRIDE_MARGIN,
    ):
        by_roster.setdefault(override.roster_id, []).append(override)
    found: dict[int, list[OnDuty]] = {}
    for room in rooms:
        unit = units[room.unit_id]
        roster = room.roster
        timezone = (roster.timezone if roster else None) or room.timezone or \
            unit.timezone or default_timezone
        base = {"room_id": room.id, "unit_id": room.unit_id, "room_title": room.title,
                "room_phone": room.phone or unit.duty_phone, "timezone": timezone}
        view = view_of(roster, by_roster.get(roster.id, [])) if roster is not None else None
        if view is None:
            found.setdefault(unit.id, []).append(OnDuty(
                **base, officer=None, officer_phone=None, until=None, next_officer=None))
            continue
        current, following = who_is_on_duty(view.spec, view.overrides, now)
        officer = view.member(current)
        found.setdefault(unit.id, []).append(OnDuty(
            **base, officer=officer.name, officer_phone=officer.phone, until=current.end,
            next_officer=view.member(following).name, overridden=current.overridden))
    order = list(found) + [i for i in wanted if i in units and i not in found]
    return {
        i: UnitDuty(unit_id=i, unit_name=units[i].name, duty_phone=units[i].duty_phone,
                    parent_name=units[i].parent.name if units[i].parent else None,
                    parent_phone=units[i].parent.duty_phone if units[i].parent else None,
                    rooms=tuple(found.get(i, ())))
        for i in order
    }
