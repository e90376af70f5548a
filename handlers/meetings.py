"""Meetings: /meetings (list, .ics), /meeting (details; coordinators: new, edit, cancel),
RSVP buttons on invitations and reminders, and /missed for coordinators.

Reminders themselves are written by bot/plans/meetings.py when they fall due; this
module writes the invitation, change and cancellation notices (outbox rows in the same
transaction as the change) and asks the scheduler to re-place the meeting jobs after
each commit.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import ForceReply, Update
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.commands import CommandInfo, Where
from bot.plans import meetings as plan
from bot.services import SERVICES_KEY, Actor, Services, services
from core.clock import time_zone
from core.enums import MeetingKind, MeetingStatus, Role, Rsvp
from core.meetings import parse_meeting_kind, parse_offset, parse_offsets
from core.normalize import normalize
from core.schedule import DEFAULT_MEETING_OFFSETS
from core.timeparse import DeadlineError, parse_deadline
from handlers import flow
from handlers.common import (
    CANCELLED,
    USED,
    Context,
    Refusal,
    close_confirmation,
    confirmation,
    confirmation_open,
    edit_query_message,
    end_draft,
    escape,
    guarded,
    handled,
    in_group,
    keyboard,
    message_text,
    offer_confirmation,
    prompt_ref,
    reply,
)
from handlers.flow import Draft
from i18n import Translator
from i18n.formats import fmt_minutes, fmt_span, fmt_when
from storage import outbox
from storage.access import duty_room_by_chat, find_units, user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.meetings import (
    cancel_meeting,
    create_meeting,
    get_meeting,
    meeting_by_submission,
    set_rsvp,
    upcoming_meetings,
    update_meeting,
)
from storage.models import DutyRoom, Meeting, MeetingParticipant, Unit, User
from storage.schedules import (
    all_zones,
    missed_marks,
    rooms_for_units,
    unit_with_ancestors,
    units_by_ids,
    zone_member_ids,
    zones_of_unit,
)
from views.calendar import CalendarEvent, calendar_bytes, meeting_uid

COMMANDS = [
    CommandInfo("meetings", Role.officer, Where.anywhere, "meetings.list"),
    CommandInfo("meeting", Role.coordinator, Where.private, "meetings.manage"),
    CommandInfo("missed", Role.coordinator, Where.anywhere, "meetings.missed"),
]

CB = plan.CALLBACK
TITLE_LIMIT = 120
PLACE_LIMIT = 200
AGENDA_LIMIT = 1500
LIST_LIMIT = 15  # meetings listed by /meetings, each with its 📅 button
HORIZON = timedelta(days=120)
MAX_OFFSET_MINUTES = int(plan.MAX_OFFSET.total_seconds() // 60)
URL = re.compile(r"https?://\S+", re.IGNORECASE)
SPLIT = re.compile(r"[、,，;；\s]+")
SKIP = {"-", "—", "无", "無", "跳过", "跳過", "skip", "none"}
ALL = {"全部", "all", "全体", "全體"}

# Conversation states (ints: persisted as JSON).
TITLE, KIND, ZONE, START, END, PLACE, UNITS, AGENDA, CONFIRM = range(9)
DELEGATE = 20
# A draft left alone this long is over: a later message is not taken as its answer.
DRAFT_TTL = timedelta(hours=6)
# Confirmation kinds (handlers/common.py): /meeting cancel's question, the delegate's
# name prompt (a draft's preview: NEW_MEETING.kind).
CANCEL, DELEGATE_KIND = "meeting_cancel", "meeting_delegate"
PENDING_DELEGATE = "meeting_delegate"

EDIT_FIELDS = {
    "title": "title", "名称": "title", "标题": "title", "名稱": "title", "標題": "title",
    "kind": "kind", "类型": "kind", "類型": "kind",
    "start": "start", "time": "start", "时间": "start", "開始": "start", "开始": "start",
    "時間": "start",
    "end": "end", "结束": "end", "結束": "end",
    "place": "place", "地点": "place", "地點": "place",
    "link": "link", "video": "link", "链接": "link", "連結": "link", "鏈接": "link",
    "agenda": "agenda", "议程": "agenda", "議程": "agenda",
    "units": "units", "单位": "units", "單位": "units", "参会单位": "units", "參會單位": "units",
    "reminders": "reminders", "提醒": "reminders",
}


# --------------------------------------------------------------------------- helpers


def default_zone(svc: Services) -> str:
    return svc.settings.bot_timezone


def actor_zone(svc: Services, actor: Actor) -> str:
    unit = actor.user.unit if actor.user else None
    return (unit.timezone if unit else None) or default_zone(svc)


async def acting_user(session: AsyncSession, actor: Actor) -> User:
    user = await user_by_telegram_id(session, actor.telegram_id)
    assert user is not None
    return user


def is_coordinator(actor: Actor) -> bool:
    return actor.can(Role.coordinator)


@dataclass
class Scope:
    """Whose meetings a reader sees: None = all (coordinators), else these units."""

    unit_ids: list[int] | None
    rsvp_unit: int | None
    zone_name: str


async def reader_scope(
    session: AsyncSession, update: Update, actor: Actor, svc: Services
) -> Scope:
    chat = update.effective_chat
    room = await duty_room_by_chat(session, chat.id) if chat and in_group(update) else None
    if room is not None:
        chain = await unit_with_ancestors(session, room.unit_id)
        return Scope([u.id for u in chain], room.unit_id,
                     plan.room_zone(room, default_zone(svc)))
    unit_id = actor.user.unit_id if actor.user else None
    zone_name = actor_zone(svc, actor)
    if is_coordinator(actor):
        return Scope(None, unit_id, zone_name)
    if unit_id is None:
        return Scope([], None, zone_name)
    chain = await unit_with_ancestors(session, unit_id)
    return Scope([u.id for u in chain], unit_id, zone_name)


def may_see(scope: Scope, meeting: Meeting) -> bool:
    return scope.unit_ids is None or any(p.unit_id in scope.unit_ids
                                         for p in meeting.participants)


def parse_start(text: str, now: datetime, zone_name: str) -> datetime:
    """A meeting's start typed in the reader's zone: a day without a time is refused
    ("no_time"), never taken as 18:00."""
    return parse_deadline(text, now, zone_name, default_time=None)


def time_problem(tr: Translator, problem: DeadlineError, text: str) -> str:
    code = problem.code if problem.code in TIME_PROBLEMS else "unrecognised"
    return tr(f"meetings.errors.time_{code}", text=escape(text.strip()))


def parse_time(tr: Translator, text: str, now: datetime, zone_name: str) -> datetime:
    """A meeting's start (see parse_start); a polite Refusal when not understood."""
    try:
        return parse_start(text, now, zone_name)
    except DeadlineError as problem:
        raise Refusal(time_problem(tr, problem, text)) from None


