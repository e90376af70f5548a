"""Meetings as iCalendar (RFC 5545) files that calendar apps import.

Each meeting is one VEVENT with a stable UID (so importing an updated file updates the
event instead of adding a second one), SEQUENCE from the meeting's revision, STATUS
CANCELLED for a cancelled meeting, and local start/end times with their TZID and the
matching VTIMEZONE, so a meeting in Asia/Urumqi shows at the right hour anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from core.clock import DEFAULT_ZONE, time_zone
from core.enums import MeetingKind
from core.normalize import normalize

PRODID = "-//Liaison Desk//警务协作值班助手//ZH"
UID_DOMAIN = "liaison-desk"


@dataclass(frozen=True)
class CalendarEvent:
    """What an event shows; built from a Meeting by the caller (labels already translated)."""

    uid: str
    summary: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    sequence: int = 0
    cancelled: bool = False
    location: str | None = None
    url: str | None = None
    description: str = ""
    categories: Sequence[str] = field(default_factory=tuple)


def meeting_uid(meeting_id: int) -> str:
    return f"meeting-{meeting_id}@{UID_DOMAIN}"


def _event(item: CalendarEvent, stamp: datetime) -> Event:
    zone = ZoneInfo(item.timezone)
    event = Event()
    event.add("uid", item.uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("sequence", item.sequence)
    event.add("summary", item.summary)
    event.add("dtstart", item.starts_at.astimezone(zone))
    event.add("dtend", item.ends_at.astimezone(zone))
    event.add("status", "CANCELLED" if item.cancelled else "CONFIRMED")
    if item.location:
        event.add("location", item.location)
    if item.url:
        event.add("url", item.url)
    if item.description:
        event.add("description", item.description)
    if item.categories:
        event.add("categories", list(item.categories))
    return event


def calendar_bytes(
    events: Iterable[CalendarEvent], *, stamp: datetime, name: str | None = None
) -> bytes:
    """A VCALENDAR with one VEVENT per item and a VTIMEZONE for every zone used."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    if name:
        calendar.add("x-wr-calname", name)
    for item in events:
        calendar.add_component(_event(item, stamp))
    calendar.add_missing_timezones()
    return calendar.to_ical()


# --------------------------------------------------------------------------- human times


def zone_note(tr: Any, zone_name: str | None) -> str:
    """' (Asia/Urumqi)' when the zone is not the default one, else ''."""
    if not zone_name or zone_name == DEFAULT_ZONE:
        return ""
    return tr("meetings.fmt.zone", zone=zone_name)


def fmt_date(tr: Any, day: date, *, today: date | None = None) -> str:
    months = tr("meetings.fmt.months").split(",")
    weekdays = tr("meetings.fmt.weekdays").split(",")
    values = {"month": months[day.month - 1], "day": day.day,
              "weekday": weekdays[day.weekday()], "year": day.year}
    if today is not None and abs((day - today).days) < 300:
        return tr("meetings.fmt.date", **values)
    return tr("meetings.fmt.date_year", **values)


def fmt_clock(moment: datetime, zone_name: str | None) -> str:
    return moment.astimezone(time_zone(zone_name)).strftime("%H:%M")


def fmt_when(
    tr: Any, moment: datetime, zone_name: str | None, *, now: datetime | None = None,
    with_zone: bool = True,
) -> str:
    local = moment.astimezone(time_zone(zone_name))
    today = now.astimezone(time_zone(zone_name)).date() if now else None
    text = f"{fmt_date(tr, local.date(), today=today)} {local:%H:%M}"
    return text + (zone_note(tr, zone_name) if with_zone else "")


def fmt_span(
    tr: Any, start: datetime, end: datetime, zone_name: str | None, *,
    now: datetime | None = None,
) -> str:
    local_start = start.astimezone(time_zone(zone_name))
    local_end = end.astimezone(time_zone(zone_name))
    if local_start.date() == local_end.date():
        text = f"{fmt_when(tr, start, zone_name, now=now, with_zone=False)}–{local_end:%H:%M}"
    else:
        text = (f"{fmt_when(tr, start, zone_name, now=now, with_zone=False)} – "
                f"{fmt_when(tr, end, zone_name, now=now, with_zone=False)}")
    return text + zone_note(tr, zone_name)


def fmt_minutes(tr: Any, minutes: int) -> str:
    """7 天 / 1 小时 / 1 天 2 小时 / 30 分钟 — an offset or a lead time."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(tr("meetings.fmt.days", n=days))
    if hours:
        parts.append(tr("meetings.fmt.hours", n=hours))
    if mins or not parts:
        parts.append(tr("meetings.fmt.minutes", n=mins))
    return tr("meetings.fmt.join").join(parts)


# A meeting kind as people type it (chat commands and data files): code, 简体 or 繁體.
MEETING_KIND_WORDS = {
    "joint": MeetingKind.joint, "联席会议": MeetingKind.joint, "聯席會議": MeetingKind.joint,
    "联席": MeetingKind.joint, "聯席": MeetingKind.joint,
    "area": MeetingKind.area, "片会": MeetingKind.area, "片會": MeetingKind.area,
    "regular": MeetingKind.regular, "例会": MeetingKind.regular, "例會": MeetingKind.regular,
    "drill": MeetingKind.drill, "演练": MeetingKind.drill, "演練": MeetingKind.drill,
    "training": MeetingKind.training, "培训": MeetingKind.training,
    "培訓": MeetingKind.training,
}
OFFSET_SEPARATORS = re.compile(r"[、,，;；\s]+")


def parse_meeting_kind(text: str) -> MeetingKind | None:
    """'joint', '联席会议', '聯席會議', '联席' → MeetingKind.joint (None if not a kind)."""
    word = text.strip()
    return MEETING_KIND_WORDS.get(word.lower()) or MEETING_KIND_WORDS.get(normalize(word))


def parse_offsets(text: str, *, maximum: int) -> list[int] | None:
    """'7d 1d 1h' (also 、 , ; separated) → [10080, 1440, 60], largest first, each between
    one minute and `maximum` minutes; None if any part is not an offset."""
    values = []
    for part in OFFSET_SEPARATORS.split(text.strip()):
        if not part:
            continue
        minutes = parse_offset(part)
        if minutes is None or not 1 <= minutes <= maximum:
            return None
        values.append(minutes)
    return sorted(set(values), reverse=True) or None


def parse_offset(text: str) -> int | None:
    """'7d', '1d', '1h', '90m', '1d12h', '7天', '1小时', '30分钟' → minutes (None if not one)."""
    units = {"d": 24 * 60, "天": 24 * 60, "h": 60, "小时": 60, "時": 60, "小時": 60,
             "m": 1, "min": 1, "分钟": 1, "分鐘": 1, "分": 1}
    remaining = text.strip().lower().replace(" ", "")
    if not remaining:
        return None
    total = 0
    while remaining:
        digits = ""
        while remaining and remaining[0].isdecimal():
            digits, remaining = digits + remaining[0], remaining[1:]
        if not digits:
            return None
        for name in sorted(units, key=len, reverse=True):
            if remaining.startswith(name):
                total += int(digits) * units[name]
                remaining = remaining[len(name):]
                break
        else:
            return None
    return total
