"""Duty rosters: /roster (the next 7 days), /roster edit (duty officers, coordinators),
/roster remind (an officer's own reminder offsets) and /swap (confirmed by the other
officer or a coordinator).

Handovers and shift reminders are sent by bot/plans/roster.py; every change here asks
the scheduler to re-place the roster jobs after its commit, and claims what is already
due on the old plan as skipped (in the same transaction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.commands import CommandInfo, Where
from bot.plans import roster as plan
from bot.services import Actor, Services, services
from core.clock import in_calendar, time_zone, valid_zone
from core.enums import Role, RosterChangeStatus, ShiftPattern, SwapStatus
from core.meetings import parse_offset
from core.normalize import normalize
from core.rotation import RosterSpec, Shift, swap_overrides, upcoming_shifts
from core.timeparse import next_date
from core.vocabulary import closest_names
from handlers.common import (
    Context,
    Refusal,
    edit_query_message,
    escape,
    guarded,
    in_group,
    keyboard,
    reply,
)
from i18n import Translator
from i18n.formats import fmt_clock, fmt_date, fmt_minutes, fmt_when
from storage import outbox
from storage.access import audit, duty_room_by_chat, find_units, user_by_telegram_id
from storage.models import DutyRoom, Roster, RosterMember, ShiftSwap, Unit, User
from storage.roster import (
    create_swap,
    decide_roster_change,
    decide_swap,
    get_roster,
    get_roster_change,
    get_swap,
    member_telegram_ids,
    member_users,
    overrides_between,
    people_of_unit,
    propose_roster_change,
    roster_fingerprint,
    roster_for_room,
    save_roster,
    set_override,
    set_roster_members,
    swaps_touching,
)
from storage.schedules import rooms_named, rooms_of_unit

COMMANDS = [
    CommandInfo("roster", Role.officer, Where.anywhere, "roster.command"),
    CommandInfo("swap", Role.officer, Where.anywhere, "roster.swap"),
]

CB = "swap"
EDIT_CB = "rosteredit"
DAYS_SHOWN = 7
PREVIEW_SHIFTS = 8
NAME_LIMIT = 60
PHONE_LIMIT = 40  # the column's width
SPLIT_OFFICERS = re.compile(r"[、,，;；\n]+")
PATTERN_WORDS = {
    "daily": ShiftPattern.daily, "24h": ShiftPattern.daily, "24小时": ShiftPattern.daily,
    "每日": ShiftPattern.daily, "日班": ShiftPattern.daily, "全天": ShiftPattern.daily,
    "day_night": ShiftPattern.day_night, "daynight": ShiftPattern.day_night,
    "白夜班": ShiftPattern.day_night, "两班": ShiftPattern.day_night,
    "昼夜": ShiftPattern.day_night, "白班夜班": ShiftPattern.day_night,
    "weekly": ShiftPattern.weekly, "每周": ShiftPattern.weekly, "周班": ShiftPattern.weekly,
}
EDIT_VERBS = {
    "officers": "officers", "members": "officers", "人员": "officers", "成员": "officers",
    "名单": "officers", "顺序": "officers",
    "pattern": "pattern", "班制": "pattern", "模式": "pattern",
    "start": "start", "anchor": "start", "起始": "start", "开始": "start", "起始日": "start",
    "tz": "tz", "timezone": "tz", "时区": "tz",
    "override": "override", "代班": "override", "替班": "override", "调班": "override",
}
CLEAR_WORDS = {"clear", "取消", "清除", "恢复"}
OFF_WORDS = {"off", "none", "关闭", "关", "不提醒"}


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
    lines = [tr("roster.view.head", room=escape(room.title),
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


# --------------------------------------------------------------------------- /roster


@guarded(Role.officer)
async def roster_command(update: Update, context: Context, actor: Actor) -> None:
    args = context.args or []
    verb = args[0].lower() if args else ""
    if verb in {"edit", "编辑", "修改", "編輯"}:
        await edit_command(update, context, actor, args[1:])
        return
    if verb in {"remind", "提醒"}:
        await remind_command(update, context, actor, args[1:])
        return
    svc, tr, now = services(context), actor.tr, services(context).now()
    try:
        async with svc.db.session() as session:
            room = await room_for(session, update, actor, svc, " ".join(args) or None)
            roster = await roster_for_room(session, room.id)
            view = await plan.load_view(session, roster, now, now + timedelta(days=15)) \
                if roster else None
            if view is None:
                raise Refusal(tr("roster.errors.empty", room=escape(room.title)) + "\n"
                              + tr("roster.edit.usage"))
            text = roster_text(tr, view, now, actor, svc.settings.bot_timezone)
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    await reply(update, text)


# --------------------------------------------------------------------------- /roster edit


@dataclass
class Officer:
    name: str
    user_id: int | None = None
    telegram_user_id: int | None = None
    phone: str | None = None
    member_id: int | None = None  # the roster member this entry is (kept as it is)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "user_id": self.user_id,
                "telegram_user_id": self.telegram_user_id, "phone": self.phone,
                "member_id": self.member_id}


async def parse_officers(session: AsyncSession, tr: Translator, text: str) -> list[Officer]:
    officers: list[Officer] = []
    for entry in SPLIT_OFFICERS.split(text):
        tokens = entry.split()
        if not tokens:
            continue
        officer = Officer(name="")
        names = []
        for token in tokens:
            if token.startswith("@") and len(token) > 1:
                user = (await session.execute(
                    select(User).where(User.username == token[1:]))).scalar_one_or_none()
                if user is None:
                    raise Refusal(tr("roster.errors.unknown_user", user=escape(token)))
                officer.user_id, officer.telegram_user_id = user.id, user.telegram_id
            elif officer.phone and re.fullmatch(r"[\d\-]+", token):
                officer.phone += " " + token  # "+86 100 0000 0205"
            elif token.isascii() and token.isdigit() and 5 <= len(token) <= 15:  # a user id
                officer.telegram_user_id = int(token)
                user = await user_by_telegram_id(session, int(token))
                officer.user_id = user.id if user else None
            elif token.startswith("+") or re.fullmatch(r"[\d\-]{7,}", token):
                officer.phone = token
            else:
                names.append(token)
        officer.name = " ".join(names)
        if not officer.name or len(officer.name) > NAME_LIMIT or \
                len(officer.phone or "") > PHONE_LIMIT:
            raise Refusal(tr("roster.errors.bad_officer", entry=escape(entry.strip()[:200])))
        if any(normalize(o.name) == normalize(officer.name) for o in officers):
            raise Refusal(tr("roster.errors.duplicate", name=escape(officer.name)))
        officers.append(officer)
    if not officers:
        raise Refusal(tr("roster.errors.no_officers"))
    return officers


async def known_officers(
    session: AsyncSession, tr: Translator, officers: list[Officer], room: DutyRoom,
    roster: Roster | None,
) -> list[Officer]:
    """Each entry as a known person of the room's unit — a member of the roster (kept, with
    its swaps, overrides and phone), a user or a liaison of the unit — matched in either
    script; refuses the unknown ones with the names they could mean."""
    users, liaisons = await people_of_unit(session, room.unit_id)
    members = {normalize(m.name): m for m in (roster.members if roster else [])}
    by_user = {normalize(u.full_name): u for u in users}
    by_id = {u.id: u for u in users}
    by_liaison = {normalize(p.name): p for p in liaisons}
    unknown = []
    for officer in officers:
        key = normalize(officer.name)
        if key in members:
            officer.name, officer.member_id = members[key].name, members[key].id
        elif officer.user_id is not None and officer.user_id in by_id:
            continue  # linked by @username or Telegram id to a user of the unit
        elif officer.user_id is None and key in by_user:
            user = by_user[key]
            officer.name, officer.user_id = user.full_name, user.id
            officer.telegram_user_id = user.telegram_id
        elif officer.user_id is None and key in by_liaison:
            liaison = by_liaison[key]
            officer.name = liaison.name
            officer.telegram_user_id = officer.telegram_user_id or liaison.telegram_user_id
            officer.phone = officer.phone or next(iter(liaison.phones or []), None)
        else:
            unknown.append(officer.name)
    if unknown:
        names = [m.name for m in members.values()] + [u.full_name for u in users] + [
            p.name for p in liaisons]
        lines = []
        for name in unknown:
            close = closest_names(name, names)
            lines.append(tr("roster.errors.unknown_person", name=escape(name),
                            unit=escape(room.unit.short_name)) + " " + (
                tr("roster.errors.did_you_mean", names=escape(tr.join(close))) if close
                else tr("roster.errors.no_close_names")))
        raise Refusal("\n".join(lines))
    return officers


def parse_pattern(tr: Translator, args: list[str]) -> tuple[ShiftPattern, list[str]]:
    if not args:
        raise Refusal(tr("roster.errors.bad_pattern"))
    pattern = PATTERN_WORDS.get(normalize(args[0]))
    if pattern is None:
        raise Refusal(tr("roster.errors.bad_pattern"))
    clocks = [parse_clock(a) for a in args[1:]]
    if any(c is None for c in clocks):
        raise Refusal(tr("roster.errors.bad_clock"))
    starts = [c.strftime("%H:%M") for c in clocks if c is not None]
    try:
        spec = RosterSpec.build(pattern.value, date(2026, 1, 1), "UTC", starts or None, 1)
    except ValueError:
        raise Refusal(tr("roster.errors.bad_starts")) from None
    return pattern, [t.strftime("%H:%M") for t in spec.shift_starts]


async def edit_room(
    session: AsyncSession, update: Update, actor: Actor, svc: Services, args: list[str]
) -> tuple[DutyRoom, list[str]]:
    """The room an edit is about, and the arguments left: in a duty room, that room; in
    private, a room named first, else the actor's unit's room — asking which when the
    unit has several."""
    tr = actor.tr
    if in_group(update):
        return await room_for(session, update, actor, svc, None), args
    if args and normalize(args[0]) not in EDIT_VERBS:
        rooms = await rooms_named(session, args[0])
        if len(rooms) == 1:
            return rooms[0], args[1:]
        if rooms:
            raise Refusal(tr("roster.errors.which_room", rooms=escape(
                tr.join(tr.name(r.title) for r in rooms))))
        raise Refusal(tr("roster.edit.usage"))
    rooms = await rooms_of_unit(session, actor.user.unit_id) \
        if actor.user and actor.user.unit_id else []
    if not rooms:
        raise Refusal(tr("roster.errors.no_room"))
    if len(rooms) > 1:
        raise Refusal(tr("roster.errors.which_room", rooms=escape(
            tr.join(tr.name(r.title) for r in rooms))))
    return rooms[0], args


async def edit_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    if not args:
        await reply(update, tr("roster.edit.usage"))
        return
    markup = None
    try:
        async with svc.db.session() as session:
            room, args = await edit_room(session, update, actor, svc, args)
            verb = EDIT_VERBS.get(normalize(args[0])) if args else None
            if verb is None:
                raise Refusal(tr("roster.edit.usage"))
            rest = args[1:]
            if not may_edit(actor, room):
                raise Refusal(tr("roster.errors.not_allowed"))
            user = await session.get(User, actor.user.id) if actor.user else None
            roster = await roster_for_room(session, room.id)
            room_zone = room.timezone or room.unit.timezone or svc.settings.bot_timezone
            today = now.astimezone(time_zone(roster.timezone if roster else room_zone)).date()
            if verb == "override":
                if roster is None:
                    raise Refusal(tr("roster.errors.empty", room=escape(room.title)))
                await override(session, tr, roster, rest, today, now, user, room)
                await plan.skip_due(session, roster.id, now)
                roster = await get_roster(session, roster.id)
                assert roster is not None
                view = await plan.load_view(session, roster, now, now + timedelta(days=15))
                text = tr("roster.edit.done") + "\n\n" + (
                    roster_text(tr, view, now, actor, svc.settings.bot_timezone) if view
                    else tr("roster.errors.empty", room=escape(room.title)))
            else:
                change = await edit_change(session, tr, verb, rest, room, roster, today)
                if roster is None:  # the first edit creates the roster, starting today
                    change.setdefault("anchor_date", today.isoformat())
                    change.setdefault("timezone", room_zone)
                text = await preview_text(session, tr, room, roster, change, now)
                proposed = await propose_roster_change(
                    session, room, change, basis=await roster_fingerprint(session, room.id, now),
                    actor=user, now=now, chat_id=update.effective_chat.id
                    if update.effective_chat else None)
                markup = keyboard([[
                    (tr("roster.buttons.apply"), f"{EDIT_CB}:{proposed.id}:ok"),
                    (tr("roster.buttons.discard"), f"{EDIT_CB}:{proposed.id}:no"),
                ]])
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    if markup is None:
        await svc.rescheduled(plan.NAME)
    await reply(update, text, markup)


async def edit_change(
    session: AsyncSession, tr: Translator, verb: str, rest: list[str], room: DutyRoom,
    roster: Roster | None, today: date,
) -> dict[str, Any]:
    """What an edit of the officers or the roster's shape asks for (nothing written)."""
    if verb == "officers":
        officers = await parse_officers(session, tr, " ".join(rest))
        officers = await known_officers(session, tr, officers, room, roster)
        return {"officers": [o.as_dict() for o in officers]}
    if verb == "pattern":
        pattern, starts = parse_pattern(tr, rest)
        return {"pattern": pattern.value, "shift_starts": starts}
    if verb == "start":
        day = parse_day(" ".join(rest), today) if rest else None
        if day is None:
            raise Refusal(tr("roster.errors.bad_day", text=escape(" ".join(rest))))
        return {"anchor_date": day.isoformat()}
    name = rest[0] if rest else ""
    if not valid_zone(name):
        raise Refusal(tr("roster.errors.bad_zone", zone=escape(name)))
    return {"timezone": name}


