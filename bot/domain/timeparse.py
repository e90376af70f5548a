"""Deadlines as officers type them, in their own time zone.

Accepted: relative spans (`2h`, `90m`, `30分钟`, `2小时`, `3天`, `in 2 hours`); a day word
with or without a time (`明天18:00`, `后天上午10点`, `tomorrow 18:00`; a day alone means
18:00, the end of the working day); a bare time (`18:00`, `下午3点`: its next
occurrence); dates (`2026-12-01 09:00`, `2026/12/01 9:00`, `12-01 09:00`,
`12月1日 9时`, `12月1日` = 18:00). Full-width digits, Traditional characters and extra
spaces are normalised first. Anything else raises `DeadlineError` with a code the
handler turns into a message.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import opencc

END_OF_WORKING_DAY = time(18, 0)
LONGEST = timedelta(days=366)

UNITS = {
    "m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "分钟": 1, "分": 1,
    "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60, "小时": 60, "个小时": 60, "钟头": 60,
    "d": 1440, "day": 1440, "days": 1440, "天": 1440,
}
DAY_WORDS = {"今天": 0, "今日": 0, "today": 0, "明天": 1, "明日": 1, "tomorrow": 1,
             "后天": 2, "大后天": 3}
PERIODS = {"上午": "am", "早上": "am", "早晨": "am", "凌晨": "am", "am": "am",
           "中午": "noon", "下午": "pm", "晚上": "pm", "傍晚": "pm", "pm": "pm"}

RELATIVE = re.compile(
    r"^(?:in)?(\d+(?:\.\d+)?)(" + "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
    + r")(?:后|以后|之后|内|later)?$"
)
CLOCK = (
    r"(?P<period>上午|早上|早晨|凌晨|中午|下午|晚上|傍晚)?"
    r"(?P<hour>\d{1,2})(?:[:：.](?P<minute>\d{2})|点(?P<half>半)?(?:(?P<minute2>\d{1,2})分?)?"
    r"|时(?:(?P<minute3>\d{1,2})分?)?)?(?P<ampm>am|pm)?"
)
DATE = (
    r"(?:(?P<year>\d{4})[-/.年])?(?P<month>\d{1,2})[-/.月](?P<day>\d{1,2})[日号]?"
)


class DeadlineError(ValueError):
    """Why a deadline was not understood: empty, unrecognised, in_the_past, too_far."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text).lower()
    return re.sub(r"\s+", "", text)


def _clock(match: re.Match[str]) -> time:
    hour = int(match["hour"])
    minute = int(match["minute"] or match["minute2"] or match["minute3"] or 0)
    if match["half"]:
        minute = 30
    period = PERIODS.get(match["period"] or match["ampm"] or "")
    if period == "pm" and hour < 12:
        hour += 12
    elif period == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise DeadlineError("unrecognised")
    return time(hour, minute)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def parse_deadline(text: str, now: datetime, timezone: str) -> datetime:
    """The instant (UTC) a typed deadline means, seen from `now` in `timezone`."""
    zone = ZoneInfo(timezone)
    clean = normalise(text or "")
    if not clean:
        raise DeadlineError("empty")
    result = _parse(clean, now, zone)
    if result <= now:
        raise DeadlineError("in_the_past")
    if result - now > LONGEST:
        raise DeadlineError("too_far")
    return result


def _parse(clean: str, now: datetime, zone: ZoneInfo) -> datetime:
    today = now.astimezone(zone).date()
    if relative := RELATIVE.match(clean):
        return now + timedelta(minutes=float(relative[1]) * UNITS[relative[2]])
    for word, offset in sorted(DAY_WORDS.items(), key=lambda kv: -len(kv[0])):
        if clean.startswith(word):
            rest = clean[len(word):]
            at = END_OF_WORKING_DAY if not rest else _whole_clock(rest)
            return _local(today + timedelta(days=offset), at, zone)
    if dated := re.fullmatch(DATE + r"(?P<clock>.*)", clean):
        try:
            day = date(int(dated["year"] or today.year), int(dated["month"]), int(dated["day"]))
        except ValueError:
            raise DeadlineError("unrecognised") from None
        at = _whole_clock(dated["clock"]) if dated["clock"] else END_OF_WORKING_DAY
        result = _local(day, at, zone)
        if not dated["year"] and result <= now:
            # "12-01" in December means next year's, not a date already gone.
            result = _local(day.replace(year=day.year + 1), at, zone)
        return result
    at = _whole_clock(clean)
    result = _local(today, at, zone)
    return result if result > now else _local(today + timedelta(days=1), at, zone)


def _whole_clock(text: str) -> time:
    match = re.fullmatch(CLOCK, text)
    if match is None:
        raise DeadlineError("unrecognised")
    return _clock(match)
