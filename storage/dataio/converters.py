"""The field converters of a data file: each takes (value, path, problems) and returns
the clean value, or `BAD` after reporting why not. `value` is never None: missing and
null values are handled by the field (`schema.Field`)."""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Callable
from collections.abc import Mapping
from datetime import date
from datetime import datetime
from typing import Any

from core.clock import is_zone
from core.meetings import parse_meeting_kind
from core.meetings import parse_offset
from core.meetings import parse_offsets
from core.phones import PhoneProblem
from core.phones import checked_phone
from storage.dataio.problems import Problems

LANGUAGES = ("zh-Hans", "zh-Hant", "en")
MAX_TELEGRAM_ID = 2**53  # Telegram promises ids fit in 52 bits

BAD = object()  # a value that failed its check (already reported)

CODE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?$")
HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def describe(value: Any) -> str:
    """A value as a problem quotes it: text as it is, else what kind of thing it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


Converter = Callable[[Any, str, Problems], Any]


def text(max_length: int | None = None) -> Converter:
    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            problems.add(path, "not_text", value=describe(value))
            return BAD
        result = str(value).strip()
        if max_length is not None and len(result) > max_length:
            problems.add(path, "too_long", length=len(result), limit=max_length)
            return BAD
        return result or None

    return convert


def phone(value: Any, path: str, problems: Problems) -> Any:
    """A phone number (core.phones.checked_phone), its problem recorded at `path`."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        problems.add(path, "not_text", value=describe(value))
        return BAD
    try:  # an int has no '+' to lose: the loader keeps +… as text
        return checked_phone(str(value))
    except PhoneProblem as problem:
        problems.add(path, problem.key, **problem.values)
        return BAD


def code(value: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not CODE_RE.match(value) or len(value) > 40:
        problems.add(path, "not_code", value=describe(value))
        return BAD
    return value


def choice(enum_cls: type[enum.Enum]) -> Converter:
    values = [member.value for member in enum_cls]

    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str) and value.strip() in values:
            return enum_cls(value.strip())
        problems.add(path, "one_of", choices=", ".join(values), value=describe(value))
        return BAD

    return convert


def language(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and value.strip() in LANGUAGES:
        return value.strip()
    problems.add(path, "one_of", choices=", ".join(LANGUAGES), value=describe(value))
    return BAD


def integer(*, minimum: int | None = None, maximum: int | None = None, what: str) -> Converter:
    """A whole number in range; `what` names the message (`range_<what>`) for one out of it."""
    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(path, "not_whole_number", value=describe(value))
            return BAD
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            problems.add(path, f"range_{what}", value=value)
            return BAD
        return value

    return convert


telegram_user_id = integer(minimum=1, maximum=MAX_TELEGRAM_ID, what="telegram_user")
chat_id = integer(minimum=-MAX_TELEGRAM_ID, maximum=-1, what="telegram_group")


def boolean(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, bool):
        return value
    problems.add(path, "not_boolean", value=describe(value))
    return BAD


def _missing_day(day: str, path: str, problems: Problems) -> bool:
    """Report a well-formed date whose day is not in the calendar (2025-02-30)."""
    year, month, number = (int(part) for part in day.split("-"))
    if not 1 <= month <= 12 or number < 1:
        return False
    days = calendar.monthrange(year, month)[1] if year >= 1 else 31
    if number <= days:
        return False
    problems.add(path, "no_such_day", value=day, year=year, month=month, days=days)
    return True


def a_date(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and DATE_RE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            if _missing_day(value.strip(), path, problems):
                return BAD
    problems.add(path, "not_date", value=describe(value))
    return BAD


def a_datetime(value: Any, path: str, problems: Problems) -> Any:
    """A local date-time (naive), or an aware one when the text carries an offset."""
    if isinstance(value, datetime):
        return value
    match = DATETIME_RE.match(value.strip()) if isinstance(value, str) else None
    if match:
        day, clock, offset = match.groups()
        hours, _, rest = clock.partition(":")
        candidate = f"{day}T{int(hours):02d}:{rest}"
        if offset:
            candidate += "+00:00" if offset == "Z" else offset
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            if _missing_day(day, path, problems):
                return BAD
    problems.add(path, "not_datetime", value=describe(value))
    return BAD


def timezone_name(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and value.strip():
        name = value.strip()
        if is_zone(name):
            return name
    problems.add(path, "unknown_timezone", value=describe(value))
    return BAD


def hhmm(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and HHMM_RE.match(value.strip()):
        return value.strip()
    problems.add(path, "not_time_of_day", value=describe(value))
    return BAD


def reference(value: Any, path: str, problems: Problems) -> Any:
    """A name, short name or code of another entity (resolved later)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        problems.add(path, "not_reference", value=describe(value))
        return BAD
    return str(value).strip()


def room_reference(value: Any, path: str, problems: Problems) -> Any:
    """A duty room: its chat id, its title, or its unit when the unit has one room."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return reference(value, path, problems)


def list_ok(value: Any, path: str, problems: Problems, min_items: int) -> bool:
    """A list of `min_items` or more; else the problem is noted (the caller returns BAD)."""
    if not isinstance(value, list):
        problems.add(path, "not_list", value=describe(value))
        return False
    if len(value) < min_items:
        problems.add(path, "too_few_items", count=min_items)
        return False
    return True


def list_of(
    item: Converter, *, min_items: int = 0, scalar_ok: bool = False
) -> Converter:
    """A list; with `scalar_ok` a single value stands for a list of one."""

    def convert(value: Any, path: str, problems: Problems) -> Any:
        if scalar_ok and isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not list_ok(value, path, problems, min_items):
            return BAD
        result = []
        ok = True
        for index, element in enumerate(value):
            element_path = f"{path}[{index}]"
            if element is None:
                problems.add(element_path, "empty_item")
                ok = False
                continue
            converted = item(element, element_path, problems)
            if converted is BAD:
                ok = False
            elif converted is not None:
                result.append(converted)
        return result if ok else BAD

    return convert


def meeting_kind(value: Any, path: str, problems: Problems) -> Any:
    """A kind as chat commands take it: `joint`, 联席会议, 聯席會議, 联席 …"""
    kind = parse_meeting_kind(value) if isinstance(value, str) else None
    if kind is None:
        problems.add(path, "not_meeting_kind", value=describe(value))
        return BAD
    return kind


MAX_REMINDER_OFFSET = 366 * 24 * 60
_minutes = integer(minimum=1, maximum=MAX_REMINDER_OFFSET, what="reminder_offset")


def _reminder_offset(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"\s*[-+]?\d+\s*", value):
        minutes = parse_offset(value)
        if minutes is None:
            problems.add(path, "not_offset", value=value)
            return BAD
        value = minutes
    return _minutes(value, path, problems)


def reminder_offsets(value: Any, path: str, problems: Problems) -> Any:
    """Minutes before a meeting: a list of minutes or chat-command offsets (`[7d, 1h]`,
    `[10080, 60]`), or one string as `/meeting edit` takes it (`7d 1d 1h`)."""
    if isinstance(value, str):
        if not value.strip():
            return None
        parsed = parse_offsets(value, maximum=MAX_REMINDER_OFFSET)
        if parsed is None:
            problems.add(path, "not_offset", value=value)
            return BAD
        return parsed
    return _reminder_offsets(value, path, problems)


_reminder_offsets = list_of(_reminder_offset)
