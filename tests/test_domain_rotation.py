"""Roster arithmetic across month and year ends, time zones and daylight saving."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.rotation import (
    RosterSpec,
    apply_overrides,
    next_handover,
    shift_at,
    shifts_between,
    swap_overrides,
    who_is_on_duty,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def daily(zone: str = "Asia/Shanghai", members: int = 4) -> RosterSpec:
    return RosterSpec.build("daily", date(2026, 11, 1), zone, ["08:30"], members)


def test_daily_shift_runs_from_0830_to_0830_local() -> None:
    shift = shift_at(daily(), local("Asia/Shanghai", 2026, 11, 3, 8, 29))
    assert shift.index == 1 and shift.member_position == 1
    assert shift.start == local("Asia/Shanghai", 2026, 11, 2, 8, 30)
    assert shift.end == local("Asia/Shanghai", 2026, 11, 3, 8, 30)
    assert shift_at(daily(), local("Asia/Shanghai", 2026, 11, 3, 8, 30)).index == 2


def test_across_month_and_year_ends() -> None:
    spec = daily(members=3)
    new_year = shift_at(spec, local("Asia/Shanghai", 2027, 1, 1, 0, 0))
    assert new_year.start == local("Asia/Shanghai", 2026, 12, 31, 8, 30)
    assert new_year.index == (date(2026, 12, 31) - date(2026, 11, 1)).days
    assert new_year.member_position == new_year.index % 3
    leap = shift_at(spec, local("Asia/Shanghai", 2028, 2, 29, 12, 0))
    assert leap.start == local("Asia/Shanghai", 2028, 2, 29, 8, 30)
    assert leap.end == local("Asia/Shanghai", 2028, 3, 1, 8, 30)


def test_day_and_night_shifts() -> None:
    spec = RosterSpec.build("day_night", date(2026, 11, 30), "Asia/Shanghai", None, 5)
    day = shift_at(spec, local("Asia/Shanghai", 2026, 12, 1, 12, 0))
    night = shift_at(spec, local("Asia/Shanghai", 2026, 12, 2, 3, 0))
    assert (day.index, day.start) == (2, local("Asia/Shanghai", 2026, 12, 1, 8, 0))
    assert (night.index, night.start) == (3, local("Asia/Shanghai", 2026, 12, 1, 20, 0))
    assert night.end == local("Asia/Shanghai", 2026, 12, 2, 8, 0)


def test_weekly_shifts_start_on_the_anchor_weekday() -> None:
    spec = RosterSpec.build("weekly", date(2026, 11, 2), "Asia/Shanghai", ["09:00"], 2)  # Monday
    shift = shift_at(spec, local("Asia/Shanghai", 2026, 11, 15, 23, 0))
    assert shift.start == local("Asia/Shanghai", 2026, 11, 9, 9, 0)
    assert shift.end - shift.start == timedelta(days=7) and shift.member_position == 1


def test_urumqi_is_two_hours_behind_beijing() -> None:
    shift = shift_at(daily("Asia/Urumqi"), local("Asia/Shanghai", 2026, 11, 3, 10, 0))
    assert shift.start == local("Asia/Urumqi", 2026, 11, 2, 8, 30)  # 10:30 Beijing time
    assert next_handover(daily("Asia/Urumqi"), shift.start) == local("Asia/Shanghai",
                                                                     2026, 11, 3, 10, 30)


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [("Europe/Berlin", date(2027, 3, 27), 23), ("Europe/Berlin", date(2026, 10, 24), 25),
     ("America/New_York", date(2027, 3, 13), 23), ("America/New_York", date(2026, 10, 31), 25)],
)
def test_shifts_follow_the_wall_clock_across_dst(zone: str, day: date, hours: int) -> None:
    spec = RosterSpec.build("daily", date(2026, 10, 1), zone, ["08:30"], 3)
    shift = shift_at(spec, datetime.combine(day, time(12), tzinfo=ZoneInfo(zone)))
    assert shift.end - shift.start == timedelta(hours=hours)
    assert shift.start.astimezone(ZoneInfo(zone)).time() == time(8, 30)
    assert shift.end.astimezone(ZoneInfo(zone)).time() == time(8, 30)


def test_start_in_a_dst_gap_resolves_forward() -> None:
    spec = RosterSpec.build("daily", date(2027, 3, 1), "America/New_York", ["02:30"], 2)
    shift = shift_at(spec, local("America/New_York", 2027, 3, 14, 12, 0))
    assert shift.start.astimezone(ZoneInfo("America/New_York")).time() == time(3, 30)


def test_overrides_and_swaps() -> None:
    spec = daily(members=4)
    now = local("Asia/Shanghai", 2026, 11, 3, 12, 0)
    current, following = who_is_on_duty(spec, {}, now)
    assert (current.member_position, following.member_position) == (2, 3)
    overrides = {current.start: 0}
    current, _ = who_is_on_duty(spec, overrides, now)
    assert current.member_position == 0 and current.overridden
    swapped = swap_overrides(spec, overrides, current.start, following.start)
    assert swapped == {current.start: 3, following.start: 0}
    assert apply_overrides(following, swapped).member_position == 0
    with pytest.raises(ValueError):
        swap_overrides(spec, {}, current.start + timedelta(minutes=1), following.start)


def test_instants_before_the_anchor() -> None:
    shift = shift_at(daily(members=3), local("Asia/Shanghai", 2026, 10, 30, 12, 0))
    assert shift.index == -2 and shift.member_position == 1


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValueError):
        RosterSpec.build("fortnightly", date(2026, 1, 1), "Asia/Shanghai", None, 2)
    with pytest.raises(ValueError):
        RosterSpec.build("day_night", date(2026, 1, 1), "Asia/Shanghai", ["08:00"], 2)
    with pytest.raises(ValueError):
        RosterSpec.build("daily", date(2026, 1, 1), "Asia/Shanghai", None, 0)


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2029, 12, 31),
                        timezones=st.just(UTC))
specs = st.builds(
    RosterSpec.build,
    st.sampled_from(["daily", "day_night", "weekly"]),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
    st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin", "America/New_York"]),
    st.none(),
    st.integers(min_value=1, max_value=9),
)


@settings(max_examples=300, deadline=None)
@given(specs, instants, st.integers(min_value=1, max_value=72))
def test_shifts_tile_time_without_gaps_or_overlaps(
    spec: RosterSpec, start: datetime, hours: int
) -> None:
    shifts = list(shifts_between(spec, start, start + timedelta(hours=hours)))
    assert shifts[0].start <= start < shifts[0].end
    for before, after in itertools.pairwise(shifts):
        assert before.end == after.start and after.index == before.index + 1
        assert after.member_position == (before.member_position + 1) % spec.member_count
    for shift in shifts:
        assert shift_at(spec, shift.start) == shift
        assert shift.end > shift.start