async def preview_text(
    session: AsyncSession, tr: Translator, room: DutyRoom, roster: Roster | None,
    change: dict[str, Any], now: datetime,
) -> str:
    """The next shifts as they will be once the change is confirmed."""
    current = sorted(roster.members, key=lambda m: m.position) if roster else []
    officers = change.get("officers") or [
        {"name": m.name, "member_id": m.id} for m in current]
    pattern = change.get("pattern") or (roster.pattern.value if roster else "daily")
    starts = change.get("shift_starts") or (
        list(roster.shift_starts or []) if roster and "pattern" not in change else None)
    anchor_text = change.get("anchor_date") or (roster.anchor_date.isoformat() if roster
                                                else now.date().isoformat())
    anchor = date.fromisoformat(anchor_text)
    zone_name = change.get("timezone") or (roster.timezone if roster else "Asia/Shanghai")
    lines = [tr("roster.preview.head", room=escape(room.title))]
    if "officers" in change:
        lines.append(tr("roster.preview.officers", names=escape(
            tr.join(o["name"] for o in officers))))
    if not officers:
        lines.append(tr("roster.preview.no_officers"))
        return "\n".join([*lines, "", tr("roster.preview.hint")])
    spec = RosterSpec.build(pattern, anchor, zone_name, starts, len(officers))
    lines.append(pattern_text(tr, spec))
    if "timezone" in change:
        lines.append(tr("roster.view.zone", zone=escape(zone_name)))
    position = {o["member_id"]: i for i, o in enumerate(officers) if o.get("member_id")}
    overrides = await overrides_between(
        session, [roster.id], now - timedelta(days=8), now + timedelta(days=60)) \
        if roster else []
    by_start = {o.shift_start: position[o.member_id] for o in overrides
                if o.member_id in position}
    today = now.astimezone(time_zone(zone_name)).date()
    lines += ["", tr("roster.preview.next")]
    for shift in upcoming_shifts(spec, by_start, now, PREVIEW_SHIFTS):
        marks = [tr("roster.view.override")] if shift.overridden else []
        if shift.start <= now:
            marks.append(tr("roster.preview.on_duty"))
        lines.append(shift_line(tr, shift, officers[shift.member_position]["name"], zone_name,
                                spec, today, marks))
    return "\n".join([*lines, "", tr("roster.preview.hint")])


