"""Meetings as iCalendar (RFC 5545) files that calendar apps import.

Each meeting is one VEVENT with a stable UID (so importing an updated file updates the
event instead of adding a second one), SEQUENCE from the meeting's revision, STATUS
CANCELLED for a cancelled meeting, and local start/end times with their TZID and the
matching VTIMEZONE, so a meeting in Asia/Urumqi shows at the right hour anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime

from icalendar import Calendar
from icalendar import Event

from core.clock import time_zone

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
    zone = time_zone(item.timezone)
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