TIME_PROBLEMS = {"empty", "unrecognised", "in_the_past", "too_far", "no_time"}
LONGEST_MEETING = timedelta(days=14)
LONGEST_MINUTES = LONGEST_MEETING // timedelta(minutes=1)


def parse_end(text: str, start: datetime, now: datetime, zone_name: str) -> datetime | None:
    """'11:30' (same day as the start), '2h'/'90m' (a duration), or a full date and time."""
    minutes = parse_offset(text)
    if minutes:
        # Past the longest meeting, just past it: got_end says "too long" (10**9 days
        # would not even be a date).
        return start + timedelta(minutes=min(minutes, LONGEST_MINUTES + 1))
    match = re.fullmatch(r"\s*(\d{1,2})[:：](\d{2})\s*", text)
    if match:
        hour, minute = int(match[1]), int(match[2])
        if hour > 23 or minute > 59:
            return None
        local = start.astimezone(time_zone(zone_name))
        return local.replace(hour=hour, minute=minute).astimezone(start.tzinfo)
    try:
        return parse_deadline(text, max(start, now), zone_name)
    except DeadlineError:
        return None


def end_problem(start: datetime, end: datetime) -> str | None:
    """Why a meeting cannot end then (a message key), or None."""
    if end <= start:
        return "meetings.errors.end_before_start"
    if end - start > LONGEST_MEETING:
        return "meetings.errors.too_long_meeting"
    return None


def split_place(text: str) -> tuple[str | None, str | None]:
    """'青海省西宁市 https://meet…' → ('青海省西宁市', 'https://meet…')."""
    link_match = URL.search(text)
    link = link_match.group(0) if link_match else None
    place = URL.sub("", text).strip(" ，,;；|") or None
    return place, link


async def resolve_units(
    session: AsyncSession, tr: Translator, text: str, zone_id: int | None
) -> list[Unit]:
    """Unit names separated by 、 , or spaces ('全部' = the zone's members)."""
    words = [w for w in SPLIT.split(text.strip()) if w]
    if not words:
        raise Refusal(tr("meetings.errors.no_units"))
    if len(words) == 1 and normalize(words[0]) in {normalize(w) for w in ALL}:
        if zone_id is None:
            raise Refusal(tr("meetings.errors.all_needs_zone"))
        ids = await zone_member_ids(session, zone_id)
        return list((await units_by_ids(session, ids)).values())
    found: list[Unit] = []
    unknown, ambiguous = [], []
    for word in words:
        units = await find_units(session, word)  # either script, aliases
        if len(units) == 1:
            if units[0] not in found:
                found.append(units[0])
        elif units:
            ambiguous.append(word)
        else:
            unknown.append(word)
    if unknown:
        raise Refusal(tr("meetings.errors.unknown_units", units=escape(tr.join(unknown))))
    if ambiguous:
        raise Refusal(tr("meetings.errors.ambiguous_units", units=escape(tr.join(ambiguous))))
    return found


def check_text(tr: Translator, text: str, limit: int) -> str:
    text = text.strip()
    if not text:
        raise Refusal(tr("meetings.errors.empty"))
    if len(text) > limit:
        raise Refusal(tr("errors.too_long", limit=limit))
    return text


def calendar_event(tr: Translator, meeting: Meeting, zone_name: str) -> CalendarEvent:
    lines = []
    if meeting.agenda:
        lines.append(tr("meetings.ics.agenda", agenda=meeting.agenda))
    lines.append(tr("meetings.ics.units", units=plan.unit_names(tr, meeting)))
    if meeting.video_link:
        lines.append(meeting.video_link)
    return CalendarEvent(
        uid=meeting_uid(meeting.id),
        summary=f"{meeting.title}（{plan.kind_label(tr, meeting)}）",
        starts_at=meeting.starts_at,
        ends_at=meeting.ends_at,
        timezone=meeting.timezone or zone_name,
        sequence=max(0, (meeting.revision or 1) - 1),
        cancelled=meeting.status is MeetingStatus.cancelled,
        location=meeting.place or meeting.video_link,
        url=meeting.video_link,
        description="\n".join(lines),
        categories=(plan.kind_label(tr, meeting),),
    )


async def send_calendar(
    update: Update, context: Context, tr: Translator, meetings: list[Meeting], zone_name: str,
    filename: str, now: datetime,
) -> None:
    data = calendar_bytes([calendar_event(tr, m, zone_name) for m in meetings], stamp=now,
                          name=tr("meetings.ics.name"))
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_document(
        chat.id, document=data, filename=filename,
        caption=tr("meetings.ics.caption", count=len(meetings)),
    )


# --------------------------------------------------------------------------- /meetings


def list_text(
    tr: Translator, meetings: list[Meeting], scope: Scope, now: datetime, missed: int
) -> str:
    if not meetings:
        lines = [tr("meetings.list.empty")]
    else:
        lines = [tr("meetings.list.head", count=len(meetings))]
        for meeting in meetings:
            zone_name = scope.zone_name
            lines.append(tr("meetings.list.item", id=meeting.id,
                            when=fmt_when(tr, meeting.starts_at, zone_name, now=now),
                            title=escape(meeting.title), kind=plan.kind_label(tr, meeting)))
            details = []
            if meeting.place:
                details.append("📍 " + escape(meeting.place))
            elif meeting.video_link:
                details.append("🔗 " + tr("meetings.list.video"))
            if scope.rsvp_unit is not None:
                line = plan.rsvp_line(tr, meeting, scope.rsvp_unit)
                if line:
                    details.append(line)
            if details:
                lines.append("    " + " · ".join(details))
    if missed:
        lines += ["", tr("meetings.list.missed", count=missed)]
    lines += ["", tr("meetings.list.hint")]
    return "\n".join(lines)


