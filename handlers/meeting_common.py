"""What the meeting modules share: limits, the reader's zone and scope, parsing a
meeting's times, place and units, and the .ics export."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.plans import meetings as plan
from bot.services import Actor
from bot.services import Services
from core.clock import time_zone
from core.enums import MeetingStatus
from core.enums import Role
from core.meetings import parse_offset
from core.normalize import normalize
from core.timeparse import DeadlineError
from core.timeparse import parse_deadline
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import in_group
from handlers.common import message_text
from i18n import Translator
from storage.access import duty_room_by_chat
from storage.access import user_by_telegram_id
from storage.models import Meeting
from storage.models import Unit
from storage.models import User
from storage.schedules import unit_with_ancestors
from storage.schedules import units_by_ids
from storage.schedules import zone_member_ids
from storage.units import find_units
from views.calendar import CalendarEvent
from views.calendar import calendar_bytes
from views.calendar import meeting_uid

CB = plan.CALLBACK
TITLE_LIMIT = 120
PLACE_LIMIT = 200
AGENDA_LIMIT = 1500
MAX_OFFSET_MINUTES = int(plan.MAX_OFFSET.total_seconds() // 60)
URL = re.compile(r"https?://\S+", re.IGNORECASE)
SPLIT = re.compile(r"[、,，;；\s]+")
SKIP = {"-", "—", "无", "無", "跳过", "跳過", "skip", "none"}
ALL = {"全部", "all", "全体", "全體"}

# user_data key of a pending delegate's name prompt (meeting_rsvp.py); a new meeting's
# draft closes it.
PENDING_DELEGATE = "meeting_delegate"


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


async def invited_units(
    session: AsyncSession, tr: Translator, text: str, zone_id: int | None
) -> list[Unit]:
    """The units a meeting invites: names separated by 、 , or spaces, each naming
    exactly one unit (find_units), or '全部' (the zone's members)."""
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
        units = await find_units(session, word)
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


def typed_text(update: Update) -> str:
    """The message's text, without surrounding spaces."""
    return message_text(update).strip()


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


def parse_meeting_id(text: str | None) -> int | None:
    """`12` or `#12`; None for anything else, including ids no database row can have
    (a forged 30-digit id must not reach PostgreSQL's integer column)."""
    match = re.fullmatch(r"#?([0-9]{1,9})", text or "")
    return int(match[1]) if match else None
