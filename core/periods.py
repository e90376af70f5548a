"""Periods people type (`7d`, `本月`, `2026-11`, `2026-11-01..2026-11-30`) as [start, end)
in UTC, for the lists, exports and statistics of requests.

A plain function of its arguments, like the rest of core/: the handlers only say which
problem a word has (`PeriodProblem`) in the reader's language.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from zoneinfo import ZoneInfo

from core.clock import FIRST_DAY
from core.clock import LAST_DAY
from core.normalize import normalize


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive


class PeriodProblem(ValueError):
    """A word shaped like a period that names none: "no_such_month" (2026-13),
    "no_such_day" (2025-02-30), "out_of_range" (a year outside FIRST_DAY..LAST_DAY),
    "bad_span" (not 1 to `longest` days back) or "reversed" (ends before it starts)."""

    def __init__(self, kind: str, word: str, longest: int = 0) -> None:
        super().__init__(kind)
        self.kind, self.word, self.longest = kind, word, longest


_RELATIVE = re.compile(r"^(\d+)\s*(d|天|日|w|周|週)$")
_MONTH = re.compile(r"^(\d{4,})-(\d+)$")
_DAY = r"(\d{4,})-(\d+)-(\d+)"
_RANGE = re.compile(rf"^{_DAY}\s*(?:~|～|—|至|到|to)\s*{_DAY}$")
_ONE_DAY = re.compile(rf"^{_DAY}$")
_YEAR = re.compile(r"^(\d{4})$")
_NAMED_PERIODS = {
    "today": "today", "今天": "today", "今日": "today",
    "week": "week", "本周": "week", "本週": "week", "this-week": "week",
    "month": "month", "本月": "month", "this-month": "month",
    "last-month": "last_month", "上月": "last_month", "上个月": "last_month",
    "上個月": "last_month",
    "year": "year", "今年": "year", "本年": "year",
}


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _calendar_day(word: str, year: str, month: str, day: str = "1") -> date:
    """The day the digits name, or PeriodProblem: the year is checked first, so that
    9999-12-31 is out of range and 2026-13 has no such month."""
    if len(year) > 4 or not FIRST_DAY.year <= int(year) <= LAST_DAY.year:
        raise PeriodProblem("out_of_range", word)
    if len(month) > 2 or not 1 <= int(month) <= 12:
        raise PeriodProblem("no_such_month", word)
    if len(day) > 2 or not 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]:
        raise PeriodProblem("no_such_day", word)
    return date(int(year), int(month), int(day))


def _days(first: date, last: date, tz: ZoneInfo) -> Period:
    """[first, last] as whole local days."""
    return Period(_midnight(first, tz), _midnight(last + timedelta(days=1), tz))


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> Period | None:
    """`7d`, `30天`, `2w`, `今天`, `本周`, `本月`, `上月`, `2026-11`, `2026`, `2026-11-01`,
    `2026-11-01..2026-11-30` (days inclusive) → [start, end) in UTC; None for a word that
    is no period; PeriodProblem for one shaped like a period that names none."""
    word = normalize(text).replace("..", "~").replace("/", "-").replace(".", "-")
    today = now.astimezone(tz).date()
    if (named := _NAMED_PERIODS.get(word)) is not None:
        if named == "today":
            return _days(today, today, tz)
        if named == "week":
            monday = today - timedelta(days=today.weekday())
            return _days(monday, monday + timedelta(days=6), tz)
        first = today.replace(day=1)
        if named == "month":
            return Period(_midnight(first, tz),
                          _midnight(_month_start(first.year, first.month + 1), tz))
        if named == "last_month":
            return Period(_midnight(_month_start(first.year, first.month - 1), tz),
                          _midnight(first, tz))
        return _days(date(today.year, 1, 1), date(today.year, 12, 31), tz)
    if match := _RELATIVE.match(word):
        count, unit = match.group(1), match.group(2)
        days = int(count) * (7 if unit in ("w", "周", "週") else 1) if len(count) <= 6 else 0
        if not 1 <= days <= (today - FIRST_DAY).days:
            raise PeriodProblem("bad_span", text, (today - FIRST_DAY).days)
        return Period(now - timedelta(days=days), now)
    if match := _RANGE.match(word):
        first = _calendar_day(text, *match.group(1, 2, 3))
        last = _calendar_day(text, *match.group(4, 5, 6))
        if last < first:
            raise PeriodProblem("reversed", text)
        return _days(first, last, tz)
    if match := _ONE_DAY.match(word):
        day = _calendar_day(text, *match.group(1, 2, 3))
        return _days(day, day, tz)
    if match := _MONTH.match(word):
        first = _calendar_day(text, *match.group(1, 2))
        return Period(_midnight(first, tz),
                      _midnight(_month_start(first.year, first.month + 1), tz))
    if match := _YEAR.match(word):
        year = _calendar_day(text, match.group(1), "1").year
        return _days(date(year, 1, 1), date(year, 12, 31), tz)
    return None
