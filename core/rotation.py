"""Duty-roster arithmetic: who is on duty at an instant, and when the next handover is.

Shift boundaries are local wall-clock times in the roster's time zone (08:30 every day,
08:00/20:00, or once a week), because that is when the duty room changes over; so
across a daylight-saving change a shift lasts 23 or 25 hours. Local times resolve as
`clock.local_instant` does: fold=0, a nonexistent time lands after the gap.

Shift 0 starts at the anchor date's first start time and is the officer at position 0;
shift `index` belongs to position `index mod member_count` (negative indexes before
the anchor keep cycling). Nothing is stored per shift, so the rotation cannot drift:
an override (also how swaps are stored) names one shift by its start instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from core.clock import InZone
from core.clock import as_utc
from core.clock import local_instant
from core.clock import named_zone

__all__ = [
    "DEFAULT_STARTS",
    "MIN_START_SPACING",
    "PATTERNS",
    "RosterSpec",
    "Shift",
    "apply_overrides",
    "boundary",
    "local_instant",
    "next_handover",
    "shift_at",
    "shift_by_index",
    "shifts_between",
    "swap_overrides",
    "upcoming_shifts",
    "who_is_on_duty",
]

# Days per period of each pattern; a period holds one shift per start time.
PATTERNS: Mapping[str, int] = {"daily": 1, "day_night": 1, "weekly": 7}
DEFAULT_STARTS: Mapping[str, tuple[time, ...]] = {
    "daily": (time(8, 30),),
    "day_night": (time(8, 0), time(20, 0)),
    "weekly": (time(8, 30),),
}
# Two start times closer than this could swap order across a daylight-saving gap.
MIN_START_SPACING = timedelta(hours=2)


def _minutes(at: time) -> float:
    return at.hour * 60 + at.minute + at.second / 60 + at.microsecond / 60e6


@dataclass(frozen=True)
class RosterSpec(InZone):
    """What the rotation needs from a `Roster`: pattern, anchor, zone, start times, size."""

    pattern: str
    anchor_date: date
    timezone: str
    shift_starts: tuple[time, ...]
    member_count: int

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown shift pattern {self.pattern!r}")
        if self.member_count < 1:
            raise ValueError("a roster needs at least one officer")
        named_zone(self.timezone)
        starts = tuple(s.replace(tzinfo=None, fold=0) for s in self.shift_starts)
        object.__setattr__(self, "shift_starts", starts)
        expected = 2 if self.pattern == "day_night" else 1
        if len(starts) != expected or list(starts) != sorted(set(starts)):
            raise ValueError(f"{self.pattern} needs {expected} ascending start time(s)")
        if expected == 2:
            apart = _minutes(starts[1]) - _minutes(starts[0])
            spacing = MIN_START_SPACING.total_seconds() / 60
            if apart < spacing or 24 * 60 - apart < spacing:
                raise ValueError("day and night shifts must each last at least two hours")

    @classmethod
    def build(
        cls,
        pattern: str,
        anchor_date: date,
        timezone: str,
        shift_starts: list[str] | tuple[str | time, ...] | None,
        member_count: int,
    ) -> RosterSpec:
        """From stored values ("HH:MM" strings), defaulting the start times by pattern."""
        try:
            starts = tuple(
                s if isinstance(s, time) else time.fromisoformat(str(s).strip())
                for s in (shift_starts or ())
            )
        except ValueError:
            raise ValueError(f"bad shift start time in {shift_starts!r}") from None
        return cls(str(pattern), anchor_date, timezone,
                   starts or DEFAULT_STARTS.get(str(pattern), ()), member_count)

    @property
    def shifts_per_period(self) -> int:
        return len(self.shift_starts)


@dataclass(frozen=True)
class Shift:
    """One shift: [start, end) in UTC, and who takes it (`overridden` if not the rotation)."""

    index: int
    start: datetime
    end: datetime
    member_position: int
    overridden: bool = False

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

def boundary(spec: RosterSpec, index: int) -> datetime:
    """Start of shift `index` (negative before the anchor), in UTC."""
    period, slot = divmod(index, spec.shifts_per_period)
    day = spec.anchor_date + timedelta(days=period * PATTERNS[spec.pattern])
    return local_instant(day, spec.shift_starts[slot], spec.zone)


def shift_by_index(spec: RosterSpec, index: int) -> Shift:
    """Shift number `index` as the rotation assigns it (no overrides)."""
    return Shift(index, boundary(spec, index), boundary(spec, index + 1),
                 index % spec.member_count)


def shift_at(spec: RosterSpec, instant: datetime) -> Shift:
    """The shift containing `instant` (start inclusive, end exclusive)."""
    instant = as_utc(instant)
    local_day = instant.astimezone(spec.zone).date()
    period = (local_day - spec.anchor_date).days // PATTERNS[spec.pattern]
    # An estimate from the local date, then a step or two to the exact shift.
    index = (period - 1) * spec.shifts_per_period
    while boundary(spec, index) > instant:
        index -= 1
    while boundary(spec, index + 1) <= instant:
        index += 1
    return shift_by_index(spec, index)


def shifts_between(spec: RosterSpec, start: datetime, end: datetime) -> Iterator[Shift]:
    """Every shift overlapping [start, end), in order (none if the span is empty)."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        return
    shift = shift_at(spec, start)
    while shift.start < end:
        yield shift
        shift = shift_by_index(spec, shift.index + 1)


