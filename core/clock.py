"""Clocks and local-time helpers shared by the domain functions.

Code that needs "now" takes a clock, a plain callable (`Services.now`, the delivery
worker's `clock`), instead of calling `datetime.now`, so the scheduler, the delivery
worker and the tests can run on a set clock (tools.clock.FakeClock) and never sleep.
"""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

# The days a command may name: wide enough for any record of the desk, narrow enough
# that a day before or after it is never out of Python's or the database's range.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)


def in_calendar(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


# Times are stored in UTC and shown in the reader's unit/room time zone; the zone is
# named whenever it is not the default, so 09:00 in Urumqi is never mistaken for 09:00
# Beijing time.
DEFAULT_ZONE = "Asia/Shanghai"


def time_zone(name: str | None, default: str = DEFAULT_ZONE) -> ZoneInfo:
    """The first of `name`, `default` that is a time zone, else UTC: a unit's zone that
    the data got wrong falls back to the bot's, never to an error."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Asia", a directory
                continue
    return ZoneInfo("UTC")


def named_zone(name: str) -> ZoneInfo:
    """The time zone `name` names; ValueError for one a plan cannot be kept in (a
    roster's, a chair rotation's, a typed deadline's), unlike `time_zone`'s fallback."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}") from None


class InZone:
    """A plan kept in the time zone `timezone` names (checked with `named_zone` when the
    plan is made)."""

    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def is_zone(name: str) -> bool:
    """Any name the time-zone database knows (PRC and GMT too)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def valid_zone(name: str) -> bool:
    """An IANA region zone (Asia/Urumqi) or UTC, as a person may type one in a chat."""
    return is_zone(name) and ("/" in name or name == "UTC")


def as_utc(instant: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is a programming error, not UTC."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("an aware datetime is required (naive datetimes are ambiguous)")
    return instant.astimezone(UTC)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time.

    Deterministic at daylight-saving changes: fold=0 everywhere, so an ambiguous time
    (fall back) is its first occurrence and a nonexistent one (spring forward) is read
    with the offset before the gap, which lands after the gap (02:30 → 03:30), as
    RFC 5545 does for calendar events.
    """
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    return naive.replace(tzinfo=zone).astimezone(UTC)
