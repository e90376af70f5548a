"""Assistance requests without I/O: numbers, urgency, who may do what, button data,
filters (their periods: core/periods.py), statistics (views/requests.py renders them).

Everything here is a plain function of its arguments, so the rules are tested in
microseconds and the handlers stay thin.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from core.enums import RequestStatus
from core.enums import Role
from core.enums import Urgency
from core.normalize import normalize
from core.normalize import word_table
from core.periods import Period
from core.periods import parse_period

# --------------------------------------------------------------------------- numbers

NUMBER_PREFIX = "XZ"
_NUMBER_SEARCH = re.compile(r"^\s*XZ\s*-?\s*(\d{4})\s*-?\s*(\d{1,6})\s*$")


def format_number(year: int, sequence: int) -> str:
    """The readable number of the `sequence`-th request of `year`: XZ-2026-000123."""
    return f"{NUMBER_PREFIX}-{year:04d}-{sequence:06d}"


def parse_number(text: str) -> str | None:
    """`xz-2026-123`, full-width `ＸＺ－２０２６－０００１２３` → `XZ-2026-000123`; else None."""
    folded = unicodedata.normalize("NFKC", text).upper().replace("—", "-").replace("–", "-")
    match = _NUMBER_SEARCH.match(folded)
    if not match or int(match.group(2)) == 0:
        return None
    return format_number(int(match.group(1)), int(match.group(2)))


# --------------------------------------------------------------------------- urgency

URGENCY_BADGES = {Urgency.flash: "🔴", Urgency.urgent: "🟠", Urgency.routine: "🟢"}
URGENCY_ORDER = (Urgency.flash, Urgency.urgent, Urgency.routine)
_URGENCY_WORDS = {
    "特急": Urgency.flash,
    "flash": Urgency.flash,
    "加急": Urgency.urgent,
    "urgent": Urgency.urgent,
    "平急": Urgency.routine,
    "routine": Urgency.routine,
}


def fold(text: str) -> str:
    """NFKC, Traditional → Simplified, case folding: 雲南, ＳＩＣＨＵＡＮ and 已轉辦 match
    the names and word lists."""
    return normalize(text)


def meant_as_mechanism(word: str, names: Iterable[str], *, before_urgency: bool) -> bool:
    """An unknown word where the one-shot `/request` takes its mechanism: one standing
    right before the urgency, or naming part of a mechanism (治安管控 for 治安管控互动,
    three characters at least), was meant as a mechanism; anything else starts the subject.
    `names` are folded."""
    wanted = fold(word)
    if not wanted or parse_urgency(word) is not None:
        return False
    return before_urgency or (len(wanted) >= 3 and any(
        wanted in name or (len(name) >= 3 and name in wanted) for name in names))


def parse_sequence(text: str) -> int | None:
    """`000001` or `1` (as the buttons of /requests show a number): the sequence part of
    a request number, 1 to 999999; else None."""
    folded = unicodedata.normalize("NFKC", text).strip()
    if not re.fullmatch(r"\d{1,6}", folded) or int(folded) == 0:
        return None
    return int(folded)


def parse_urgency(text: str) -> Urgency | None:
    """特急/加急/平急 (the same in both scripts), flash/urgent/routine, with or without 🔴."""
    word = fold(text)
    for badge in URGENCY_BADGES.values():
        word = word.replace(badge, "")
    return _URGENCY_WORDS.get(word.strip())


# --------------------------------------------------------------------------- limits

SUBJECT_MAX = 100
DETAILS_MAX = 2000
NOTE_MAX = 1000
ATTACHMENTS_MAX = 10
TARGETS_MAX = 10


class TextProblem(StrEnum):
    empty = "empty"
    too_long = "too_long"


class StoreProblem(Exception):
    """A draft or change that cannot be stored (a request's, a notice's): `code` names a
    catalogue message, `values` fill it."""

    def __init__(self, code: str, **values: Any) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


def clean_line(text: str | None) -> str:
    """One line: whitespace (newlines included) collapsed to single spaces."""
    return " ".join((text or "").split())


def clean_block(text: str | None) -> str:
    """Several lines: trailing spaces and runs of blank lines removed."""
    lines = [line.rstrip() for line in (text or "").strip().splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept)


def text_problem(text: str, limit: int) -> TextProblem | None:
    if not text:
        return TextProblem.empty
    if len(text) > limit:
        return TextProblem.too_long
    return None


# --------------------------------------------------------------------------- actions


class Action(StrEnum):
    accept = "accept"  # 接收
    decline = "decline"  # 拒绝 (with a reason)
    transfer = "transfer"  # 转办 (to another unit)
    complete = "complete"  # 完成 (with a result)
    cancel = "cancel"  # 撤回 (the requesting side)


ACTIVE_STATUSES = frozenset({RequestStatus.open, RequestStatus.accepted})
ALLOWED_FROM: dict[Action, frozenset[RequestStatus]] = {
    Action.accept: frozenset({RequestStatus.open}),
    Action.decline: frozenset({RequestStatus.open}),
    Action.transfer: ACTIVE_STATUSES,
    Action.complete: ACTIVE_STATUSES,
    Action.cancel: ACTIVE_STATUSES,
}
RESULTING_STATUS = {
    Action.accept: RequestStatus.accepted,
    Action.decline: RequestStatus.declined,
    Action.transfer: RequestStatus.transferred,
    Action.complete: RequestStatus.completed,
    Action.cancel: RequestStatus.cancelled,
}
# What the person acting is asked for before the change is made.
NEEDS_NOTE = frozenset({Action.decline, Action.complete})
NEEDS_UNIT = frozenset({Action.transfer})
TARGET_ACTIONS = (Action.accept, Action.decline, Action.transfer, Action.complete)
STATUS_ICONS = {
    RequestStatus.open: "⏳",
    RequestStatus.accepted: "✅",
    RequestStatus.declined: "⛔",
    RequestStatus.transferred: "↪️",
    RequestStatus.completed: "🏁",
    RequestStatus.cancelled: "🚫",
}


def allowed(action: Action, status: RequestStatus) -> bool:
    return status in ALLOWED_FROM[action]


def is_coordinator(role: Role | None) -> bool:
    return role is not None and role.at_least(Role.coordinator)


def may_act(
    action: Action, role: Role | None, unit_id: int | None, *, from_unit_id: int,
    to_unit_id: int,
) -> bool:
    """Members of the target unit answer, the requesting unit withdraws; coordinators both."""
    if role is None:
        return False
    if is_coordinator(role):
        return True
    if action is Action.cancel:
        return unit_id is not None and unit_id == from_unit_id
    return unit_id is not None and unit_id == to_unit_id


def may_view(
    role: Role | None, unit_id: int | None, *, from_unit_id: int, to_unit_id: int
) -> bool:
    if role is None:
        return False
    return is_coordinator(role) or (unit_id is not None and unit_id in (from_unit_id, to_unit_id))


def available_actions(
    status: RequestStatus, role: Role | None, unit_id: int | None, *, from_unit_id: int,
    to_unit_id: int, include_cancel: bool = False,
) -> list[Action]:
    """The buttons this person may press on a request in this state."""
    candidates = [*TARGET_ACTIONS, Action.cancel] if include_cancel else list(TARGET_ACTIONS)
    return [
        action for action in candidates
        if allowed(action, status)
        and may_act(action, role, unit_id, from_unit_id=from_unit_id, to_unit_id=to_unit_id)
    ]


# --------------------------------------------------------------------------- button data

CALLBACK_PREFIX = "rq:"
_ACTION_CODES = {
    Action.accept: "acc",
    Action.decline: "dec",
    Action.transfer: "tra",
    Action.complete: "cmp",
    Action.cancel: "can",
}
_CODE_ACTIONS = {code: action for action, code in _ACTION_CODES.items()}
# Ids of at most 9 digits: PostgreSQL's integer ids stop at 2**31 - 1, and a forged larger
# one must be refused here, not fail in the database.
_ACTION_DATA = re.compile(r"^rq:(acc|dec|tra|cmp|can):([1-9]\d{0,8}):([1-9]\d{0,8})$")


@dataclass(frozen=True)
class Press:
    """A button press as the server reads it; the version makes old buttons stale."""

    action: Action
    request_id: int
    version: int


def action_data(action: Action, request_id: int, version: int) -> str:
    return f"{CALLBACK_PREFIX}{_ACTION_CODES[action]}:{request_id}:{version}"


def parse_action_data(data: str | None) -> Press | None:
    """None for anything that is not exactly what `action_data` produces."""
    match = _ACTION_DATA.match(data or "")
    if match is None:
        return None
    return Press(_CODE_ACTIONS[match.group(1)], int(match.group(2)), int(match.group(3)))


# --------------------------------------------------------------------------- list filters


class Scope(StrEnum):
    mine = "mine"  # incoming and outgoing of my unit
    incoming = "in"
    outgoing = "out"
    all = "all"  # coordinators: every unit


_SCOPE_WORDS = word_table({
    Scope.incoming: "in incoming 收 收到 来件 來件",
    Scope.outgoing: "out outgoing 发 發 发出 發出 去件",
    Scope.all: "all 全部",
})
OPEN_WORDS = {"open", "未结", "未結", "待办", "待辦", "在办", "在辦"}
UNDELIVERED_WORDS = {"undelivered", "未送达", "未送達"}
_STATUS_WORDS = word_table({
    RequestStatus.open: "pending 待接收 未接收",
    RequestStatus.accepted: "accepted 已接收",
    RequestStatus.declined: "declined 已拒绝 已拒絕",
    RequestStatus.transferred: "transferred 已转办 已轉辦",
    RequestStatus.completed: "completed done 已完成 完成 已办结 已辦結",
    RequestStatus.cancelled: "cancelled canceled 已撤回 撤回",
})


@dataclass
class Filters:
    """What /requests and /export requests select; JSON-friendly for paging buttons."""

    scope: Scope = Scope.mine
    statuses: list[RequestStatus] = field(default_factory=list)  # empty: any
    urgency: Urgency | None = None
    unit_query: str | None = None
    period: Period | None = None
    open_only: bool = False
    undelivered: bool = False

    def wanted_statuses(self) -> list[RequestStatus]:
        if self.undelivered:
            return [RequestStatus.open]
        if self.open_only and not self.statuses:
            return sorted(ACTIVE_STATUSES)
        return list(self.statuses)

    def to_json(self) -> dict[str, object]:
        return {
            "scope": self.scope.value,
            "statuses": [s.value for s in self.statuses],
            "urgency": self.urgency.value if self.urgency else None,
            "unit_query": self.unit_query,
            "period": [self.period.start.isoformat(), self.period.end.isoformat()]
            if self.period else None,
            "open_only": self.open_only,
            "undelivered": self.undelivered,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Filters:
        period = data.get("period")
        return cls(
            scope=Scope(str(data.get("scope", Scope.mine.value))),
            statuses=[RequestStatus(str(s)) for s in data.get("statuses") or []],
            urgency=Urgency(str(data["urgency"])) if data.get("urgency") else None,
            unit_query=str(data["unit_query"]) if data.get("unit_query") else None,
            period=Period(datetime.fromisoformat(period[0]), datetime.fromisoformat(period[1]))
            if period else None,
            open_only=bool(data.get("open_only")),
            undelivered=bool(data.get("undelivered")),
        )


def parse_filters(
    words: Sequence[str], now: datetime, tz: ZoneInfo, *, default_open: bool = True
) -> Filters:
    """Words in any order: scope, status, urgency, period; the rest names a unit."""
    filters = Filters()
    unit_words: list[str] = []
    for raw in words:
        word = fold(raw)
        if not word:
            continue
        if word in _SCOPE_WORDS:
            filters.scope = _SCOPE_WORDS[word]
        elif word in OPEN_WORDS:
            filters.open_only = True
        elif word in UNDELIVERED_WORDS:
            filters.undelivered = True
        elif word in _STATUS_WORDS:
            if _STATUS_WORDS[word] not in filters.statuses:
                filters.statuses.append(_STATUS_WORDS[word])
        elif (urgency := parse_urgency(raw)) is not None:
            filters.urgency = urgency
        elif (period := parse_period(raw, now, tz)) is not None:
            filters.period = period
        else:
            unit_words.append(raw.strip())
    if unit_words:
        filters.unit_query = " ".join(unit_words)
    if default_open and not filters.statuses and filters.period is None:
        filters.open_only = True
    return filters


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class StatsRow:
    mechanism: str | None
    to_unit: str
    status: RequestStatus
    created_at: datetime
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    completed_at: datetime | None
    reply_due_at: datetime | None


@dataclass(frozen=True)
class RequestStats:
    period: Period
    total: int
    by_mechanism: list[tuple[str, int]]
    by_unit: list[tuple[str, int]]
    by_status: list[tuple[RequestStatus, int]]
    median_ack: timedelta | None
    median_complete: timedelta | None
    overdue: int

    @property
    def overdue_share(self) -> float | None:
        return self.overdue / self.total if self.total else None


def _late(due: datetime | None, done: datetime | None, status: RequestStatus,
          now: datetime) -> bool:
    """Done after the deadline, or not done while still active and the deadline passed."""
    if due is None:
        return False
    if done is not None:
        return done > due
    return status in ACTIVE_STATUSES and now > due


def is_overdue(row: StatsRow, now: datetime) -> bool:
    """Answered after the acknowledgement deadline (or not yet, and it passed), or the
    reply deadline passed before completion."""
    return (_late(row.ack_due_at, row.acknowledged_at, row.status, now)
            or _late(row.reply_due_at, row.completed_at, row.status, now))


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


def compute_stats(rows: Iterable[StatsRow], period: Period, now: datetime) -> RequestStats:
    rows = list(rows)
    mechanisms: Counter[str] = Counter(row.mechanism or "—" for row in rows)
    units: Counter[str] = Counter(row.to_unit for row in rows)
    statuses: Counter[RequestStatus] = Counter(row.status for row in rows)
    return RequestStats(
        period=period,
        total=len(rows),
        by_mechanism=sorted(mechanisms.items(), key=lambda kv: (-kv[1], kv[0])),
        by_unit=sorted(units.items(), key=lambda kv: (-kv[1], kv[0])),
        by_status=[(status, statuses[status]) for status in RequestStatus if statuses[status]],
        median_ack=_median([row.acknowledged_at - row.created_at for row in rows
                            if row.acknowledged_at is not None]),
        median_complete=_median([row.completed_at - row.created_at for row in rows
                                 if row.completed_at is not None]),
        overdue=sum(is_overdue(row, now) for row in rows),
    )