@guarded(Role.officer)
async def meetings_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    args = [a.lower() for a in context.args or []]
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        meetings = await upcoming_meetings(session, now, unit_ids=scope.unit_ids,
                                           until=now + HORIZON, limit=LIST_LIMIT)
        missed = (len(await missed_marks(session, now - timedelta(days=7)))
                  if is_coordinator(actor) else 0)
    if args and args[0] in {"ics", "ical", "calendar", "日历", "日曆"}:
        if not meetings:
            await reply(update, tr("meetings.list.empty"))
            return
        await send_calendar(update, context, tr, meetings, scope.zone_name, "meetings.ics", now)
        return
    buttons = [[(f"📅 #{m.id}", f"{CB}:ics:{m.id}") for m in meetings[i:i + 3]]
               for i in range(0, len(meetings), 3)]
    if meetings:
        buttons.append([(tr("meetings.buttons.ics_all"), f"{CB}:icsall")])
    await reply(update, list_text(tr, meetings, scope, now, missed),
                keyboard(buttons) if meetings else None)


@guarded(Role.officer)
async def ics_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    data = query.data or ""
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        if data == f"{CB}:icsall":
            meetings = await upcoming_meetings(session, now, unit_ids=scope.unit_ids,
                                               until=now + HORIZON, limit=100)
            filename = "meetings.ics"
        else:
            # Forged data (no id, a huge one) finds nothing rather than failing.
            found = re.fullmatch(rf"{CB}:ics:(\d{{1,9}})", data)
            meeting = await get_meeting(session, int(found[1])) if found else None
            meetings = [meeting] if meeting is not None and may_see(scope, meeting) else []
            filename = f"meeting-{meeting.id}.ics" if meetings and meeting else "meeting.ics"
            if meetings and meeting and meeting.status is MeetingStatus.cancelled:
                # A button from before the cancellation: no calendar entry for it.
                await query.answer(tr("meetings.errors.cancelled"), show_alert=True)
                return
    if not meetings:
        await query.answer(tr("meetings.errors.not_found"), show_alert=True)
        return
    await query.answer()
    await send_calendar(update, context, tr, meetings, scope.zone_name, filename, now)


# --------------------------------------------------------------------------- /missed


@guarded(Role.coordinator)
async def missed_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    zone_name = actor_zone(svc, actor)
    async with svc.db.session() as session:
        marks = await missed_marks(session, now - timedelta(days=14))
    if not marks:
        await reply(update, tr("meetings.missed.none"))
        return
    lines = [tr("meetings.missed.head", count=len(marks))]
    for mark in marks:
        detail = mark.detail or {}
        what = detail.get("what", "")
        label = tr(f"meetings.missed.what.{what}") if what in MISSED_KINDS else escape(mark.key)
        subject = escape(str(detail.get("title") or detail.get("room") or detail.get("zone")
                             or detail.get("number") or ""))
        lines.append(tr("meetings.missed.item", due=fmt_when(tr, mark.due_at, zone_name, now=now),
                        what=label, subject=subject))
    await reply(update, "\n".join(lines))


MISSED_KINDS = {"meeting_reminder", "handover", "shift_reminder", "chair_reminder",
                "chair_handover", "request_escalation"}


# --------------------------------------------------------------------------- /meeting


@guarded(Role.officer)
async def meeting_command(update: Update, context: Context, actor: Actor) -> int | None:
    args = context.args or []
    tr = actor.tr
    verb = args[0].lower() if args else ""
    if verb in {"new", "新建", "新增", "创建", "建立"}:
        return await start_new(update, context, actor)
    if verb in {"edit", "修改", "变更", "變更"}:
        await edit_meeting(update, context, actor, args[1:])
    elif verb in {"cancel", "取消"}:
        await cancel_command(update, context, actor, args[1:])
    elif (meeting_id := parse_meeting_id(verb)) is not None:
        await show_meeting(update, context, actor, meeting_id)
    else:
        await reply(update, tr("meetings.manage.usage"))
    # Answered: no later handler (the unknown-command fallback) sees it, and a draft in
    # progress stays where it was.
    raise ApplicationHandlerStop


async def show_meeting(update: Update, context: Context, actor: Actor, meeting_id: int) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        meeting = await get_meeting(session, meeting_id)
        if meeting is None or not may_see(scope, meeting):
            await reply(update, tr("meetings.errors.not_found"))
            return
        rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    parts = [plan.card(tr, meeting, scope.zone_name, now=now)]
    if meeting.status is MeetingStatus.cancelled:
        parts.insert(0, tr("meetings.tally.cancelled"))
    parts.append(tr("meetings.show.reminders",
                    offsets=tr.join(fmt_minutes(tr, o) for o in meeting.reminder_offsets or [])))
    if is_coordinator(actor):
        parts.append("")
        parts.append(plan.tally_text(tr, meeting, rooms, scope.zone_name, now=now))
    elif scope.rsvp_unit is not None:
        line = plan.rsvp_line(tr, meeting, scope.rsvp_unit)
        if line:
            parts.append(line)
    cancelled = meeting.status is MeetingStatus.cancelled
    rows = [] if cancelled else [[(tr("meetings.buttons.ics"), f"{CB}:ics:{meeting.id}")]]
    await reply(update, "\n".join(parts), keyboard(rows) if rows else None)


def _require_coordinator(actor: Actor) -> None:
    if not is_coordinator(actor):
        raise Refusal(actor.tr("errors.not_allowed"))


def parse_meeting_id(text: str | None) -> int | None:
    """`12` or `#12`; None for anything else, including ids no database row can have
    (a forged 30-digit id must not reach PostgreSQL's integer column)."""
    match = re.fullmatch(r"#?([0-9]{1,9})", text or "")
    return int(match[1]) if match else None


def _meeting_id(tr: Translator, text: str | None) -> int:
    meeting_id = parse_meeting_id(text)
    if meeting_id is None:
        raise Refusal(tr("meetings.manage.usage"))
    return meeting_id


async def participant_rooms(
    session: AsyncSession, svc: Services, meeting: Meeting
) -> tuple[list[tuple[MeetingParticipant, DutyRoom, str]], list[str]]:
    """(participant, its duty room, the zone its times are shown in) for every
    participant with a room, and the names of those without one."""
    rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    reachable, unreachable = [], []
    for participant in meeting.participants:
        room = rooms.get(participant.unit_id)
        if room is None or room.chat_id is None:
            unreachable.append(participant.unit.short_name or participant.unit.name)
            continue
        zone_name = plan.room_zone(room, plan.meeting_zone(meeting, default_zone(svc)))
        reachable.append((participant, room, zone_name))
    return reachable, unreachable


