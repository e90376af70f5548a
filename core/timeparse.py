"""Deadlines as officers type them, read in their own time zone.

Accepted (after normalising full-width characters, Traditional characters, Chinese
numerals and spacing):

- relative spans, elapsed time from now: `2h`, `90m`, `1h30m`, `30分钟`, `2小时`,
  `两个半小时`, `半天`, `3天`, `1d`, `2周`, `in 2 hours`, `2 hours later`, `3天后`, `2小时内`;
- a day word, optionally with a time: `今天`, `明天`, `后天`, `大后天`, `今晚`, `明早`,
  `tomorrow`, `tonight`; weekdays `周五`, `星期五`, `礼拜天`, `下周一`, `friday`,
  `next monday` (a bare weekday is its next occurrence, today included while the time
  is ahead; 下周X / next X is that day of next calendar week, weeks start on Monday);
- a time alone: `18:00`, `9点半`, `下午3点`, `6pm` — its next occurrence (today if still
  ahead, else tomorrow), so a bare time is never "in the past";
- dates: `2026-12-01 09:00`, `2026/12/01 9:00`, `2026.12.01`, `2026-12-01T09:00`,
  `12-01 09:00`, `12/1`, `12月1日 9时`, `2026年12月1日`, `5号`. Slashes are month/day,
  the Chinese order; dots make a date only with a year (`18.30` is half past six). A
  date without a year is the next such date, never one in the past (so `1月5日` in
  December is next January, `11月20日` two days later is next year's; today's date
  counts while its time is ahead); a day of the month alone likewise is the next such
  day (`31号` skips the months without one).

Without a time, a day or date means 18:00, the end of the working day, unless the
caller asks for a time (`default_time=None`: "no_time"); a part of the day alone means
its end (上午 12:00, 中午 12:00, 下午 18:00, 晚上 22:00, 凌晨 06:00).
`24:00` and `midnight` are the end of the day. Trailing `前`/`之前`/`以前`, leading
`截止`/`by` are ignored. Local times resolve like the rosters' (fold=0, gaps forward).

Anything else raises `DeadlineError` with a code the handler turns into a message:
"empty", "unrecognised", "in_the_past" (not after now), "too_far" (more than 366 days),
"no_time" (a day or date without a time of day, when the caller wants one).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from functools import cache
from zoneinfo import ZoneInfo

import opencc

from core.clock import as_utc
from core.clock import local_instant
from core.clock import named_zone

__all__ = [
    "CODES",
    "END_OF_WORKING_DAY",
    "LONGEST",
    "DeadlineError",
    "next_date",
    "normalise",
    "parse_deadline",
]

CODES = ("empty", "unrecognised", "in_the_past", "too_far", "no_time")
END_OF_WORKING_DAY = time(18, 0)
LONGEST = timedelta(days=366)
MAX_INPUT = 80  # characters; nobody types a longer deadline, and it bounds the work

# ----------------------------------------------------------------------------- vocabulary

UNITS = {
    "minutes": 1, "minute": 1, "mins": 1, "min": 1, "m": 1, "分钟": 1, "分": 1,
    "hours": 60, "hour": 60, "hrs": 60, "hr": 60, "h": 60, "小时": 60, "钟头": 60,
    "days": 1440, "day": 1440, "d": 1440, "天": 1440,
    "weeks": 10080, "week": 10080, "wks": 10080, "wk": 10080, "w": 10080,
    "周": 10080, "星期": 10080, "礼拜": 10080,
}
DAY_WORDS = {
    "今天": 0, "今日": 0, "today": 0, "tonight": 0, "明天": 1, "明日": 1, "tomorrow": 1,
    "tmr": 1, "后天": 2, "大后天": 3, "今早": 0, "今晚": 0, "明早": 1, "明晚": 1,
}
# Shorthand that carries a part of the day: 明晚 = 明天晚上.
DAY_WORD_PERIODS = {"今早": "morning", "今晚": "evening", "tonight": "evening",
                    "明早": "morning", "明晚": "evening"}
PERIODS = {
    "凌晨": "small_hours", "早上": "morning", "早晨": "morning", "上午": "morning",
    "morning": "morning", "am": "am", "a.m.": "am",
    "中午": "noon", "noon": "noon",
    "下午": "afternoon", "afternoon": "afternoon", "pm": "pm", "p.m.": "pm",
    "傍晚": "evening", "晚上": "evening", "evening": "evening", "night": "evening",
    "midnight": "midnight",
}
# A part of the day alone means its end (as hour, minute, extra days).
END_OF_PERIOD = {"small_hours": (6, 0, 0), "morning": (12, 0, 0), "am": (12, 0, 0),
                 "noon": (12, 0, 0), "afternoon": (18, 0, 0), "pm": (18, 0, 0),
                 "evening": (22, 0, 0), "midnight": (0, 0, 1)}
# Which half of the day a part of the day is in, to refuse "上午3pm" or "晚上9am".
FORENOON = {"small_hours": True, "morning": True, "am": True, "noon": False,
            "afternoon": False, "pm": False, "evening": False}
WEEKDAYS = {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6, "日": 6, "天": 6,
            "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2,
            "wednesday": 2, "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4,
            "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6}
CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
             "六": 6, "七": 7, "八": 8, "九": 9}


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation, longest first, so "sunday" is not read as "sun" + "day"."""
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


