"""Duty-roster arithmetic: who is on duty at an instant, and when the next handover is.

Shift boundaries are local wall-clock times in the roster's time zone (08:30 every day,
08:00/20:00, or weekly), so across a daylight-saving change a shift lasts 23 or 25
hours. A local time that does not exist (spring forward) resolves to the same instant
as the offset before the change, i.e. later on the wall clock; an ambiguous one (fall
back) to its first occurrence. Shift 0 starts at the anchor date's first start time;
the officer at position `index mod member_count` takes shift `index`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PATTERNS = {"daily": 1, "day_night": 1, "weekly": 7}
DEFAULT_STARTS = {"daily": (time(8, 30),), "day_night": (time(8, 0), time(20, 0)),
                  "weekly": (time(8, 30),)}


@dataclass(frozen=True)
class RosterSpec:
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
        expected = 2 if self.pattern == "day_night" else 1
        if len(self.shift_starts) != expected or list(self.shift_starts) != sorted(
            self.shift_starts
        ):
            raise ValueError(f"{self.pattern} needs {expected} ascending start time(s)")

    @classmethod
    def build(cls, pattern: str, anchor_date: date, timezone: str,
              shift_starts: list[str] | tuple[time, ...] | None, member_count: int) -> RosterSpec:
        """From stored values ("HH:MM" strings), defaulting the start times by pattern."""
        starts = tuple(
            s if isinstance(s, time) else time.fromisoformat(s) for s in (shift_starts or ())
        ) or DEFAULT_STARTS.get(pattern, ())
        return cls(pattern, anchor_date, timezone, starts, member_count)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Shift:
    index: int
    start: datetime
    end: datetime
    member_position: int
    overridden: bool = False


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (gaps resolve forward, folds to the first)."""
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def boundary(spec: RosterSpec, index: int) -> datetime:
    """Start of shift `index` (negative before the anchor)."""
    per_period = len(spec.shift_starts)
    period, slot = divmod(index, per_period)
    day = spec.anchor_date + timedelta(days=period * PATTERNS[spec.pattern])
    return local_instant(day, spec.shift_starts[slot], spec.zone)


def _shift(spec: RosterSpec, index: int) -> Shift:
    return Shift(index, boundary(spec, index), boundary(spec, index + 1),
                 index % spec.member_count)


def shift_at(spec: RosterSpec, instant: datetime) -> Shift:
    local_day = instant.astimezone(spec.zone).date()
    period = (local_day - spec.anchor_date).days // PATTERNS[spec.pattern]
    index = (period - 1) * len(spec.shift_starts)
    while boundary(spec, index) > instant:
        index -= 1
    while boundary(spec, index + 1) <= instant:
        index += 1
    return _shift(spec, index)


def shifts_between(spec: RosterSpec, start: datetime, end: datetime) -> Iterator[Shift]:
    """Every shift overlapping [start, end), in order."""
    shift = shift_at(spec, start)
    while shift.start < end:
        yield shift
        shift = _shift(spec, shift.index + 1)


def next_handover(spec: RosterSpec, instant: datetime) -> datetime:
    return shift_at(spec, instant).end


def apply_overrides(shift: Shift, overrides: Mapping[datetime, int]) -> Shift:
    """Overrides map a shift's start (UTC) to the position of the officer who takes it."""
    position = overrides.get(shift.start)
    if position is None or position == shift.member_position:
        return shift
    return replace(shift, member_position=position, overridden=True)


def who_is_on_duty(
    spec: RosterSpec, overrides: Mapping[datetime, int], instant: datetime
) -> tuple[Shift, Shift]:
    """The current shift and the next one, overrides applied."""
    current = shift_at(spec, instant)
    return (apply_overrides(current, overrides),
            apply_overrides(_shift(spec, current.index + 1), overrides))


def swap_overrides(
    spec: RosterSpec, overrides: Mapping[datetime, int], first_start: datetime,
    second_start: datetime,
) -> dict[datetime, int]:
    """The overrides that trade two shifts' officers (as currently assigned)."""
    first = apply_overrides(shift_at(spec, first_start), overrides)
    second = apply_overrides(shift_at(spec, second_start), overrides)
    if first.start != first_start or second.start != second_start:
        raise ValueError("a swap names the exact start of two shifts")
    if first.member_position == second.member_position:
        raise ValueError("both shifts belong to the same officer")
    return {first.start: second.member_position, second.start: first.member_position}