async def announce_change(
    session: AsyncSession, svc: Services, meeting: Meeting, changed: dict[str, Any],
    removed_units: list[int], now: datetime,
) -> list[str]:
    """Change notice to every participant's room (and a farewell to removed units)."""
    tr = Translator(svc.settings.default_language)
    names = tr.join(tr(f"meetings.fields.{name}") for name in changed if name != "zone_id")
    key = f"meeting:{meeting.id}:rev{meeting.revision}"
    reachable, unreachable = await participant_rooms(session, svc, meeting)
    for participant, room, zone_name in reachable:
        text = plan.room_message(tr, meeting, participant.unit_id, zone_name, "c", now=now)
        text += "\n" + tr("meetings.notify.what_changed", fields=names)
        await outbox.enqueue(session, chat_id=room.chat_id, kind="meeting_change", text=text,
                             payload={**plan.HTML,
                                      "reply_markup": plan.rsvp_keyboard(tr, meeting.id, "c")},
                             dedup_key=f"{key}:room{room.id}", now=now)
    for unit_id, room in (await rooms_for_units(session, removed_units)).items():
        zone_name = plan.room_zone(room, plan.meeting_zone(meeting, default_zone(svc)))
        await outbox.enqueue(
            session, chat_id=room.chat_id, kind="meeting_change",
            text=tr("meetings.notify.removed", title=escape(meeting.title),
                    when=fmt_span(tr, meeting.starts_at, meeting.ends_at, zone_name, now=now)),
            payload=plan.HTML, dedup_key=f"{key}:removed:unit{unit_id}", now=now)
    return unreachable


async def edit_meeting(update: Update, context: Context, actor: Actor, args: list[str]) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    try:
        _require_coordinator(actor)
        if len(args) < 3:
            raise Refusal(tr("meetings.edit.usage"))
        meeting_id = _meeting_id(tr, args[0])
        field = EDIT_FIELDS.get(args[1].lower())
        if field is None:
            raise Refusal(tr("meetings.edit.unknown_field", field=escape(args[1])))
        value = " ".join(args[2:]).strip()
        async with svc.db.session() as session:
            meeting = await get_meeting(session, meeting_id)
            if meeting is None:
                raise Refusal(tr("meetings.errors.not_found"))
            if meeting.status is MeetingStatus.cancelled:
                raise Refusal(tr("meetings.errors.cancelled"))
            zone_name = plan.meeting_zone(meeting, actor_zone(svc, actor))
            changes: dict[str, Any] = {}
            unit_ids = None
            if field == "title":
                changes["title"] = check_text(tr, value, TITLE_LIMIT)
            elif field == "kind":
                kind = parse_meeting_kind(value)
                if kind is None:
                    raise Refusal(tr("meetings.errors.unknown_kind", kind=escape(value)))
                changes["kind"] = kind
            elif field == "start":
                start = parse_time(tr, value, now, zone_name)
                changes["starts_at"] = start
                changes["ends_at"] = start + (meeting.ends_at - meeting.starts_at)
            elif field == "end":
                end = parse_end(value, meeting.starts_at, now, zone_name)
                if end is None:
                    raise Refusal(tr("meetings.errors.time_unrecognised", text=escape(value)))
                if (problem := end_problem(meeting.starts_at, end)) is not None:
                    raise Refusal(tr(problem))
                changes["ends_at"] = end
            elif field == "place":
                changes["place"] = None if value.lower() in SKIP else check_text(
                    tr, value, PLACE_LIMIT)
            elif field == "link":
                if value.lower() in SKIP:
                    changes["video_link"] = None
                elif URL.fullmatch(value):
                    changes["video_link"] = value
                else:
                    raise Refusal(tr("meetings.errors.bad_link"))
            elif field == "agenda":
                changes["agenda"] = None if value.lower() in SKIP else check_text(
                    tr, value, AGENDA_LIMIT)
            elif field == "units":
                unit_ids = [u.id for u in await resolve_units(session, tr, value,
                                                              meeting.zone_id)]
            elif field == "reminders":
                offsets = parse_offsets(value, maximum=MAX_OFFSET_MINUTES)
                if offsets is None:
                    raise Refusal(tr("meetings.errors.bad_offsets"))
                changes["reminder_offsets"] = offsets
            before_units = [p.unit_id for p in meeting.participants]
            user = await acting_user(session, actor)
            changed = await update_meeting(session, meeting, actor=user, unit_ids=unit_ids,
                                           **changes)
            if not changed:
                raise Refusal(tr("meetings.edit.unchanged"))
            meeting = await get_meeting(session, meeting_id)
            assert meeting is not None
            await plan.skip_past_reminders(session, meeting, now)
            removed = [u for u in before_units if u not in {p.unit_id for p in
                                                            meeting.participants}]
            unreachable = await announce_change(session, svc, meeting, changed, removed, now)
            await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                                  default_language=svc.settings.default_language,
                                  edit_key=f"meeting:{meeting.id}:tally:rev{meeting.revision}")
            text = tr("meetings.edit.done", id=meeting.id,
                      fields=tr.join(tr(f"meetings.fields.{n}") for n in changed))
            if unreachable:
                text += "\n" + tr("meetings.created.unreachable",
                                  units=escape(tr.join(unreachable)))
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await reply(update, text)


async def cancel_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    """/meeting cancel ID [REASON]: asks first, naming the meeting and its time."""
    svc, tr, now = services(context), actor.tr, services(context).now()
    try:
        _require_coordinator(actor)
        meeting_id = _meeting_id(tr, args[0] if args else None)
        reason = " ".join(args[1:]).strip() or None
        if reason and len(reason) > PLACE_LIMIT:
            raise Refusal(tr("errors.too_long", limit=PLACE_LIMIT))
        async with svc.db.session() as session:
            meeting = await get_meeting(session, meeting_id)
            if meeting is None:
                raise Refusal(tr("meetings.errors.not_found"))
            if meeting.status is MeetingStatus.cancelled:
                raise Refusal(tr("meetings.errors.cancelled"))
            question = tr("meetings.cancel.confirm", id=meeting.id, title=escape(meeting.title),
                          when=fmt_span(tr, meeting.starts_at, meeting.ends_at,
                                        plan.meeting_zone(meeting, actor_zone(svc, actor)),
                                        now=now))
    except Refusal as refusal:
        await reply(update, refusal.text)
        return
    token = offer_confirmation(context, CANCEL, meeting_id, extra={"reason": reason})
    await reply(update, question, keyboard([[
        (tr("meetings.buttons.cancel_yes"), f"{CB}:mc:y:{token}"),
        (tr("meetings.buttons.cancel_no"), f"{CB}:mc:n:{token}")]]))