ENGLISH_WEEKDAYS = [k for k in WEEKDAYS if k.isascii() and k.isalpha()]
_UNIT = _alternatives(UNITS)
# One "amount unit" pair: 2h, 1.5小时, 半天, 2个半小时, 半个小时, an hour.
_AMOUNT = r"(?:\d+(?:\.\d+)?(?:个?半)?|an?(?=hour|day|week|min)|半)"
_SPAN = rf"(?P<amount>{_AMOUNT})个?(?P<unit>{_UNIT})"
SPAN = re.compile(_SPAN)
RELATIVE = re.compile(
    rf"(?:in|within|after)?(?P<spans>(?:{_AMOUNT}个?(?:{_UNIT}))+)"
    r"(?:后|以后|之后|内|以内|later|fromnow)?"
)
_SUFFIX = r"am|pm|a\.m\.|p\.m\."
CLOCK = (
    rf"(?P<period>{_alternatives(PERIODS)})?(?:at)?"
    r"(?:(?P<hour>\d{1,2})"
    r"(?:[:.](?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"|(?P<dian>点)钟?(?:(?P<half>半)|(?P<quarter>[1-3])刻|(?P<minute2>\d{1,2})分?|整)?"
    r"|(?P<shi>时)(?:(?P<minute3>\d{1,2})分?)?"
    rf"|(?=(?:{_SUFFIX})$)"
    r")"
    rf"(?P<suffix>{_SUFFIX})?)?"
)
TIME_PHRASE = re.compile(CLOCK)
_DAY = (
    rf"(?:(?P<word>{_alternatives(DAY_WORDS)})"
    r"|(?P<which>下个?|这个?|本|next|this)?(?:周|星期|礼拜)(?P<cn_day>[1-7日天])"
    rf"|(?P<which_en>next|this)?(?P<en_day>{_alternatives(ENGLISH_WEEKDAYS)}))"
)
_THEN = r" ?(?:at)?"
DAY_PHRASE = re.compile(_DAY + _THEN + CLOCK)
DATES = tuple(re.compile(pattern + _THEN + CLOCK) for pattern in (
    r"(?P<year>\d{4})[-/.年](?P<month>\d{1,2})[-/.月](?P<day>\d{1,2})[日号]?",
    r"(?P<month>\d{1,2})(?:[-/]|月)(?P<day>\d{1,2})[日号]?",
    r"(?P<day>\d{1,2})[日号]",
))
PREFIXES = ("截止到", "截止", "截至", "by", "before", "due", "在")
SUFFIXES = ("之前", "以前", "前", "为止", "截止")


