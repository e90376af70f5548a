"""The shape of a data file: sections, fields, types and defaults.

`check_shape` walks the whole document and returns clean records (plain dicts with
normalised values, every field present) plus the problems found. References are
kept as the text the file gave; `resolve.py` turns them into identities.
"""

from __future__ import annotations

import calendar
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from core.clock import DEFAULT_ZONE, is_zone
from core.enums import AgreementStatus, LiaisonRole, MeetingStatus, Role, ShiftPattern, UnitLevel
from core.meetings import parse_meeting_kind, parse_offset, parse_offsets
from storage.dataio.problems import Problems
from storage.models import (
    Agreement,
    Branch,
    Clause,
    DutyRoom,
    Liaison,
    Mechanism,
    Meeting,
    RosterMember,
    Unit,
    User,
    Zone,
)

SECTIONS: tuple[str, ...] = (
    "zones",
    "units",
    "branches",
    "mechanisms",
    "users",
    "liaisons",
    "duty_rooms",
    "rosters",
    "chair_rotations",
    "agreements",
    "meetings",
)

LANGUAGES = ("zh-Hans", "zh-Hant", "en")
DEFAULT_REMINDER_OFFSETS = [7 * 24 * 60, 24 * 60, 60]
DEFAULT_TERM_MONTHS = 12
DEFAULT_SHIFT_STARTS = {
    ShiftPattern.daily: ["08:30"],
    ShiftPattern.day_night: ["08:00", "20:00"],
    ShiftPattern.weekly: ["08:30"],
}
MAX_TELEGRAM_ID = 2**53  # Telegram promises ids fit in 52 bits

BAD = object()  # a value that failed its check (already reported)