@guarded(Role.officer)
async def cancel_pressed(update: Update, context: Context, actor: Actor) -> None:
    """The answer to /meeting cancel's question, checked against the meeting as it is now."""
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    answer, _, token = (query.data or "").removeprefix(f"{CB}:mc:").partition(":")
    if not await confirmation_open(update, context, tr, token, CANCEL):
        return
    await query.answer()
    if answer != "y":
        close_confirmation(context, token, CANCELLED)
        await query.edit_message_text(tr("meetings.cancel.kept"))
        return
    entry = confirmation(context, token)
    close_confirmation(context, token, USED)
    try:
        text = await _cancel_meeting(svc, actor, int(entry["subject"]),
                                     entry["extra"].get("reason"))
    except Refusal as refusal:
        await query.edit_message_text(refusal.text)
        return
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.edit_message_text(text)


async def _cancel_meeting(svc: Services, actor: Actor, meeting_id: int,
                          reason: str | None) -> str:
    """Cancel, tell every participant's duty room, update the tally; what to answer."""
    tr, now = actor.tr, svc.now()
    _require_coordinator(actor)
    async with svc.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        if meeting is None:
            raise Refusal(tr("meetings.errors.not_found"))
        user = await acting_user(session, actor)
        if not await cancel_meeting(session, meeting, actor=user, reason=reason):
            raise Refusal(tr("meetings.errors.cancelled"))
        room_tr = Translator(svc.settings.default_language)
        reachable, unreachable = await participant_rooms(session, svc, meeting)
        for _, room, zone_name in reachable:
            text = room_tr("meetings.notify.cancelled", title=escape(meeting.title),
                           when=fmt_span(room_tr, meeting.starts_at, meeting.ends_at,
                                         zone_name, now=now))
            if reason:
                text += "\n" + room_tr("meetings.notify.reason", reason=escape(reason))
            await outbox.enqueue(session, chat_id=room.chat_id, kind="meeting_cancel",
                                 text=text, payload=plan.HTML,
                                 dedup_key=f"meeting:{meeting.id}:cancel:room{room.id}",
                                 now=now)
        await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                              default_language=svc.settings.default_language,
                              edit_key=f"meeting:{meeting.id}:tally:cancel")
        text = tr("meetings.cancel.done", id=meeting.id, title=escape(meeting.title))
        if unreachable:
            text += "\n" + tr("meetings.created.unreachable",
                              units=escape(tr.join(unreachable)))
    return text


# --------------------------------------------------------------------------- /meeting new


@dataclass
class MeetingDraft(Draft):
    """A new meeting as the coordinator answers (times as ISO instants)."""

    zone_name: str = ""
    title: str | None = None
    kind: str | None = None
    zone_chosen: bool = False
    zone_id: int | None = None
    start_day: str | None = None  # a day typed without a time: its time comes next
    starts_at: str | None = None
    ends_at: str | None = None
    place_done: bool = False
    place: str | None = None
    video_link: str | None = None
    unit_ids: list[int] = field(default_factory=list)
    agenda_done: bool = False
    agenda: str | None = None


Turn = flow.Turn[MeetingDraft]