async def apply_change(
    session: AsyncSession, room: DutyRoom, change: dict[str, Any], user: User | None,
    now: datetime,
) -> Roster:
    """Write a confirmed change: settings first (creating the roster, existing from
    `now`), then officers."""
    roster = await roster_for_room(session, room.id)
    if roster is None or {"pattern", "anchor_date", "timezone"} & set(change):
        roster, _ = await save_roster(
            session, room, actor=user,
            pattern=ShiftPattern(change["pattern"]) if "pattern" in change else None,
            shift_starts=change.get("shift_starts"),
            anchor_date=date.fromisoformat(change["anchor_date"])
            if "anchor_date" in change else None,
            timezone=change.get("timezone"), now=now)
    if "officers" in change:
        await set_roster_members(session, roster, change["officers"], actor=user,
                                 chat_id=room.chat_id)
    loaded = await get_roster(session, roster.id)
    assert loaded is not None
    return loaded


@guarded(Role.officer)
async def edit_pressed(update: Update, context: Context, actor: Actor) -> None:
    """确认 applies a previewed change, 取消 drops it — each only while the preview is the
    room's pending one and the roster is still as it was previewed; otherwise the button
    is dead and says why, changing nothing."""
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    match = re.fullmatch(rf"{EDIT_CB}:(\d{{1,9}}):(ok|no)", query.data or "")
    if match is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return
    change_id, confirm = int(match[1]), match[2] == "ok"
    try:
        async with svc.db.session() as session:
            change = await get_roster_change(session, change_id)
            room = (await session.execute(
                select(DutyRoom).options(selectinload(DutyRoom.unit))
                .where(DutyRoom.id == change.duty_room_id))).scalar_one_or_none() \
                if change else None
            if change is None or room is None:
                raise Refusal(tr("errors.stale_button"))
            if not may_edit(actor, room):
                raise Refusal(tr("roster.errors.not_allowed"))
            if change.status is not RosterChangeStatus.pending:
                raise Refusal(tr(f"roster.preview.dead_{change.status.value}"))
            user = await session.get(User, actor.user.id) if actor.user else None
            chat_id = query.message.chat.id if query.message else None
            if not confirm:
                await decide_roster_change(session, change, RosterChangeStatus.cancelled,
                                           actor=user, now=now, chat_id=chat_id)
                result = tr("roster.preview.cancelled")
            else:
                if await roster_fingerprint(session, room.id, change.created_at) != \
                        change.basis:
                    raise Refusal(tr("roster.preview.dead_changed"))
                roster = await apply_change(session, room, change.change, user, now)
                await decide_roster_change(session, change, RosterChangeStatus.confirmed,
                                           actor=user, now=now, chat_id=chat_id)
                await plan.skip_due(session, roster.id, now)
                view = await plan.load_view(session, roster, now, now + timedelta(days=15))
                result = tr("roster.edit.done") + "\n\n" + (
                    roster_text(tr, view, now, actor, svc.settings.bot_timezone) if view
                    else tr("roster.errors.empty", room=escape(room.title)))
    except Refusal as refusal:
        await query.answer(refusal.text, show_alert=True)
        return
    if confirm:
        await svc.rescheduled(plan.NAME)
    await query.answer()
    await edit_query_message(update, result)