class DeadlineError(ValueError):
    """Why a deadline was not understood: empty, unrecognised, in_the_past, too_far."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# ----------------------------------------------------------------------------- normalising


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _cn_number(run: str) -> str:
    """二十三 → 23, 十 → 10, 二〇二六 → 2026; anything stranger is left alone."""
    if "十" not in run:
        return "".join(str(CN_DIGITS[c]) for c in run)
    tens, _, units = run.partition("十")
    if len(tens) > 1 or len(units) > 1 or "十" in units:
        return run
    return str(CN_DIGITS.get(tens, 1) * 10 + CN_DIGITS.get(units, 0))


def normalise(text: str) -> str:
    """One spelling for many: NFKC (full-width), Simplified, lower case, Arabic numerals,
    spaces kept only between two numbers (`12-01 09:00`)."""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s().convert(text).lower()
    text = re.sub(r"[零〇一二两三四五六七八九十]+", lambda m: _cn_number(m.group()), text)
    text = re.sub(r"(?<=\d)t(?=\d)", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(?<!\d) | (?!\d)", "", text)
    text = text.rstrip("。.!！,，")
    for prefix in PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix):]
            break
    for suffix in SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    return text


# ----------------------------------------------------------------------------- parsing


def parse_deadline(
    text: str, now: datetime, tz: str | ZoneInfo,
    default_time: time | None = END_OF_WORKING_DAY,
) -> datetime:
    """The instant (UTC) a typed deadline means, seen from `now` in the zone `tz`; a day
    or date without a time means `default_time` (None: refused with "no_time").

    Raises DeadlineError for anything the user typed; ValueError only for a caller's
    mistake (a naive `now`, an unknown zone).
    """
    now = as_utc(now)
    zone = _zone(tz)
    raw = text or ""
    if not raw.strip():
        raise DeadlineError("empty")
    if len(raw) > MAX_INPUT:
        raise DeadlineError("unrecognised")
    clean = normalise(raw)
    if not clean:
        raise DeadlineError("empty")
    try:
        result = _parse(clean, now, zone, default_time)
    except DeadlineError:
        raise
    except (ValueError, OverflowError, KeyError):
        raise DeadlineError("unrecognised") from None
    if result <= now:
        raise DeadlineError("in_the_past")
    if result - now > LONGEST:
        raise DeadlineError("too_far")
    return result


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else named_zone(tz)


def _parse(clean: str, now: datetime, zone: ZoneInfo, default: time | None) -> datetime:
    today = now.astimezone(zone).date()
    if relative := RELATIVE.fullmatch(clean):
        return now + _span(relative["spans"])
    if day_match := DAY_PHRASE.fullmatch(clean):
        return _day_phrase(day_match, now, today, zone, default)
    for pattern in DATES:
        if dated := pattern.fullmatch(clean):
            if dated.groupdict().get("year"):
                return _at(_dated(dated, today), dated, zone, default)
            return _upcoming(dated, now, today, zone, default)
    bare = TIME_PHRASE.fullmatch(clean)
    if bare is None:
        raise DeadlineError("unrecognised")
    hour, minute, second, extra = _time_of_day(bare)
    at = time(hour, minute, second)
    result = local_instant(today + timedelta(days=extra), at, zone)
    if result <= now:
        result = local_instant(today + timedelta(days=extra + 1), at, zone)
    return result


def _span(spans: str) -> timedelta:
    minutes = 0.0
    for span in SPAN.finditer(spans):
        amount = span["amount"]
        value = 1.0 if amount in ("a", "an") else float(re.sub(r"个?半$", "", amount) or 0)
        if amount.endswith("半"):
            value += 0.5
        minutes += value * UNITS[span["unit"]]
    if minutes > LONGEST / timedelta(minutes=1):
        raise DeadlineError("too_far")
    return timedelta(minutes=minutes)


def _day_phrase(
    match: re.Match[str], now: datetime, today: date, zone: ZoneInfo, default: time | None
) -> datetime:
    if match["word"]:
        implied = DAY_WORD_PERIODS.get(match["word"])
        if implied and match["period"] and PERIODS[match["period"]] != implied:
            raise DeadlineError("unrecognised")  # 今晚下午3点
        day = today + timedelta(days=DAY_WORDS[match["word"]])
        return _at(day, match, zone, default, implied)
    weekday = WEEKDAYS[match["cn_day"] or match["en_day"]]
    which = (match["which"] or match["which_en"] or "").rstrip("个")
    if which in ("下", "next"):
        monday = today - timedelta(days=today.weekday())
        return _at(monday + timedelta(days=7 + weekday), match, zone, default)
    if which in ("这", "本", "this"):
        return _at(today + timedelta(days=weekday - today.weekday()), match, zone, default)
    day = today + timedelta(days=(weekday - today.weekday()) % 7)
    result = _at(day, match, zone, default)
    return result if result > now else _at(day + timedelta(days=7), match, zone, default)


def _dated(match: re.Match[str], today: date) -> date:
    """A date with its year (this year, next, the one after, or last year)."""
    year = int(match["year"])
    if year > today.year + 2:
        raise DeadlineError("too_far")
    if year < today.year - 1:
        raise DeadlineError("in_the_past")
    return date(year, int(match["month"]), int(match["day"]))


def next_date(today: date, day: int, month: int | None = None) -> date:
    """The first date on or after `today` with this day of the month (and month): what a
    date typed without a year, or a day without a month, means. ValueError when there is
    none (`2-30`, `32号`)."""
    if month is None:
        candidates = [divmod(today.year * 12 + today.month - 1 + k, 12) for k in range(13)]
        months = [(year, index + 1) for year, index in candidates]
    else:
        months = [(year, month) for year in range(today.year, today.year + 9)]
    for year, number in months:
        try:
            found = date(year, number, day)
        except ValueError:
            continue
        if found >= today:
            return found
    raise ValueError(f"no date with day {day} and month {month}")


def _upcoming(
    match: re.Match[str], now: datetime, today: date, zone: ZoneInfo, default: time | None
) -> datetime:
    """A date without a year at its next occurrence: today's only while its time is ahead."""
    day_of_month = int(match["day"])
    month = int(match["month"]) if match.groupdict().get("month") else None
    result = _at(next_date(today, day_of_month, month), match, zone, default)
    if result <= now:
        after = now.astimezone(zone).date() + timedelta(days=1)
        result = _at(next_date(after, day_of_month, month), match, zone, default)
    return result