async def ask_title(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_title"))


async def ask_kind(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("meetings.new.ask_kind"), [
        [(tr(f"meetings.kinds.{k.value}"), f"{CB}:new:kind:{k.value}") for k in kinds]
        for kinds in (list(MeetingKind)[:3], list(MeetingKind)[3:])])


async def ask_zone(turn: Turn) -> flow.Prompt:
    actor = turn.actor
    async with turn.svc.db.session() as session:
        own = await zones_of_unit(session, actor.user.unit_id) if actor.user and \
            actor.user.unit_id else []
        zones = own or await all_zones(session)
    rows = [[(z.short_name or z.name, f"{CB}:new:zone:{z.id}")] for z in zones[:6]]
    rows.append([(turn.tr("meetings.new.no_zone"), f"{CB}:new:zone:0")])
    return flow.Prompt(turn.tr("meetings.new.ask_zone"), rows)


async def ask_start(turn: Turn) -> flow.Prompt:
    zone_name = escape(turn.draft.zone_name)
    if turn.draft.start_day:
        return flow.Prompt(turn.tr("meetings.new.ask_start_time",
                                   day=escape(turn.draft.start_day), zone=zone_name))
    return flow.Prompt(turn.tr("meetings.new.ask_start", zone=zone_name))


async def ask_end(turn: Turn) -> flow.Prompt:
    assert turn.draft.starts_at is not None
    start = datetime.fromisoformat(turn.draft.starts_at)
    return flow.Prompt(turn.tr("meetings.new.ask_end", start=fmt_when(
        turn.tr, start, turn.draft.zone_name, now=turn.svc.now())))


async def ask_place(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_place"))


async def ask_units(turn: Turn) -> flow.Prompt:
    hint = turn.tr("meetings.new.all_hint") if turn.draft.zone_id else ""
    return flow.Prompt(turn.tr("meetings.new.ask_units", hint=hint))


async def ask_agenda(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_agenda"))


async def ask_confirm(turn: Turn) -> flow.Prompt:
    tr, token = turn.tr, turn.draft.token
    return flow.Prompt(await preview_text(turn.svc, tr, turn.draft), [
        [(tr("meetings.buttons.confirm"), f"{CB}:new:ok:{token}"),
         (tr("meetings.buttons.discard"), f"{CB}:new:no:{token}")]])


NEW_MEETING = flow.GuidedFlow(
    name="meeting_new", draft_key="meeting_draft", draft_type=MeetingDraft,
    kind="meeting_create", callback=f"{CB}:new", role=Role.coordinator, ttl=DRAFT_TTL,
    steps=[
        flow.Step(TITLE, lambda d: d.title is not None, ask_title),
        flow.Step(KIND, lambda d: d.kind is not None, ask_kind),
        flow.Step(ZONE, lambda d: d.zone_chosen, ask_zone),
        flow.Step(START, lambda d: d.starts_at is not None, ask_start),
        flow.Step(END, lambda d: d.ends_at is not None, ask_end),
        flow.Step(PLACE, lambda d: d.place_done, ask_place),
        flow.Step(UNITS, lambda d: bool(d.unit_ids), ask_units),
        flow.Step(AGENDA, lambda d: d.agenda_done, ask_agenda),
    ],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    expired_key="meetings.new.expired", cancelled_key="meetings.new.discarded",
    quit_key="meetings.buttons.discard", also_closes=(PENDING_DELEGATE,),
)


async def start_new(update: Update, context: Context, actor: Actor) -> int:
    if not is_coordinator(actor):
        await reply(update, actor.tr("errors.not_allowed"))
        raise ApplicationHandlerStop
    if in_group(update):
        await reply(update, actor.tr("errors.private_only"))
        raise ApplicationHandlerStop
    turn = NEW_MEETING.start(update, context, actor,
                             zone_name=actor_zone(services(context), actor))
    return await turn.advance()


def _text(update: Update) -> str:
    return message_text(update).strip()


async def got_title(turn: Turn) -> int:
    try:
        turn.draft.title = check_text(turn.tr, _text(turn.update), TITLE_LIMIT)
    except Refusal as refusal:
        return await turn.stay(TITLE, refusal.text)
    return await turn.advance()


async def got_kind(turn: Turn) -> int:
    query, tr = turn.update.callback_query, turn.tr
    assert query is not None
    value = turn.query_data.rsplit(":", 1)[1]
    if value not in MeetingKind.__members__:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        raise ApplicationHandlerStop(KIND)
    turn.draft.kind = value
    await query.answer()
    await edit_query_message(turn.update, tr("meetings.new.kind_chosen",
                                             kind=tr(f"meetings.kinds.{value}")))
    return await turn.advance()


async def got_zone(turn: Turn) -> int:
    assert turn.update.callback_query is not None
    # The same bounds as any id in button data.
    turn.draft.zone_id = parse_meeting_id(turn.query_data.rsplit(":", 1)[1]) or None
    turn.draft.zone_chosen = True
    await turn.update.callback_query.answer()
    return await turn.advance()


async def got_start(turn: Turn) -> int:
    draft, text, now = turn.draft, _text(turn.update), turn.svc.now()
    day, start = draft.start_day, None
    draft.start_day = None
    if day:  # a day came without a time; this should be its time
        with contextlib.suppress(DeadlineError):
            start = parse_start(f"{day} {text}", now, draft.zone_name)
    if start is None:
        try:
            start = parse_start(text, now, draft.zone_name)
        except DeadlineError as problem:
            if problem.code != "no_time":
                return await turn.stay(START, time_problem(turn.tr, problem, text))
            draft.start_day = text.strip()
            return await turn.ask(START)
    draft.starts_at = start.isoformat()
    return await turn.advance()


async def got_end(turn: Turn) -> int:
    draft, text, tr = turn.draft, _text(turn.update), turn.tr
    assert draft.starts_at is not None
    start = datetime.fromisoformat(draft.starts_at)
    end = parse_end(text, start, turn.svc.now(), draft.zone_name)
    if end is None:
        return await turn.stay(END, tr("meetings.errors.time_unrecognised", text=escape(text)))
    if (problem := end_problem(start, end)) is not None:
        return await turn.stay(END, tr(problem))
    draft.ends_at = end.isoformat()
    return await turn.advance()


async def got_place(turn: Turn) -> int:
    text = _text(turn.update)
    if text.lower() not in SKIP:
        if len(text) > PLACE_LIMIT:
            return await turn.stay(PLACE, turn.tr("errors.too_long", limit=PLACE_LIMIT))
        turn.draft.place, turn.draft.video_link = split_place(text)
    turn.draft.place_done = True
    return await turn.advance()


async def got_units(turn: Turn) -> int:
    try:
        async with turn.svc.db.session() as session:
            units = await resolve_units(session, turn.tr, _text(turn.update),
                                        turn.draft.zone_id)
    except Refusal as refusal:
        return await turn.stay(UNITS, refusal.text)
    turn.draft.unit_ids = [u.id for u in units]
    return await turn.advance()


async def got_agenda(turn: Turn) -> int:
    text = _text(turn.update)
    if text.lower() not in SKIP:
        if len(text) > AGENDA_LIMIT:
            return await turn.stay(AGENDA, turn.tr("errors.too_long", limit=AGENDA_LIMIT))
        turn.draft.agenda = text
    turn.draft.agenda_done = True
    return await turn.advance()


async def preview_text(svc: Services, tr: Translator, draft: MeetingDraft) -> str:
    assert draft.kind is not None and draft.title is not None
    assert draft.starts_at is not None and draft.ends_at is not None
    async with svc.db.session() as session:
        units = await units_by_ids(session, draft.unit_ids)
        rooms = await rooms_for_units(session, draft.unit_ids)
    meeting = Meeting(
        id=0, kind=MeetingKind(draft.kind), title=draft.title,
        starts_at=datetime.fromisoformat(draft.starts_at),
        ends_at=datetime.fromisoformat(draft.ends_at), place=draft.place,
        video_link=draft.video_link, agenda=draft.agenda, participants=[],
    )
    names = tr.join(escape(tr.name(units[u].short_name or units[u].name))
                    for u in draft.unit_ids)
    lines = [tr("meetings.new.preview"),
             plan.card(tr, meeting, draft.zone_name, now=svc.now()).replace("#0 ", ""),
             tr("meetings.card.units", units=names),
             tr("meetings.show.reminders", offsets=tr.join(
                 fmt_minutes(tr, o) for o in plan_offsets()))]
    missing = [units[u].short_name or units[u].name for u in draft.unit_ids if u not in rooms]
    if missing:
        lines.append(tr("meetings.created.unreachable", units=escape(tr.join(missing))))
    return "\n".join(lines)


def plan_offsets() -> list[int]:
    return list(DEFAULT_MEETING_OFFSETS)


async def got_confirm(turn: Turn) -> int:
    query, tr, svc, draft = turn.update.callback_query, turn.tr, turn.svc, turn.draft
    assert query is not None
    now = svc.now()
    verb, _, token = turn.query_data.removeprefix(f"{CB}:new:").partition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, NEW_MEETING.kind):
        raise ApplicationHandlerStop  # the draft in progress, if any, stays as it is
    if verb == "no":
        NEW_MEETING.discard(turn.context, everything=False)
        await query.answer()
        await edit_query_message(turn.update, tr("meetings.new.discarded"))
        return await turn.end()
    key = draft.id
    if done := await svc.db.read(lambda session: meeting_by_submission(session, key)):
        return await _already_created(turn, *done)
    assert draft.kind is not None and draft.title is not None
    assert draft.starts_at is not None and draft.ends_at is not None
    starts_at, ends_at = (datetime.fromisoformat(draft.starts_at),
                          datetime.fromisoformat(draft.ends_at))
    if starts_at <= now:
        await query.answer(tr("meetings.errors.time_in_the_past", text=fmt_when(
            tr, starts_at, draft.zone_name, now=now)), show_alert=True)
        draft.starts_at = draft.ends_at = None
        return await turn.advance()
    kind, title = MeetingKind(draft.kind), draft.title

    async def create(session: AsyncSession) -> tuple[int, str, list[str]]:
        user = await acting_user(session, turn.actor)
        meeting = await create_meeting(
            session, kind=kind, title=title, starts_at=starts_at, ends_at=ends_at,
            timezone=draft.zone_name, unit_ids=draft.unit_ids, actor=user,
            zone_id=draft.zone_id, place=draft.place, video_link=draft.video_link,
            agenda=draft.agenda, offsets=plan_offsets(), now=now, submission_key=key,
        )
        await plan.skip_past_reminders(session, meeting, now)
        _, unreachable = await plan.notify_rooms(
            session, meeting, context="i", key=f"meeting:{meeting.id}:invite", now=now,
            default_zone=default_zone(svc), language=svc.settings.default_language)
        if unreachable:
            await plan.warn_unreachable(session, meeting, unreachable,
                                        key=f"meeting:{meeting.id}:invite", now=now,
                                        default_language=svc.settings.default_language,
                                        what="invitation")
        await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                              default_language=svc.settings.default_language)
        return meeting.id, meeting.title, unreachable

    try:
        meeting_id, title, unreachable = await NEW_MEETING.submit(turn, create)
    except AlreadySubmitted:  # the same draft confirmed at the same time elsewhere
        done = await svc.db.read(lambda session: meeting_by_submission(session, key))
        assert done is not None
        return await _already_created(turn, *done)
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.answer()
    text = tr("meetings.created.done", id=meeting_id, title=escape(title),
              offsets=tr.join(fmt_minutes(tr, o) for o in plan_offsets()))
    if unreachable:
        text += "\n" + tr("meetings.created.unreachable", units=escape(tr.join(unreachable)))
    await edit_query_message(turn.update, text)
    return await turn.end()


async def _already_created(turn: Turn, meeting_id: int, title: str) -> int:
    """A draft confirmed again after it was stored (a crash before the flow's end was
    saved): the meeting it made is named; nothing is stored or sent again."""
    assert turn.update.callback_query is not None
    end_draft(turn.context, turn.draft.token, NEW_MEETING.draft_key)
    await turn.update.callback_query.answer()
    await reply(turn.update, turn.tr("meetings.created.already", id=meeting_id,
                                     title=escape(title)))
    return await turn.end()


# --------------------------------------------------------------------------- RSVP


@dataclass(frozen=True)
class Press:
    meeting_id: int
    answer: Rsvp
    context: str


def parse_press(data: str | None) -> Press | None:
    match = re.fullmatch(rf"{CB}:r:([0-9]{{1,9}}):([adg]):(i|c|r[0-9]{{1,9}})", data or "")
    if not match:
        return None
    return Press(int(match[1]), plan.RSVP_CODES[match[2]], match[3])


async def answering_unit(
    session: AsyncSession, update: Update, actor: Actor
) -> tuple[int | None, Any]:
    """The unit an RSVP answers for: the duty room's unit in a group, else the reader's."""
    chat = update.effective_chat
    if chat is not None and in_group(update):
        room = await duty_room_by_chat(session, chat.id)
        return (room.unit_id, room) if room else (None, None)
    return (actor.user.unit_id if actor.user else None), None


async def record_rsvp(
    update: Update, context: Context, actor: Actor, press: Press, delegate: str | None
) -> tuple[str | None, str | None]:
    """Store the answer; returns (alert text, re-rendered text for the pressed message)."""
    svc, tr, now = services(context), actor.tr, services(context).now()
    chat = update.effective_chat
    async with svc.db.session() as session:
        unit_id, room = await answering_unit(session, update, actor)
        meeting = await get_meeting(session, press.meeting_id)
        if meeting is None or unit_id is None:
            return tr("meetings.errors.not_found"), None
        if meeting.status is MeetingStatus.cancelled:
            return tr("meetings.errors.cancelled"), None
        if meeting.ends_at <= now:
            return tr("meetings.errors.over"), None
        user = await acting_user(session, actor)
        participant = await set_rsvp(session, meeting, unit_id, press.answer, actor=user,
                                     now=now, delegate=delegate,
                                     chat_id=chat.id if chat else None)
        if participant is None:
            return tr("meetings.errors.not_participant"), None
        await session.flush()
        await plan.send_tally(
            session, meeting, now=now, default_zone=default_zone(svc),
            default_language=svc.settings.default_language,
            edit_key=f"meeting:{meeting.id}:tally:u{unit_id}:{now.timestamp():.6f}")
        zone_name = plan.room_zone(room, plan.meeting_zone(meeting, default_zone(svc))) \
            if room else plan.meeting_zone(meeting, actor_zone(svc, actor))
        room_tr = Translator(svc.settings.default_language) if room else tr
        text = plan.room_message(room_tr, meeting, unit_id, zone_name, press.context, now=now)
        answer = tr(f"meetings.rsvp.{press.answer.value}")
        if delegate:
            answer += f"（{escape(delegate)}）"
    svc.wake_delivery()
    return tr("meetings.rsvp.recorded", answer=answer), text


async def _edit_pressed(update: Update, context: Context, text: str, press: Press) -> None:
    svc = services(context)
    tr = Translator(svc.settings.default_language)
    raw = plan.rsvp_keyboard(tr, press.meeting_id, press.context)
    rows = [[(b["text"], b["callback_data"]) for b in row] for row in raw["inline_keyboard"]]
    # Unchanged, or no longer editable: the answer is recorded anyway.
    await edit_query_message(update, text, keyboard(rows), courtesy=True)


@guarded(Role.officer)
async def rsvp_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    press = parse_press(query.data)
    if press is None or press.answer is Rsvp.delegate:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    alert, text = await record_rsvp(update, context, actor, press, None)
    await query.answer(alert, show_alert=text is None)
    if text is not None:
        await _edit_pressed(update, context, text, press)


@guarded(Role.officer)
async def delegate_pressed(update: Update, context: Context, actor: Actor) -> int | None:
    query = update.callback_query
    assert query is not None
    press = parse_press(query.data)
    tr, svc = actor.tr, services(context)
    if press is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return ConversationHandler.END
    async with svc.db.session() as session:
        unit_id, _ = await answering_unit(session, update, actor)
        meeting = await get_meeting(session, press.meeting_id)
        problem = None
        if meeting is None or unit_id is None:
            problem = tr("meetings.errors.not_found")
        elif meeting.status is MeetingStatus.cancelled:
            problem = tr("meetings.errors.cancelled")
        elif all(p.unit_id != unit_id for p in meeting.participants):
            problem = tr("meetings.errors.not_participant")
    if problem:
        await query.answer(problem, show_alert=True)
        return ConversationHandler.END
    assert context.user_data is not None
    message = query.message
    context.user_data[PENDING_DELEGATE] = {
        "meeting_id": press.meeting_id, "context": press.context,
        "message": [message.chat.id, message.message_id] if message else None,
    }
    await query.answer()
    user = update.effective_user
    # A mention plus a selective ForceReply: the officer's app opens a reply to this prompt,
    # which reaches the bot even when group privacy mode hides ordinary messages.
    name = f'<a href="tg://user?id={user.id}">{escape(user.full_name)}</a>' if user else ""
    prompt = await reply(update, tr("meetings.rsvp.ask_delegate", name=name),
                         ForceReply(selective=True))  # type: ignore[arg-type]
    chat = update.effective_chat
    if prompt is not None and chat is not None:
        # A reply to this prompt once it is answered, cancelled or replaced says so.
        context.user_data[PENDING_DELEGATE]["token"] = offer_confirmation(
            context, DELEGATE_KIND, ref=prompt_ref(chat.id, prompt))
    return DELEGATE


@guarded(Role.officer)
async def delegate_named(update: Update, context: Context, actor: Actor) -> int:
    tr = actor.tr
    assert context.user_data is not None
    pending = context.user_data.get(PENDING_DELEGATE)
    name = _text(update)
    if not pending:
        return await handled(ConversationHandler.END)
    if not name or len(name) > 60:
        await reply(update, tr("meetings.rsvp.bad_delegate"))
        return await handled(DELEGATE)
    press = Press(pending["meeting_id"], Rsvp.delegate, pending["context"])
    alert, text = await record_rsvp(update, context, actor, press, name)
    close_confirmation(context, pending.get("token") or "", USED)
    context.user_data.pop(PENDING_DELEGATE, None)
    await reply(update, alert or "")
    if text is not None and pending.get("message"):
        chat_id, message_id = pending["message"]
        svc = services(context)
        raw = plan.rsvp_keyboard(Translator(svc.settings.default_language), press.meeting_id,
                                 press.context)
        rows = [[(b["text"], b["callback_data"]) for b in row] for row in raw["inline_keyboard"]]
        with contextlib.suppress(BadRequest):
            await context.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id,
                                                reply_markup=keyboard(rows))
    return await handled(ConversationHandler.END)


