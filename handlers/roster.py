"""Duty rosters: /roster (the next 7 days), /roster edit (duty officers, coordinators),
/roster remind (an officer's own reminder offsets) and /swap (confirmed by the other
officer or a coordinator).

Handovers and shift reminders are sent by bot/plans/roster.py; every change here asks
the scheduler to re-place the roster jobs after its commit, and claims what is already
due on the old plan as skipped (in the same transaction).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.calendar import fmt_clock, fmt_date, fmt_minutes, fmt_when, parse_offset, valid_zone, zone
from bot.commands import CommandInfo, Where
from bot.domain.clock import in_calendar
from bot.domain.normalize import normalize
from bot.domain.rotation import RosterSpec, Shift, swap_overrides
from bot.i18n import Translator
from bot.plans import roster as plan
from bot.services import Actor, Services, services
from handlers.common import Context, Refusal, escape, guarded, in_group, reply
from storage import outbox
from storage.access import audit, duty_room_by_chat, find_units, user_by_telegram_id
from storage.models import DutyRoom, Role, RosterMember, ShiftPattern, ShiftSwap, SwapStatus, User
from storage.schedules import (
    create_swap,
    decide_swap,
    get_roster,
    get_swap,
    member_telegram_ids,
    rooms_for_units,
    roster_for_room,
    save_roster,
    set_override,
    set_roster_members,
)

COMMANDS = [
    CommandInfo("roster", Role.officer, Where.anywhere, "roster.command"),
    CommandInfo("swap", Role.officer, Where.anywhere, "roster.swap"),
]

CB = "swap"
DAYS_SHOWN = 7
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


def parse_day(text: str, today: date) -> date | None:
    """A calendar day: 2026-11-25, 2026/11/25, 11-25, 11月25日, 今天/明天/后天 (past allowed)."""
    clean = normalize(text).replace(" ", "")
    words = {"今天": 0, "today": 0, "明天": 1, "tomorrow": 1, "后天": 2, "昨天": -1}
    if clean in words:
        return today + timedelta(days=words[clean])
    match = re.fullmatch(r"(?:(\d{4})[-/.年])?(\d{1,2})[-/.月](\d{1,2})[日号]?", clean)
    if not match:
        return None
    try:
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
    day = parse_day(args[0], today)
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
        units = await find_units(session, unit_text) or await find_units(
            session, normalize(unit_text))
        if len(units) != 1:
            raise Refusal(tr("roster.errors.unknown_unit", unit=escape(unit_text)))
        room = (await rooms_for_units(session, [units[0].id])).get(units[0].id)
        if room is None:
            raise Refusal(tr("roster.errors.no_room_for", unit=escape(units[0].name)))
        return room
    if here is not None:
        return here
    unit_id = actor.user.unit_id if actor.user else None
    room = (await rooms_for_units(session, [unit_id])).get(unit_id) if unit_id else None
    if room is None:
        raise Refusal(tr("roster.errors.no_room"))
    return room


def may_edit(actor: Actor, room: DutyRoom) -> bool:
    if actor.can(Role.coordinator):
        return True
    return (actor.can(Role.duty_officer) and actor.user is not None
            and actor.user.unit_id == room.unit_id)


def member_of(view: plan.RosterView, actor: Actor) -> RosterMember | None:
    for member in view.members:
        if actor.user is not None and member.user_id == actor.user.id:
            return member
        if member.telegram_user_id == actor.telegram_id:
            return member
    return None


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
    local_zone = zone(view.roster.timezone)
    start = datetime.combine(day, time(0), tzinfo=local_zone)
    for shift in view.shifts(start, start + timedelta(days=1)):
        local = shift.start.astimezone(local_zone)
        if at is not None and local.time() != at:
            continue
        if member is None or view.member(shift).id == member.id:
            return shift
    return None


# --------------------------------------------------------------------------- rendering


def pattern_text(tr: Translator, view: plan.RosterView) -> str:
    starts = "、".join(t.strftime("%H:%M") for t in view.spec.shift_starts)
    return tr(f"roster.patterns.{view.roster.pattern.value}", starts=starts)


def roster_text(
    tr: Translator, view: plan.RosterView, now: datetime, actor: Actor | None = None,
    default_zone: str = "Asia/Shanghai",
) -> str:
    room = view.roster.duty_room
    zone_name = zone_of(view)
    lines = [tr("roster.view.head", room=escape(room.title), pattern=pattern_text(tr, view))]
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
    today = now.astimezone(zone(zone_name)).date()
    for shift in shifts:
        member = view.member(shift)
        local = shift.start.astimezone(zone(zone_name))
        marks = []
        if shift.overridden:
            marks.append(tr("roster.view.override"))
        if mine is not None and member.id == mine.id:
            marks.append(tr("roster.view.you"))
        span = local.strftime("%H:%M")
        if view.roster.pattern is ShiftPattern.day_night:
            span += "–" + fmt_clock(shift.end, zone_name)
        lines.append(tr("roster.view.line", day=fmt_date(tr, local.date(), today=today),
                        span=span, officer=escape(member.name), marks=" ".join(marks)).rstrip())
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

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "user_id": self.user_id,
                "telegram_user_id": self.telegram_user_id, "phone": self.phone}


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
        RosterSpec.build(pattern.value, date(2026, 1, 1), "UTC", starts or None, 1)
    except ValueError:
        raise Refusal(tr("roster.errors.bad_starts")) from None
    return pattern, starts


async def edit_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    verb = EDIT_VERBS.get(normalize(args[0])) if args else None
    if verb is None:
        await reply(update, tr("roster.edit.usage"))
        return
    rest = args[1:]
    try:
        async with svc.db.session() as session:
            room = await room_for(session, update, actor, svc, None)
            if not may_edit(actor, room):
                raise Refusal(tr("roster.errors.not_allowed"))
            user = await session.get(User, actor.user.id) if actor.user else None
            roster = await roster_for_room(session, room.id)
            room_zone = room.timezone or room.unit.timezone or svc.settings.bot_timezone
            today = now.astimezone(zone(roster.timezone if roster else room_zone)).date()
            if roster is None:  # the first edit creates it, starting today
                roster, _ = await save_roster(session, room, actor=user, anchor_date=today,
                                              timezone=room_zone)
            if verb == "officers":
                officers = await parse_officers(session, tr, " ".join(rest))
                await set_roster_members(session, roster, [o.as_dict() for o in officers],
                                         actor=user, chat_id=room.chat_id)
            elif verb == "pattern":
                pattern, starts = parse_pattern(tr, rest)
                roster, _ = await save_roster(session, room, actor=user, pattern=pattern,
                                              shift_starts=starts or list(
                                                  t.strftime("%H:%M") for t in
                                                  RosterSpec.build(pattern.value, today, "UTC",
                                                                   None, 1).shift_starts))
            elif verb == "start":
                day = parse_day(" ".join(rest), today) if rest else None
                if day is None:
                    raise Refusal(tr("roster.errors.bad_day", text=escape(" ".join(rest))))
                roster, _ = await save_roster(session, room, actor=user, anchor_date=day)
            elif verb == "tz":
                name = rest[0] if rest else ""
                if not valid_zone(name):
                    raise Refusal(tr("roster.errors.bad_zone", zone=escape(name)))
                roster, _ = await save_roster(session, room, actor=user, timezone=name)
            elif verb == "override":
                await override(session, tr, roster, rest, today, now, user, room)
            roster = await get_roster(session, roster.id)
            assert roster is not None
            await plan.skip_due(session, roster.id, now)
            view = await plan.load_view(session, roster, now, now + timedelta(days=15))
            text = tr("roster.edit.done") + "\n\n" + (
                roster_text(tr, view, now, actor, svc.settings.bot_timezone) if view
                else tr("roster.errors.empty", room=escape(room.title)))
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    await svc.rescheduled(plan.NAME)
    await reply(update, text)


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
                         names=escape("、".join(m.name for m in view.members))))
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
                raise Refusal(tr("roster.remind.current", offsets=_offsets(tr, current)))
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
    await reply(update, tr("roster.remind.saved", offsets=_offsets(tr, offsets)))


def _offsets(tr: Translator, offsets: list[int]) -> str:
    if not offsets:
        return tr("roster.remind.none")
    return "、".join(fmt_minutes(tr, o) for o in offsets)


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


@guarded(Role.officer)
async def swap_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    args = context.args or []
    try:
        async with svc.db.session() as session:
            room = await room_for(session, update, actor, svc, None)
            roster = await roster_for_room(session, room.id)
            view = await plan.load_view(session, roster, now, now + timedelta(days=400)) \
                if roster else None
            if view is None:
                raise Refusal(tr("roster.errors.empty", room=escape(room.title)))
            today = now.astimezone(zone(view.roster.timezone)).date()
            day, at, rest = take_moment(args, today)
            if day is None or not rest:
                raise Refusal(tr("roster.swap_usage"))
            me = member_of(view, actor)
            if me is None:
                raise Refusal(tr("roster.errors.not_member"))
            counterpart = member_named(view, rest[0])
            if counterpart is None:
                raise Refusal(tr("roster.errors.unknown_officer", name=escape(rest[0]),
                                 names=escape("、".join(m.name for m in view.members))))
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
            await outbox.enqueue(session, chat_id=room.chat_id, kind="swap_request",
                                 text=room_tr("roster.swap_asked", swap=swap_text(
                                     room_tr, view, swap, now)),
                                 payload={**plan.HTML, "reply_markup": buttons},
                                 dedup_key=f"swap:{swap.id}:ask:room", now=now)
            telegram = (await member_telegram_ids(session, [counterpart])).get(counterpart.id)
            if telegram and telegram != actor.telegram_id:
                await outbox.enqueue(session, chat_id=telegram, kind="swap_request",
                                     text=room_tr("roster.swap_asked", swap=swap_text(
                                         room_tr, view, swap, now)),
                                     payload={**plan.HTML, "reply_markup": buttons},
                                     dedup_key=f"swap:{swap.id}:ask:member", now=now)
            text = tr("roster.swap_sent", swap=swap_text(tr, view, swap, now),
                      name=escape(counterpart.name))
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    svc.wake_delivery()
    await reply(update, text)


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
                raise Refusal(tr("roster.errors.decided"))
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
    with contextlib.suppress(BadRequest):
        await query.edit_message_text(result, parse_mode=ParseMode.HTML)


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
        planned = swap_overrides(view.spec, view.overrides, swap.requester_shift_start,
                                 swap.counterpart_shift_start)
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