async def override(
    session: AsyncSession, tr: Translator, roster: Any, args: list[str], today: date,
    now: datetime, user: User | None, room: DutyRoom,
) -> None:
    day, at, rest = take_moment(args, today)
    if day is None or not rest:
        raise Refusal(tr("roster.edit.override_usage"))
    view = await plan.load_view(session, roster, now, now + timedelta(days=400))
    if view is None:
        raise Refusal(tr("roster.errors.empty", room=escape(room.title)))
    shift = shift_on(view, day, at, None)
    if shift is None:
        raise Refusal(tr("roster.errors.no_shift", day=fmt_date(tr, day)))
    if shift.start <= now:
        raise Refusal(tr("roster.errors.started"))
    if normalize(rest[0]) in CLEAR_WORDS:
        await set_override(session, roster, shift.start, None, actor=user, chat_id=room.chat_id)
        return
    member = member_named(view, rest[0])
    if member is None:
        raise Refusal(tr("roster.errors.unknown_officer", name=escape(rest[0]),
                         names=escape(tr.join(m.name for m in view.members))))
    reason = " ".join(rest[1:]).strip() or None
    if reason and len(reason) > 200:
        raise Refusal(tr("errors.too_long", limit=200))
    await set_override(session, roster, shift.start, member, actor=user, reason=reason,
                       chat_id=room.chat_id)