@guarded(Role.coordinator)
async def tally_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    meeting_id = int((query.data or "0").rsplit(":", 1)[1])
    async with svc.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        if meeting is None:
            await query.answer(tr("meetings.errors.not_found"), show_alert=True)
            return
        rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    zone_name = plan.meeting_zone(meeting, actor_zone(svc, actor))
    await query.answer()
    markup = keyboard([[(tr("meetings.buttons.refresh"), f"{CB}:t:{meeting_id}")]])
    await edit_query_message(update, plan.tally_text(tr, meeting, rooms, zone_name, now=now),
                             markup, courtesy=True)


# --------------------------------------------------------------------------- wiring


def register(application: Application) -> None:
    svc: Services | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None and svc.scheduler is not None:
        # SCHEDULE_GRACE_MINUTES: how late a catch-up may still send (marked late).
        svc.scheduler.grace = timedelta(minutes=svc.settings.schedule_grace_minutes)
    with warnings.catch_warnings():
        # Buttons inside a per-chat conversation are intended (not tracked per message).
        warnings.simplefilter("ignore", PTBUserWarning)
        text = filters.TEXT & ~filters.COMMAND
        on = NEW_MEETING.on
        new_flow = NEW_MEETING.conversation(
            entry_points=[CommandHandler("meeting", meeting_command)],
            states={
                TITLE: [MessageHandler(text, on(got_title))],
                KIND: [CallbackQueryHandler(on(got_kind), pattern=rf"^{CB}:new:kind:")],
                ZONE: [CallbackQueryHandler(on(got_zone), pattern=rf"^{CB}:new:zone:")],
                START: [MessageHandler(text, on(got_start))],
                END: [MessageHandler(text, on(got_end))],
                PLACE: [MessageHandler(text, on(got_place))],
                UNITS: [MessageHandler(text, on(got_units))],
                AGENDA: [MessageHandler(text, on(got_agenda))],
                CONFIRM: [CallbackQueryHandler(on(got_confirm),
                                               pattern=rf"^{CB}:new:(ok|no)(:[0-9a-f]{{8}})?$")],
            },
        )
        delegate_flow = ConversationHandler(
            entry_points=[CallbackQueryHandler(delegate_pressed, pattern=rf"^{CB}:r:\d+:g:")],
            states={DELEGATE: [MessageHandler(text, delegate_named)]},
            fallbacks=[CommandHandler("cancel", NEW_MEETING.quit)],
            allow_reentry=True,
            name="meeting_delegate",
            persistent=True,
        )
    # Group -1: a typed answer inside these flows must not also reach plain-text features.
    application.add_handler(new_flow, group=-1)
    application.add_handler(delegate_flow, group=-1)
    application.add_handler(CommandHandler("meetings", meetings_command))
    application.add_handler(CommandHandler("missed", missed_command))
    application.add_handler(CallbackQueryHandler(rsvp_pressed, pattern=rf"^{CB}:r:\d+:[ad]:"))
    application.add_handler(CallbackQueryHandler(ics_pressed, pattern=rf"^{CB}:ics"))
    application.add_handler(CallbackQueryHandler(tally_pressed, pattern=rf"^{CB}:t:[0-9]{{1,9}}$"))
    application.add_handler(CallbackQueryHandler(NEW_MEETING.stale_button,
                                                 pattern=rf"^{CB}:new:"))
    application.add_handler(CallbackQueryHandler(cancel_pressed, pattern=rf"^{CB}:mc:[yn]:"))