def _at(
    day: date, match: re.Match[str], zone: ZoneInfo, default: time | None,
    implied: str | None = None,
) -> datetime:
    """The time of `match` on `day`; without one, `default` (None: refused, "no_time")."""
    if match["hour"] is None and match["period"] is None and implied is None:
        if default is None:
            raise DeadlineError("no_time")
        return local_instant(day, default, zone)
    hour, minute, second, extra = _time_of_day(match, implied)
    return local_instant(day + timedelta(days=extra), time(hour, minute, second), zone)


def _time_of_day(match: re.Match[str], implied: str | None = None) -> tuple[int, int, int, int]:
    """(hour, minute, second, extra days) of a time of day or of a part of the day alone.

    A bare number ("18") is refused: it needs ":", 点/时, am/pm or a part of the day.
    """
    period = PERIODS[match["period"]] if match["period"] else implied
    suffix = PERIODS[match["suffix"]] if match["suffix"] else None
    if match["hour"] is None:
        if period is None:
            raise DeadlineError("unrecognised")
        hour, minute, extra = END_OF_PERIOD[period]
        return hour, minute, 0, extra
    marked = any(match[g] is not None for g in ("minute", "dian", "shi", "suffix"))
    if not marked and period is None:
        raise DeadlineError("unrecognised")
    if period == "midnight" or (
        period is not None and suffix is not None and FORENOON[period] != FORENOON[suffix]
    ):
        raise DeadlineError("unrecognised")  # "midnight 3pm", "上午3pm"
    hour = int(match["hour"])
    minute = int(match["minute"] or match["minute2"] or match["minute3"] or 0)
    second = int(match["second"] or 0)
    if match["half"]:
        minute = 30
    elif match["quarter"]:
        minute = 15 * int(match["quarter"])
    if minute > 59 or second > 59:
        raise DeadlineError("unrecognised")
    hour, extra = _twelve_hour(hour, suffix or period)
    if hour == 24:
        if minute or second:
            raise DeadlineError("unrecognised")
        return 0, 0, 0, extra + 1
    return hour, minute, second, extra


def _twelve_hour(hour: int, period: str | None) -> tuple[int, int]:
    """The 24-hour hour (and extra days) of an hour said with a part of the day."""
    if period is None:
        if hour > 24:
            raise DeadlineError("unrecognised")
        return hour, 0
    if period in ("am", "pm"):
        if not 1 <= hour <= 12:
            raise DeadlineError("unrecognised")  # 0am, 13pm
        return hour % 12 + (12 if period == "pm" else 0), 0
    if period in ("morning", "small_hours"):
        if hour > 12:
            raise DeadlineError("unrecognised")
        return (0 if hour == 12 and period == "small_hours" else hour), 0
    if period == "noon":
        if 11 <= hour <= 14:
            return hour, 0
        if 1 <= hour <= 2:
            return hour + 12, 0
        raise DeadlineError("unrecognised")
    if period == "afternoon":
        if hour > 23:
            raise DeadlineError("unrecognised")
        return (hour + 12 if 1 <= hour <= 11 else hour), 0
    # evening: 晚上8点 is 20:00, 晚上12点 midnight, 晚上1点 the small hours after it.
    if 5 <= hour <= 11:
        return hour + 12, 0
    if 17 <= hour <= 23:
        return hour, 0
    if hour == 12:
        return 24, 0
    if hour <= 4:
        return hour, 1
    raise DeadlineError("unrecognised")