# --------------------------------------------------------------------------- /roster remind


async def remind_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    svc, tr = services(context), actor.tr
    if in_group(update):
        await reply(update, tr("errors.private_only"))
        return
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            assert user is not None
            current = plan.shift_offsets(user.preferences or {})
            if not args:
                raise Refusal(tr("roster.remind.current", offsets=_offsets(tr, current))
                              if current else tr("roster.remind.current_off"))
            if normalize(" ".join(args)) in OFF_WORDS:
                offsets: list[int] = []
            else:
                offsets = []
                for arg in " ".join(args).replace(",", " ").replace("、", " ").split():
                    minutes = parse_offset(arg)
                    if minutes is None or not 0 < minutes <= 7 * 24 * 60:
                        raise Refusal(tr("roster.remind.bad", text=escape(arg)))
                    offsets.append(minutes)
                offsets = sorted(set(offsets), reverse=True)
            preferences = dict(user.preferences or {})
            preferences[plan.PREFERENCE] = offsets
            user.preferences = preferences
            await audit(session, "user.shift_reminders", actor=user, subject_type="user",
                        subject_id=user.telegram_id, previous=current, offsets=offsets)
            # A longer offset must not resurrect a reminder whose moment has passed.
            await session.flush()
            rosters = await session.execute(
                select(RosterMember.roster_id).where(
                    (RosterMember.user_id == user.id)
                    | (RosterMember.telegram_user_id == user.telegram_id)
                ).distinct()
            )
            for roster_id in rosters.scalars():
                await plan.skip_due(session, roster_id, svc.now())
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    await svc.rescheduled(plan.NAME)
    await reply(update, tr("roster.remind.saved", offsets=_offsets(tr, offsets))
                if offsets else tr("roster.remind.saved_off"))


