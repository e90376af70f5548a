"""Chair rotation (轮值): which member unit chairs a zone's joint meeting, and until when.

Terms are whole months from the anchor date and the chair changes hands at a local
time of day in the zone's time zone (the handover is done at the joint meeting, so it
follows the wall clock, not a count of hours). Term `index` belongs to the unit at
position `index mod unit_count`. Month arithmetic clamps the day: a rotation anchored
on 31 January hands over on 28/29 February, then on 31 March again (every handover is
computed from the anchor, so one short month does not shift the later ones).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time

from core.clock import InZone
from core.clock import as_utc
from core.clock import local_instant
from core.clock import named_zone
from core.schedule import PlannedReminder
from core.schedule import reminders_before

DEFAULT_HANDOVER_OFFSETS = (7 * 24 * 60, 24 * 60)


@dataclass(frozen=True)
class ChairSpec(InZone):
    """What the arithmetic needs from a `ChairRotation` (and the zone's time zone)."""

    anchor_date: date
    term_months: int
    unit_count: int
    timezone: str = "Asia/Shanghai"
    handover_time: time = time(9, 0)

    def __post_init__(self) -> None:
        if self.term_months < 1 or self.unit_count < 1:
            raise ValueError("a rotation needs a term of at least a month and one unit")
        named_zone(self.timezone)


@dataclass(frozen=True)
class ChairTerm:
    """One term: [start, end) in UTC, and the position of the unit in the chair."""

    index: int
    position: int
    start: datetime
    end: datetime

def add_months(day: date, months: int) -> date:
    """`day` plus whole months, the day clamped to the target month's last day."""
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def term_start(spec: ChairSpec, index: int) -> datetime:
    """The handover that starts term `index` (negative before the anchor), in UTC."""
    day = add_months(spec.anchor_date, index * spec.term_months)
    return local_instant(day, spec.handover_time, spec.zone)


def term_by_index(spec: ChairSpec, index: int) -> ChairTerm:
    return ChairTerm(index, index % spec.unit_count, term_start(spec, index),
                     term_start(spec, index + 1))


def chair_at(spec: ChairSpec, instant: datetime) -> ChairTerm:
    """The term in force at `instant` (a term starts at its handover, inclusive)."""
    instant = as_utc(instant)
    local = instant.astimezone(spec.zone).date()
    months = (local.year - spec.anchor_date.year) * 12 + local.month - spec.anchor_date.month
    index = months // spec.term_months - 1
    while term_start(spec, index) > instant:
        index -= 1
    while term_start(spec, index + 1) <= instant:
        index += 1
    return term_by_index(spec, index)


def handover_reminder_instants(
    term: ChairTerm, offsets_minutes: Iterable[int] = DEFAULT_HANDOVER_OFFSETS
) -> list[PlannedReminder]:
    """Reminders before the handover that starts `term` (default 7 days and 1 day before),
    earliest first; each carries its offset label for the outbox key."""
    return reminders_before(term.start, list(offsets_minutes))