def next_handover(spec: RosterSpec, instant: datetime) -> datetime:
    """The first handover strictly after `instant` (at a boundary: the following one)."""
    return shift_at(spec, instant).end


def apply_overrides(shift: Shift, overrides: Mapping[datetime, int]) -> Shift:
    """The shift with its officer replaced if `overrides` (start UTC → position) names it.

    An override naming the rotation's own officer changes nothing, so a swap that was
    undone does not show as an override.
    """
    position = overrides.get(shift.start)
    if position is None or position == shift.member_position:
        return shift
    return replace(shift, member_position=position, overridden=True)


def who_is_on_duty(
    spec: RosterSpec, overrides: Mapping[datetime, int], instant: datetime
) -> tuple[Shift, Shift]:
    """The current shift and the next one, overrides applied."""
    current = shift_at(spec, instant)
    following = shift_by_index(spec, current.index + 1)
    return apply_overrides(current, overrides), apply_overrides(following, overrides)


def upcoming_shifts(
    spec: RosterSpec, overrides: Mapping[datetime, int], instant: datetime, count: int
) -> list[Shift]:
    """`count` shifts from the one on duty at `instant` (from shift 0 if the roster has
    not started yet), overrides applied: what a roster will look like after an edit."""
    shift = shift_at(spec, instant)
    if shift.index < 0:
        shift = shift_by_index(spec, 0)
    found = []
    for index in range(shift.index, shift.index + max(count, 0)):
        found.append(apply_overrides(shift_by_index(spec, index), overrides))
    return found


def swap_overrides(
    spec: RosterSpec,
    shift_a_start: datetime,
    shift_b_start: datetime,
    overrides: Mapping[datetime, int] | None = None,
) -> dict[datetime, int]:
    """The two overrides that trade the officers of two shifts, named by exact start.

    The officers are those currently assigned (rotation plus `overrides`), so a second
    swap builds on the first. Raises ValueError if a start is not a shift boundary or
    both shifts already belong to the same officer.
    """
    current = overrides or {}
    first = apply_overrides(shift_at(spec, shift_a_start), current)
    second = apply_overrides(shift_at(spec, shift_b_start), current)
    if first.start != as_utc(shift_a_start) or second.start != as_utc(shift_b_start):
        raise ValueError("a swap names the exact start of two shifts")
    if first.member_position == second.member_position:
        raise ValueError("both shifts belong to the same officer")
    return {first.start: second.member_position, second.start: first.member_position}