def _offsets(tr: Translator, offsets: list[int]) -> str:
    return tr.join(fmt_minutes(tr, o) for o in offsets)


# --------------------------------------------------------------------------- /swap


def swap_text(tr: Translator, view: plan.RosterView, swap: ShiftSwap, now: datetime) -> str:
    members = {m.id: m for m in view.members}
    zone_name = zone_of(view)
    requester = escape(members[swap.requester_member_id].name)
    counterpart = escape(members[swap.counterpart_member_id].name)
    mine = fmt_when(tr, swap.requester_shift_start, zone_name, now=now, with_zone=False)
    if swap.counterpart_shift_start == swap.requester_shift_start:
        return tr("roster.swap_text.cover", requester=requester, counterpart=counterpart,
                  shift=mine)
    theirs = fmt_when(tr, swap.counterpart_shift_start, zone_name, now=now, with_zone=False)
    return tr("roster.swap_text.swap", requester=requester, counterpart=counterpart,
              mine=mine, theirs=theirs)


async def swap_room(
    session: AsyncSession, update: Update, actor: Actor, svc: Services
) -> DutyRoom:
    """In a duty room, that room; in private, the room of the actor's unit whose roster
    they are on (a unit may have several rooms)."""
    if in_group(update) or actor.user is None or actor.user.unit_id is None:
        return await room_for(session, update, actor, svc, None)
    mine = await rooms_on_roster(session, await rooms_of_unit(session, actor.user.unit_id), actor)
    if len(mine) > 1:
        raise Refusal(actor.tr("roster.errors.swap_which_room",
                               rooms=escape(actor.tr.join(actor.tr.name(r.title)
                                                          for r in mine))))
    return mine[0] if mine else await room_for(session, update, actor, svc, None)


