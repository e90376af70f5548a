"""/roster edit: duty officers propose changes to their room's roster (officers, pattern,
start, time zone, overrides); coordinators confirm them with the preview's buttons.

Every change asks the scheduler to re-place the roster jobs after its commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from telegram import Update

from bot.plans import roster as plan
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.clock import time_zone
from core.clock import valid_zone
from core.enums import Role
from core.enums import RosterChangeStatus
from core.enums import ShiftPattern
from core.normalize import normalize
from core.phones import PhoneProblem
from core.phones import checked_phone
from core.phones import numbers_in
from core.rotation import RosterSpec
from core.rotation import upcoming_shifts
from core.vocabulary import closest_names
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import in_group
from handlers.common import keyboard
from handlers.common import reply
from handlers.roster_common import may_edit
from handlers.roster_common import member_named
from handlers.roster_common import parse_clock
from handlers.roster_common import parse_day
from handlers.roster_common import pattern_text
from handlers.roster_common import pressed_decision
from handlers.roster_common import room_for
from handlers.roster_common import roster_text
from handlers.roster_common import shift_line
from handlers.roster_common import shift_on
from handlers.roster_common import take_moment
from i18n import Translator
from i18n.formats import fmt_date
from storage.access import user_by_telegram_id
from storage.models import DutyRoom
from storage.models import Roster
from storage.models import User
from storage.roster import decide_roster_change
from storage.roster import get_roster
from storage.roster import get_roster_change
from storage.roster import overrides_between
from storage.roster import people_of_unit
from storage.roster import propose_roster_change
from storage.roster import roster_fingerprint
from storage.roster import roster_for_room
from storage.roster import save_roster
from storage.roster import set_override
from storage.roster import set_roster_members
from storage.schedules import rooms_named
from storage.schedules import rooms_of_unit
from views.buttons import Button
from views.buttons import Style

EDIT_CB = "rosteredit"

PREVIEW_SHIFTS = 8
NAME_LIMIT = 60
SPLIT_OFFICERS = re.compile(r"[、,，;；\n]+")
NUMBERISH = re.compile(r"[+＋]?[\d\-－()（）]+")
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


def _telegram_id(text: str) -> bool:
    """A bare run of 5 to 10 digits, not starting with 0: a Telegram user id, not a
    number to dial (an 11-digit mobile, a landline with its area code, one grouped
    with spaces or dashes is a phone)."""
    return text.isascii() and text.isdigit() and 5 <= len(text) <= 10 and text[0] != "0"


async def parse_officers(session: AsyncSession, tr: Translator, text: str) -> list[Officer]:
    """Each entry: a name, and optionally an @username or a Telegram id, and a phone
    number as libphonenumber finds it in the text, grouped as people type it. What
    looks like a number but is none is refused with why (core.phones)."""
    officers: list[Officer] = []
    for entry in SPLIT_OFFICERS.split(text):
        if not entry.strip():
            continue
        spans = [(a, b) for a, b in numbers_in(entry) if not _telegram_id(entry[a:b])]
        rest = entry
        for a, b in reversed(spans):
            rest = rest[:a] + " " + rest[b:]
        officer = Officer(name="")
        names, unreadable = [], []
        for token in rest.split():
            if token.startswith("@") and len(token) > 1:
                user = (await session.execute(
                    select(User).where(User.username == token[1:]))).scalar_one_or_none()
                if user is None:
                    raise Refusal(tr("roster.errors.unknown_user", user=escape(token)))
                officer.user_id, officer.telegram_user_id = user.id, user.telegram_id
            elif _telegram_id(token):
                officer.telegram_user_id = int(token)
                user = await user_by_telegram_id(session, int(token))
                officer.user_id = user.id if user else None
            elif NUMBERISH.fullmatch(token):
                unreadable.append(token)  # "+86 138": a number, but not one to dial
            else:
                names.append(token)
        numbers = [entry[a:b] for a, b in spans] + ([" ".join(unreadable)] if unreadable else [])
        if len(numbers) > 1:
            raise Refusal(tr("roster.errors.bad_officer", entry=escape(entry.strip()[:200])))
        officer.phone = numbers[0] if numbers else None
        officer.name = " ".join(names)
        if not officer.name or len(officer.name) > NAME_LIMIT:
            raise Refusal(tr("roster.errors.bad_officer", entry=escape(entry.strip()[:200])))
        try:
            officer.phone = checked_phone(officer.phone or "")
        except PhoneProblem as problem:
            why = tr(f"import.problems.{problem.key}",
                     **{k: escape(str(v)) for k, v in problem.values.items()})
            raise Refusal(tr("roster.errors.bad_phone", name=escape(officer.name),
                             why=why)) from None
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
                            unit=escape(tr.name(room.unit.short_name))) + " " + (
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
                raise Refusal(tr("roster.errors.empty", room=escape(tr.name(room.title))))
            await override(session, tr, roster, rest, today, now, user, room)
            await plan.skip_due(session, roster.id, now)
            roster = await get_roster(session, roster.id)
            assert roster is not None
            view = await plan.load_view(session, roster, now, now + timedelta(days=15))
            text = tr("roster.edit.done") + "\n\n" + (
                roster_text(tr, view, now, actor, svc.settings.bot_timezone) if view
                else tr("roster.errors.empty", room=escape(tr.name(room.title))))
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
                Button(tr("roster.buttons.apply"), f"{EDIT_CB}:{proposed.id}:ok",
                       Style.success),
                (tr("roster.buttons.discard"), f"{EDIT_CB}:{proposed.id}:no"),
            ]])
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
    lines = [tr("roster.preview.head", room=escape(tr.name(room.title)))]
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
    svc = services(context)
    query, change_id, confirm = pressed_decision(update, actor.tr, EDIT_CB)
    chat_id = query.message.chat.id if query.message else None
    async with svc.db.session() as session:
        result = await decide_change(session, svc, actor, change_id, confirm, chat_id)
    if confirm:
        await svc.rescheduled(plan.NAME)
    await query.answer()
    await edit_query_message(update, result)


async def decide_change(session: AsyncSession, svc: Services, actor: Actor, change_id: int,
                        confirm: bool, chat_id: int | None) -> str:
    """Apply or drop a previewed change, recorded; what the preview then says."""
    tr, now = actor.tr, svc.now()
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
    if not confirm:
        await decide_roster_change(session, change, RosterChangeStatus.cancelled,
                                   actor=user, now=now, chat_id=chat_id)
        return tr("roster.preview.cancelled")
    if await roster_fingerprint(session, room.id, change.created_at) != change.basis:
        raise Refusal(tr("roster.preview.dead_changed"))
    roster = await apply_change(session, room, change.change, user, now)
    await decide_roster_change(session, change, RosterChangeStatus.confirmed,
                               actor=user, now=now, chat_id=chat_id)
    await plan.skip_due(session, roster.id, now)
    view = await plan.load_view(session, roster, now, now + timedelta(days=15))
    return tr("roster.edit.done") + "\n\n" + (
        roster_text(tr, view, now, actor, svc.settings.bot_timezone) if view
        else tr("roster.errors.empty", room=escape(tr.name(room.title))))


async def override(
    session: AsyncSession, tr: Translator, roster: Any, args: list[str], today: date,
    now: datetime, user: User | None, room: DutyRoom,
) -> None:
    day, at, rest = take_moment(args, today)
    if day is None or not rest:
        raise Refusal(tr("roster.edit.override_usage"))
    view = await plan.load_view(session, roster, now, now + timedelta(days=400))
    if view is None:
        raise Refusal(tr("roster.errors.empty", room=escape(tr.name(room.title))))
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