CODE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?$")
HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def fold(value: str) -> str:
    """The form names are compared in: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def _length(column: Any) -> int | None:
    return getattr(column.type, "length", None)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# --------------------------------------------------------------------------- converters
#
# A converter takes (value, path, problems) and returns the clean value, or BAD after
# reporting. `value` is never None: missing and null values are handled by the field.

Converter = Callable[[Any, str, Problems], Any]


def text(max_length: int | None = None) -> Converter:
    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            problems.add(path, "not_text", value=_describe(value))
            return BAD
        result = str(value).strip()
        if max_length is not None and len(result) > max_length:
            problems.add(path, "too_long", length=len(result), limit=max_length)
            return BAD
        return result or None

    return convert


PHONE_REGION = "CN"  # numbers without a country code are Chinese
PHONE_MAX = 40
_PHONE_EXTENSION_RE = re.compile(r"\s*(?:转|轉|分机|分機|ext\.?|x|#)\s*(\d{1,6})$", re.IGNORECASE)
_PHONE_CHARS_RE = re.compile(r"^\+?[0-9 ()\-./]+$")
_PHONE_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―－", "-"))
_PHONE_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "phone_too_short",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "phone_too_short",
    phonenumbers.ValidationResult.TOO_LONG: "phone_too_long",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "phone_bad_country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "phone_bad_length",
}


def phone(value: Any, path: str, problems: Problems) -> Any:
    """A phone number libphonenumber finds possible (China unless it has a '+' code).

    Possible, not valid: the length fits the country's plan, whatever the prefix, so
    the fictional ranges of samples (+86 100 …) pass and `16O2` or `待补` do not. The
    number keeps the author's grouping (full-width digits and dashes made plain, spaces
    single), and an extension (转 / ext. / x / #) is written ` ext. N`, so the digits
    the search indexes are the author's.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        problems.add(path, "not_text", value=_describe(value))
        return BAD
    raw = str(value).strip()  # an int has no '+' to lose: the loader keeps +… as text
    number = " ".join(unicodedata.normalize("NFKC", raw).translate(_PHONE_DASHES).split())
    if not number:
        return None
    extension = _PHONE_EXTENSION_RE.search(number)
    if extension:
        number = number[:extension.start()].strip()
    if not _PHONE_CHARS_RE.match(number):
        letters = sorted({c for c in number if c.isascii() and c.isalpha()})
        if letters:
            problems.add(path, "phone_letters", value=raw, letters=", ".join(letters))
        else:
            problems.add(path, "phone_not_number", value=raw)
        return BAD
    try:
        parsed = phonenumbers.parse(number, PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        bad_country = exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        problems.add(path, "phone_bad_country" if bad_country else "phone_not_number", value=raw)
        return BAD
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason in _PHONE_REASONS:
        problems.add(path, _PHONE_REASONS[reason], value=raw)
        return BAD
    result = f"{number} ext. {extension.group(1)}" if extension else number
    if len(result) > PHONE_MAX:
        problems.add(path, "too_long", length=len(result), limit=PHONE_MAX)
        return BAD
    return result


def code(value: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, str) or not CODE_RE.match(value) or len(value) > 40:
        problems.add(path, "not_code", value=_describe(value))
        return BAD
    return value


def choice(enum_cls: type[enum.Enum]) -> Converter:
    values = [member.value for member in enum_cls]

    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str) and value.strip() in values:
            return enum_cls(value.strip())
        problems.add(path, "one_of", choices=", ".join(values), value=_describe(value))
        return BAD

    return convert


def language(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and value.strip() in LANGUAGES:
        return value.strip()
    problems.add(path, "one_of", choices=", ".join(LANGUAGES), value=_describe(value))
    return BAD


def integer(*, minimum: int | None = None, maximum: int | None = None, what: str) -> Converter:
    """A whole number in range; `what` names the message (`range_<what>`) for one out of it."""
    def convert(value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(path, "not_whole_number", value=_describe(value))
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
    problems.add(path, "not_boolean", value=_describe(value))
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
    problems.add(path, "not_date", value=_describe(value))
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
    problems.add(path, "not_datetime", value=_describe(value))
    return BAD


def timezone_name(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and value.strip():
        name = value.strip()
        if is_zone(name):
            return name
    problems.add(path, "unknown_timezone", value=_describe(value))
    return BAD


def hhmm(value: Any, path: str, problems: Problems) -> Any:
    if isinstance(value, str) and HHMM_RE.match(value.strip()):
        return value.strip()
    problems.add(path, "not_time_of_day", value=_describe(value))
    return BAD


def reference(value: Any, path: str, problems: Problems) -> Any:
    """A name, short name or code of another entity (resolved later)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        problems.add(path, "not_reference", value=_describe(value))
        return BAD
    return str(value).strip()


def room_reference(value: Any, path: str, problems: Problems) -> Any:
    """A duty room: its chat id, its title, or its unit when the unit has one room."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return reference(value, path, problems)


def list_of(
    item: Converter, *, min_items: int = 0, scalar_ok: bool = False
) -> Converter:
    """A list; with `scalar_ok` a single value stands for a list of one."""

    def convert(value: Any, path: str, problems: Problems) -> Any:
        if scalar_ok and isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            problems.add(path, "not_list", value=_describe(value))
            return BAD
        if len(value) < min_items:
            problems.add(path, "too_few_items", count=min_items)
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
        problems.add(path, "not_meeting_kind", value=_describe(value))
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


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Field:
    name: str
    convert: Converter
    required: bool = False
    default: Any = None  # a value, or a zero-argument callable for lists

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


@dataclass(frozen=True)
class Spec:
    """The fields of one kind of record, with an optional whole-record check."""

    fields: tuple[Field, ...]
    check: Callable[[dict[str, Any], str, Problems], None] | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(f.name for f in self.fields))


def records(spec: Spec, *, min_items: int = 0) -> Converter:
    def convert(value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list):
            problems.add(path, "not_list", value=_describe(value))
            return BAD
        if len(value) < min_items:
            problems.add(path, "too_few_items", count=min_items)
            return BAD
        # Bad nested records stay in the list (flagged `_bad`), so their references are
        # still checked; `check_record` marks the outer record bad.
        return [check_record(spec, element, f"{path}[{i}]", problems)
                for i, element in enumerate(value)]

    return convert


def check_record(spec: Spec, value: Any, path: str, problems: Problems) -> dict[str, Any]:
    """A clean record; `_bad` is set when any field failed (and was reported)."""
    record: dict[str, Any] = {"_path": path}
    if not isinstance(value, Mapping):
        problems.add(path, "not_record", value=_describe(value))
        record["_bad"] = True
        return record
    bad = False
    for key in value:
        if key not in spec.names:
            problems.add(f"{path}.{key}", "unknown_field")
            bad = True
    for f in spec.fields:
        raw = value.get(f.name)
        if raw is None:
            if f.required:
                problems.add(f"{path}.{f.name}", "required")
                bad = True
                record[f.name] = BAD
            else:
                record[f.name] = f.default_value()
            continue
        converted = f.convert(raw, f"{path}.{f.name}", problems)
        if converted is BAD or (
            isinstance(converted, list) and any(
                isinstance(item, dict) and item.get("_bad") for item in converted)
        ):
            bad = True
        elif converted is None:  # an empty string
            if f.required:
                problems.add(f"{path}.{f.name}", "required")
                bad = True
                converted = BAD
            else:
                converted = f.default_value()
        record[f.name] = converted
    if not bad and spec.check is not None:
        before = len(problems)
        spec.check(record, path, problems)
        bad = len(problems) > before
    if bad:
        record["_bad"] = True
    return record


def usable(record: dict[str, Any], *names: str) -> bool:
    """Whether the named fields of a (possibly bad) record passed their own checks."""
    return all(record.get(name) is not BAD and name in record for name in names)


# --------------------------------------------------------------------------- sections

_names = list_of(text(60), scalar_ok=True)
_phones = list_of(phone, scalar_ok=True)


def _check_shift_starts(record: dict[str, Any], path: str, problems: Problems) -> None:
    pattern: ShiftPattern = record["pattern"]
    starts = record["shift_starts"]
    if starts is None:
        record["shift_starts"] = list(DEFAULT_SHIFT_STARTS[pattern])
        return
    wanted = 2 if pattern is ShiftPattern.day_night else 1
    if len(starts) != wanted:
        problems.add(f"{path}.shift_starts", "shift_count", pattern=pattern.value,
                     wanted=wanted, count=len(starts))
    elif wanted == 2 and starts[0] >= starts[1]:
        problems.add(f"{path}.shift_starts", "shift_order")


def _check_meeting(record: dict[str, Any], path: str, problems: Problems) -> None:
    tz = ZoneInfo(record["timezone"] or DEFAULT_ZONE)
    for name in ("starts_at", "ends_at"):
        value: datetime = record[name]
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        record[name] = value
    if record["ends_at"] <= record["starts_at"]:
        problems.add(f"{path}.ends_at", "ends_before_start")
    if record["reminder_offsets"] is None:
        record["reminder_offsets"] = list(DEFAULT_REMINDER_OFFSETS)


ZONE = Spec((
    Field("code", code, required=True),
    Field("name", text(_length(Zone.name)), required=True),
    Field("short_name", text(_length(Zone.short_name)), required=True),
    Field("english", text(_length(Zone.english))),
    Field("aliases", _names, default=list),
    Field("description", text()),
    Field("members", list_of(reference), default=list),
    Field("partners", list_of(reference), default=list),
))

UNIT = Spec((
    Field("code", code, required=True),
    Field("name", text(_length(Unit.name)), required=True),
    Field("short_name", text(_length(Unit.short_name)), required=True),
    Field("abbreviation", text(_length(Unit.abbreviation))),
    Field("english", text(_length(Unit.english))),
    Field("aliases", _names, default=list),
    Field("level", choice(UnitLevel), default=UnitLevel.province),
    Field("parent", reference),
    Field("timezone", timezone_name),
    Field("duty_phone", phone),
))

BRANCH = Spec((
    Field("code", code, required=True),
    Field("name", text(_length(Branch.name)), required=True),
    Field("english", text(_length(Branch.english))),
    Field("aliases", _names, default=list),
))

MECHANISM = Spec((
    Field("code", code, required=True),
    Field("name", text(_length(Mechanism.name)), required=True),
    Field("english", text(_length(Mechanism.english))),
    Field("aliases", _names, default=list),
))

USER = Spec((
    Field("telegram_id", telegram_user_id, required=True),
    Field("name", text(_length(User.full_name)), default=""),
    Field("username", text(_length(User.username))),
    Field("role", choice(Role), default=Role.officer),
    Field("unit", reference),
    Field("language", language),
    Field("active", boolean, default=True),
))

LIAISON = Spec((
    Field("key", code),
    Field("unit", reference, required=True),
    Field("branch", reference),
    Field("name", text(_length(Liaison.name)), required=True),
    Field("title", text(_length(Liaison.title))),
    Field("role", choice(LiaisonRole), default=LiaisonRole.primary),
    Field("phones", _phones, default=list),
    Field("telegram_id", telegram_user_id),
    Field("username", text(_length(Liaison.telegram_username))),
    Field("notes", text()),
    Field("active", boolean, default=True),
))

DUTY_ROOM = Spec((
    Field("unit", reference, required=True),
    Field("title", text(_length(DutyRoom.title)), required=True),
    Field("chat_id", chat_id),
    Field("phone", phone),
    Field("timezone", timezone_name),
    Field("active", boolean, default=True),
))

ROSTER_MEMBER = Spec((
    Field("name", text(_length(RosterMember.name)), required=True),
    Field("phone", phone),
    Field("telegram_id", telegram_user_id),
))

ROSTER = Spec((
    Field("duty_room", room_reference, required=True),
    Field("pattern", choice(ShiftPattern), required=True),
    Field("anchor_date", a_date, required=True),
    Field("shift_starts", list_of(hhmm, scalar_ok=True)),
    Field("timezone", timezone_name),
    Field("members", records(ROSTER_MEMBER, min_items=1), required=True),
), _check_shift_starts)

CHAIR_ROTATION = Spec((
    Field("zone", reference, required=True),
    Field("term_months", integer(minimum=1, maximum=120, what="term_months"),
          default=DEFAULT_TERM_MONTHS),
    Field("anchor_date", a_date, required=True),
    Field("order", list_of(reference, min_items=1), required=True),
))

CLAUSE = Spec((
    Field("number", text(_length(Clause.number)), required=True),
    Field("heading", text(_length(Clause.heading))),
    Field("text", text(), required=True),
    Field("mechanisms", list_of(reference, scalar_ok=True), default=list),
))

AGREEMENT = Spec((
    Field("code", code, required=True),
    Field("title", text(_length(Agreement.title)), required=True),
    Field("short_title", text(_length(Agreement.short_title)), required=True),
    Field("zone", reference),
    Field("signed_on", a_date),
    Field("signed_at", text(_length(Agreement.signed_at))),
    Field("status", choice(AgreementStatus), default=AgreementStatus.in_force),
    Field("supersedes", reference),
    Field("summary", text()),
    Field("parties", list_of(reference), default=list),
    Field("clauses", records(CLAUSE), default=list),
))

MEETING = Spec((
    Field("code", code),
    Field("kind", meeting_kind, required=True),
    Field("title", text(_length(Meeting.title)), required=True),
    Field("zone", reference),
    Field("starts_at", a_datetime, required=True),
    Field("ends_at", a_datetime, required=True),
    Field("timezone", timezone_name),
    Field("place", text(_length(Meeting.place))),
    Field("video_link", text(_length(Meeting.video_link))),
    Field("agenda", text()),
    Field("status", choice(MeetingStatus), default=MeetingStatus.scheduled),
    Field("participants", list_of(reference), default=list),
    Field("reminder_offsets", reminder_offsets),
), _check_meeting)

SPECS: dict[str, Spec] = {
    "zones": ZONE,
    "units": UNIT,
    "branches": BRANCH,
    "mechanisms": MECHANISM,
    "users": USER,
    "liaisons": LIAISON,
    "duty_rooms": DUTY_ROOM,
    "rosters": ROSTER,
    "chair_rotations": CHAIR_ROTATION,
    "agreements": AGREEMENT,
    "meetings": MEETING,
}

def check_shape(document: Any, problems: Problems) -> dict[str, list[dict[str, Any]]]:
    """Clean records per section (bad ones included, flagged `_bad`)."""
    sections: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
    if document is None:
        return sections
    if not isinstance(document, Mapping):
        problems.add("", "not_sections", sections=", ".join(SECTIONS))
        return sections
    for key in document:
        if key not in SPECS:
            problems.add(str(key), "unknown_section", sections=", ".join(SECTIONS))
    for name, spec in SPECS.items():
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            problems.add(name, "not_records", value=_describe(value))
            continue
        sections[name] = [
            check_record(spec, item, f"{name}[{index}]", problems)
            for index, item in enumerate(value)
        ]
    return sections
