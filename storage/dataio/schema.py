"""The shape of a data file: sections, fields, types and defaults.

`check_shape` walks the whole document and returns clean records (plain dicts with
normalised values, every field present) plus the problems found. References are
kept as the text the file gave; `resolve.py` turns them into identities.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from core.clock import time_zone
from core.enums import AgreementStatus
from core.enums import LiaisonRole
from core.enums import MeetingStatus
from core.enums import Role
from core.enums import ShiftPattern
from core.enums import UnitLevel
from storage.dataio.converters import BAD
from storage.dataio.converters import Converter
from storage.dataio.converters import a_date
from storage.dataio.converters import a_datetime
from storage.dataio.converters import boolean
from storage.dataio.converters import chat_id
from storage.dataio.converters import choice
from storage.dataio.converters import code
from storage.dataio.converters import describe
from storage.dataio.converters import hhmm
from storage.dataio.converters import integer
from storage.dataio.converters import language
from storage.dataio.converters import list_of
from storage.dataio.converters import list_ok
from storage.dataio.converters import meeting_kind
from storage.dataio.converters import phone
from storage.dataio.converters import reference
from storage.dataio.converters import reminder_offsets
from storage.dataio.converters import room_reference
from storage.dataio.converters import telegram_user_id
from storage.dataio.converters import text
from storage.dataio.converters import timezone_name
from storage.dataio.problems import Problems
from storage.models import Agreement
from storage.models import Branch
from storage.models import Clause
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Meeting
from storage.models import RosterMember
from storage.models import Unit
from storage.models import User
from storage.models import Zone

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

DEFAULT_REMINDER_OFFSETS = [7 * 24 * 60, 24 * 60, 60]
DEFAULT_TERM_MONTHS = 12
DEFAULT_SHIFT_STARTS = {
    ShiftPattern.daily: ["08:30"],
    ShiftPattern.day_night: ["08:00", "20:00"],
    ShiftPattern.weekly: ["08:30"],
}


def _length(column: Any) -> int | None:
    return getattr(column.type, "length", None)


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
        if not list_ok(value, path, problems, min_items):
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
        problems.add(path, "not_record", value=describe(value))
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
    tz = time_zone(record["timezone"])
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
            problems.add(name, "not_records", value=describe(value))
            continue
        sections[name] = [
            check_record(spec, item, f"{name}[{index}]", problems)
            for index, item in enumerate(value)
        ]
    return sections
