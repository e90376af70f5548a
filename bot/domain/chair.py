"""Chair rotation (轮值): which member unit chairs a zone's joint meeting, and until when.

Terms are whole months from the anchor date; each handover happens at a local time
of day in the zone's time zone. Month arithmetic clamps the day (31 January plus one
month is 28 or 29 February).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class ChairSpec:
    anchor_date: date
    term_months: int
    unit_count: int
    timezone: str = "Asia/Shanghai"
    handover_time: time = time(9, 0)

    def __post_init__(self) -> None:
        if self.term_months < 1 or self.unit_count < 1:
            raise ValueError("a rotation needs a term of at least a month and one unit")


@dataclass(frozen=True)
class ChairTerm:
    index: int
    position: int
    start: datetime
    end: datetime


def add_months(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def term_start(spec: ChairSpec, index: int) -> datetime:
    day = add_months(spec.anchor_date, index * spec.term_months)
    return datetime.combine(day, spec.handover_time, tzinfo=ZoneInfo(spec.timezone)).astimezone(
        UTC)


def _term(spec: ChairSpec, index: int) -> ChairTerm:
    return ChairTerm(index, index % spec.unit_count, term_start(spec, index),
                     term_start(spec, index + 1))


def chair_at(spec: ChairSpec, instant: datetime) -> ChairTerm:
    local = instant.astimezone(ZoneInfo(spec.timezone)).date()
    months = (local.year - spec.anchor_date.year) * 12 + local.month - spec.anchor_date.month
    index = months // spec.term_months - 1
    while term_start(spec, index) > instant:
        index -= 1
    while term_start(spec, index + 1) <= instant:
        index += 1
    return _term(spec, index)


def next_chair(spec: ChairSpec, instant: datetime) -> ChairTerm:
    return _term(spec, chair_at(spec, instant).index + 1)
