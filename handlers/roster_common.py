"""What the roster modules share: reading days and clock times, finding the duty room
and its members, and rendering a roster's shifts."""

from __future__ import annotations

import re
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery
from telegram import Update

from bot.plans import roster as plan
from bot.services import Actor
from bot.services import Services
from core.clock import in_calendar
from core.clock import time_zone
from core.enums import Role
from core.enums import ShiftPattern
from core.normalize import normalize
from core.rotation import RosterSpec
from core.rotation import Shift
from core.timeparse import next_date
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import in_group
from i18n import Translator
from i18n.formats import fmt_clock
from i18n.formats import fmt_date
from i18n.formats import fmt_when
from storage.access import duty_room_by_chat
from storage.models import DutyRoom
from storage.models import RosterMember
from storage.models import Unit
from storage.roster import roster_for_room
from storage.schedules import rooms_named
from storage.schedules import rooms_of_unit
from storage.units import find_units

DAYS_SHOWN = 7


# --------------------------------------------------------------------------- parsing


def parse_day(text: str, today: date, *, upcoming: bool = False) -> date | None:
    """A calendar day: 2026-11-25, 2026/11/25, 11-25, 11月25日, 今天/明天/后天 (past allowed).
    Without a year, this year's; with `upcoming` (a shift to override or swap) the next
    such date, never one in the past (01-04 typed in December is next January)."""
    clean = normalize(text).replace(" ", "")
    words = {"今天": 0, "today": 0, "明天": 1, "tomorrow": 1, "后天": 2, "昨天": -1}
    if clean in words:
        return today + timedelta(days=words[clean])
    match = re.fullmatch(r"(?:(\d{4})[-/.年])?(\d{1,2})[-/.月](\d{1,2})[日号]?", clean)
    if not match:
        return None
    try:
        if upcoming and not match[1]:
            day = next_date(today, int(match[3]), int(match[2]))
        else:
            day = date(int(match[1] or today.year), int(match[2]), int(match[3]))
    except ValueError:
        return None
    return day if in_calendar(day) else None


def pressed_decision(update: Update, tr: Translator, prefix: str
                     ) -> tuple[CallbackQuery, int, bool]:
    """A pressed roster button `<prefix>:<id>:ok|no` (a change's preview, a swap): its
    query, the id it is about and whether it says yes; any other data is a stale button."""
    query = update.callback_query
    assert query is not None
    match = re.fullmatch(rf"{prefix}:(\d{{1,9}}):(ok|no)", query.data or "")
    if match is None:
        raise Refusal(tr("errors.stale_button"))
    return query, int(match[1]), match[2] == "ok"


def parse_clock(text: str) -> time | None:
    match = re.fullmatch(r"(\d{1,2})[:：](\d{2})", normalize(text))
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    return time(int(match[1]), int(match[2]))


def take_moment(args: list[str], today: date) -> tuple[date | None, time | None, list[str]]:
    """A day and an optional clock time from the front of the arguments."""
    if not args:
        return None, None, args
    day = parse_day(args[0], today, upcoming=True)
    if day is None:
        return None, None, args
    rest = args[1:]
    at = parse_clock(rest[0]) if rest else None
    return day, at, rest[1:] if at else rest


# --------------------------------------------------------------------------- lookups


def zone_of(view: plan.RosterView) -> str:
    return view.roster.timezone


async def room_for(
    session: AsyncSession, update: Update, actor: Actor, svc: Services, unit_text: str | None
) -> DutyRoom:
    tr = actor.tr
    chat = update.effective_chat
    # Rosters (names, phones) are shown in private chats and registered duty rooms only.
    here = await duty_room_by_chat(session, chat.id) if chat and in_group(update) else None
    if in_group(update) and here is None:
        raise Refusal(tr("roster.errors.not_a_room"))
    if unit_text:
        named = await rooms_named(session, unit_text, partial=False)
        if len(named) == 1:
            return named[0]
        units = await find_units(session, unit_text)
        if len(units) != 1:
            raise Refusal(tr("roster.errors.unknown_unit", unit=escape(unit_text)))
        return _one_room(tr, units[0], await rooms_of_unit(session, units[0].id))
    if here is not None:
        return here
    unit_id = actor.user.unit_id if actor.user else None
    unit = await session.get(Unit, unit_id) if unit_id else None
    if unit is None:
        raise Refusal(tr("roster.errors.no_room"))
    rooms = await rooms_of_unit(session, unit.id)
    mine = await rooms_on_roster(session, rooms, actor) if len(rooms) > 1 else []
    return mine[0] if len(mine) == 1 else _one_room(tr, unit, rooms)