@guarded(Role.officer)
async def swap_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    args = context.args or []
    try:
        async with svc.db.session() as session:
            room = await swap_room(session, update, actor, svc)
            roster = await roster_for_room(session, room.id)
            view = await plan.load_view(session, roster, now, now + timedelta(days=400)) \
                if roster else None
            if view is None:
                raise Refusal(tr("roster.errors.empty", room=escape(room.title)))
            today = now.astimezone(time_zone(view.roster.timezone)).date()
            day, at, rest = take_moment(args, today)
            if day is None or not rest:
                raise Refusal(tr("roster.swap_usage"))
            me = member_of(view, actor)
            if me is None:
                raise Refusal(tr("roster.errors.not_member"))
            counterpart = member_named(view, rest[0])
            if counterpart is None:
                raise Refusal(tr("roster.errors.unknown_officer", name=escape(rest[0]),
                                 names=escape(tr.join(m.name for m in view.members))))
            if counterpart.id == me.id:
                raise Refusal(tr("roster.errors.same_officer"))
            mine = shift_on(view, day, at, me)
            if mine is None:
                raise Refusal(tr("roster.errors.no_own_shift", day=fmt_date(tr, day)))
            their_day, their_at, extra = take_moment(rest[1:], today)
            if extra:
                raise Refusal(tr("roster.swap_usage"))
            theirs = shift_on(view, their_day, their_at, counterpart) if their_day else mine
            if theirs is None:
                raise Refusal(tr("roster.errors.no_their_shift", name=escape(counterpart.name),
                                 day=fmt_date(tr, their_day)))
            if min(mine.start, theirs.start) <= now:
                raise Refusal(tr("roster.errors.started"))
            await refuse_clashing_swap(session, tr, view, me, counterpart, mine, theirs, now)
            user = await session.get(User, actor.user.id) if actor.user else None
            swap = await create_swap(session, view.roster, requester=me,
                                     requester_shift_start=mine.start, counterpart=counterpart,
                                     counterpart_shift_start=theirs.start, actor=user, now=now,
                                     chat_id=room.chat_id)
            room_tr = Translator(svc.settings.default_language)
            buttons = {"inline_keyboard": [[
                {"text": room_tr("roster.buttons.confirm"), "callback_data": f"{CB}:{swap.id}:ok"},
                {"text": room_tr("roster.buttons.reject"), "callback_data": f"{CB}:{swap.id}:no"},
            ]]}
            # An officer without an active account cannot answer: a coordinator confirms.
            account = (await member_users(session, [counterpart])).get(counterpart.id)
            telegram = account.telegram_id if account is not None and account.active else None
            asked = "roster.swap_asked" if telegram else "roster.swap_asked_coordinator"
            request = room_tr(asked, swap=swap_text(room_tr, view, swap, now),
                              name=escape(counterpart.name))
            recipients = {"room": room.chat_id}
            if telegram:
                recipients["member"] = telegram
            else:
                users, _ = await people_of_unit(session, room.unit_id)
                recipients |= {f"coordinator{u.telegram_id}": u.telegram_id for u in users
                               if u.role.at_least(Role.coordinator)}
            for label, chat_id in recipients.items():
                if chat_id != actor.telegram_id:
                    await outbox.enqueue(session, chat_id=chat_id, kind="swap_request",
                                         text=request,
                                         payload={**plan.HTML, "reply_markup": buttons},
                                         dedup_key=f"swap:{swap.id}:ask:{label}", now=now)
            sent = "roster.swap_sent" if telegram else "roster.swap_sent_coordinator"
            text = tr(sent, swap=swap_text(tr, view, swap, now), name=escape(counterpart.name))
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    svc.wake_delivery()
    await reply(update, text)


async def refuse_clashing_swap(
    session: AsyncSession, tr: Translator, view: plan.RosterView, me: RosterMember,
    counterpart: RosterMember, mine: Shift, theirs: Shift, now: datetime,
) -> None:
    """A shift is in at most one live swap: refuse a swap that repeats or overlaps one
    still proposed or already confirmed."""
    starts = {mine.start, theirs.start}
    for other in await swaps_touching(session, view.roster.id, starts):
        same = {other.requester_shift_start, other.counterpart_shift_start} == starts and {
            other.requester_member_id, other.counterpart_member_id} == {me.id, counterpart.id}
        key = "duplicate_swap" if same else "overlapping_swap"
        raise Refusal(tr(f"roster.errors.{key}", swap=swap_text(tr, view, other, now),
                         status=tr(f"roster.swap_status.{other.status.value}")))