async def rooms_on_roster(
    session: AsyncSession, rooms: list[DutyRoom], actor: Actor
) -> list[DutyRoom]:
    """Those of the rooms whose roster has the actor on it."""
    mine = []
    for room in rooms:
        roster = await roster_for_room(session, room.id)
        if roster is not None and any(is_actor(m, actor) for m in roster.members):
            mine.append(room)
    return mine


def _one_room(tr: Translator, unit: Unit, rooms: list[DutyRoom]) -> DutyRoom:
    """The unit's room; a unit with several names them all rather than drop one."""
    if not rooms:
        raise Refusal(tr("roster.errors.no_room_for", unit=escape(tr.name(unit.name))))
    if len(rooms) > 1:
        raise Refusal(tr("roster.errors.several_rooms", unit=escape(tr.name(unit.name)),
                         rooms=tr.join(f"<code>{escape(tr.name(r.title))}</code>"
                                       for r in rooms)))
    return rooms[0]


def may_edit(actor: Actor, room: DutyRoom) -> bool:
    if actor.can(Role.coordinator):
        return True
    return (actor.can(Role.duty_officer) and actor.user is not None
            and actor.user.unit_id == room.unit_id)


def is_actor(member: RosterMember, actor: Actor) -> bool:
    return (actor.user is not None and member.user_id == actor.user.id) or \
        member.telegram_user_id == actor.telegram_id


def member_of(view: plan.RosterView, actor: Actor) -> RosterMember | None:
    return next((member for member in view.members if is_actor(member, actor)), None)


def member_named(view: plan.RosterView, name: str) -> RosterMember | None:
    wanted = normalize(name.strip().lstrip("@"))
    for member in view.members:
        if normalize(member.name) == wanted:
            return member
    return None


def shift_on(
    view: plan.RosterView, day: date, at: time | None, member: RosterMember | None
) -> Shift | None:
    """The shift starting on a local day (at a local time, if given), held by `member`
    (if given)."""
    local_zone = time_zone(view.roster.timezone)
    start = datetime.combine(day, time(0), tzinfo=local_zone)
    for shift in view.shifts(start, start + timedelta(days=1)):
        local = shift.start.astimezone(local_zone)
        if at is not None and local.time() != at:
            continue
        if member is None or view.member(shift).id == member.id:
            return shift
    return None


# --------------------------------------------------------------------------- rendering


def pattern_text(tr: Translator, spec: RosterSpec) -> str:
    starts = tr.join(t.strftime("%H:%M") for t in spec.shift_starts)
    return tr(f"roster.patterns.{spec.pattern}", starts=starts)


def shift_line(
    tr: Translator, shift: Shift, name: str, zone_name: str, spec: RosterSpec, today: date,
    marks: list[str],
) -> str:
    """One shift of a roster listing: day, local start (and end for day/night), officer."""
    local = shift.start.astimezone(time_zone(zone_name))
    span = local.strftime("%H:%M")
    if spec.pattern == ShiftPattern.day_night.value:
        span += "–" + fmt_clock(shift.end, zone_name)
    return tr("roster.view.line", day=fmt_date(tr, local.date(), today=today), span=span,
              officer=escape(name), marks=" ".join(marks)).rstrip()


def roster_text(
    tr: Translator, view: plan.RosterView, now: datetime, actor: Actor | None = None,
    default_zone: str = "Asia/Shanghai",
) -> str:
    room = view.roster.duty_room
    zone_name = zone_of(view)
    lines = [tr("roster.view.head", room=escape(tr.name(room.title)),
                pattern=pattern_text(tr, view.spec))]
    if zone_name != default_zone:
        lines.append(tr("roster.view.zone", zone=escape(zone_name)))
    mine = member_of(view, actor) if actor else None
    if now < view.first_start:
        lines.append(tr("roster.view.starts", when=fmt_when(tr, view.first_start, zone_name,
                                                            now=now, with_zone=False)))
        shifts = view.shifts(view.first_start, view.first_start + timedelta(days=DAYS_SHOWN))
    else:
        current = view.shift_at(now)
        lines.append(tr("roster.view.now", officer=plan.member_label(view.member(current)),
                        until=fmt_when(tr, current.end, zone_name, now=now, with_zone=False)))
        shifts = view.shifts(current.end, now + timedelta(days=DAYS_SHOWN))
        if len(shifts) < 2:
            shifts = view.shifts(current.end, current.end + timedelta(days=15))[:2]
    lines.append("")
    today = now.astimezone(time_zone(zone_name)).date()
    for shift in shifts:
        member = view.member(shift)
        marks = []
        if shift.overridden:
            marks.append(tr("roster.view.override"))
        if mine is not None and member.id == mine.id:
            marks.append(tr("roster.view.you"))
        lines.append(shift_line(tr, shift, member.name, zone_name, view.spec, today, marks))
    return "\n".join(lines)