@guarded(Role.officer)
async def swap_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    match = re.fullmatch(rf"{CB}:(\d{{1,9}}):(ok|no)", query.data or "")
    if match is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return
    swap_id, accept = int(match[1]), match[2] == "ok"
    try:
        async with svc.db.session() as session:
            swap = await get_swap(session, swap_id)
            if swap is None:
                raise Refusal(tr("errors.stale_button"))
            if swap.status is not SwapStatus.proposed:
                raise Refusal(tr(f"roster.errors.swap_{swap.status.value}"))
            roster = await get_roster(session, swap.roster_id)
            assert roster is not None
            view = await plan.load_view(session, roster, now, now + timedelta(days=400))
            assert view is not None
            members = {m.id: m for m in view.members}
            me = member_of(view, actor)
            is_counterpart = me is not None and me.id == swap.counterpart_member_id
            is_requester = me is not None and me.id == swap.requester_member_id
            coordinator = actor.can(Role.coordinator)
            if not (is_counterpart or coordinator or (is_requester and not accept)):
                raise Refusal(tr("roster.errors.not_yours"))
            user = await session.get(User, actor.user.id) if actor.user else None
            room = roster.duty_room
            room_tr = Translator(svc.settings.default_language)
            if not accept:
                status = SwapStatus.cancelled if is_requester and not coordinator \
                    else SwapStatus.rejected
                await decide_swap(session, swap, status, actor=user, now=now,
                                  chat_id=room.chat_id)
                result = room_tr(f"roster.swap_{status.value}", swap=swap_text(
                    room_tr, view, swap, now), by=escape(actor.user.full_name if actor.user
                                                         else ""))
            else:
                if min(swap.requester_shift_start, swap.counterpart_shift_start) <= now:
                    raise Refusal(tr("roster.errors.started"))
                overrides = confirm_overrides(tr, view, swap, members)
                await decide_swap(session, swap, SwapStatus.confirmed, actor=user, now=now,
                                  overrides=overrides, chat_id=room.chat_id)
                await plan.skip_due(session, roster.id, now)
                result = room_tr("roster.swap_confirmed", swap=swap_text(
                    room_tr, view, swap, now), by=escape(actor.user.full_name if actor.user
                                                         else ""))
            await outbox.enqueue(session, chat_id=room.chat_id, kind="swap_result",
                                 text=result, payload=plan.HTML,
                                 dedup_key=f"swap:{swap.id}:result", now=now)
            requester = members.get(swap.requester_member_id)
            telegram = (await member_telegram_ids(session, [requester])).get(
                requester.id) if requester else None
            if telegram and telegram != actor.telegram_id:
                await outbox.enqueue(session, chat_id=telegram, kind="swap_result",
                                     text=result, payload=plan.HTML,
                                     dedup_key=f"swap:{swap.id}:result:requester", now=now)
    except Refusal as refusal:
        await query.answer(refusal.text, show_alert=True)
        return
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.answer(tr("roster.swap_done"))
    await edit_query_message(update, result, courtesy=True)


def confirm_overrides(
    tr: Translator, view: plan.RosterView, swap: ShiftSwap, members: dict[int, RosterMember]
) -> list[tuple[datetime, int]]:
    """The overrides a confirmed swap writes, checked against the roster as it is now."""
    index = {m.id: i for i, m in enumerate(view.members)}
    if swap.requester_member_id not in index or swap.counterpart_member_id not in index:
        raise Refusal(tr("roster.errors.changed"))
    mine = view.shift_at(swap.requester_shift_start)
    if mine.start != swap.requester_shift_start or \
            view.member(mine).id != swap.requester_member_id:
        raise Refusal(tr("roster.errors.changed"))
    if swap.counterpart_shift_start == swap.requester_shift_start:
        return [(mine.start, swap.counterpart_member_id)]
    try:
        planned = swap_overrides(view.spec, swap.requester_shift_start,
                                 swap.counterpart_shift_start, view.overrides)
    except ValueError:
        raise Refusal(tr("roster.errors.changed")) from None
    if planned.get(swap.requester_shift_start) != index[swap.counterpart_member_id]:
        raise Refusal(tr("roster.errors.changed"))
    return [(start, view.members[position].id) for start, position in planned.items()]


# --------------------------------------------------------------------------- wiring


def register(application: Application) -> None:
    application.add_handler(CommandHandler("roster", roster_command))
    application.add_handler(CommandHandler("swap", swap_command))
    application.add_handler(CallbackQueryHandler(swap_pressed, pattern=rf"^{CB}:\d+:(ok|no)$"))
    application.add_handler(CallbackQueryHandler(edit_pressed,
                                                 pattern=rf"^{EDIT_CB}:\d+:(ok|no)$"))
