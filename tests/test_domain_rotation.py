"""Roster arithmetic across month and year ends, time zones and daylight saving."""

from __future__ import annotations

import itertools
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.enums import ShiftPattern
from core.rotation import RosterSpec
from core.rotation import Shift
from core.rotation import apply_overrides
from core.rotation import boundary
from core.rotation import next_handover
from core.rotation import shift_at
from core.rotation import shift_by_index
from core.rotation import shifts_between
from core.rotation import swap_overrides
from core.rotation import upcoming_shifts
from core.rotation import who_is_on_duty

SH = "Asia/Shanghai"


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def daily(zone: str = SH, members: int = 4, anchor: date = date(2026, 11, 1)) -> RosterSpec:
    return RosterSpec.build("daily", anchor, zone, ["08:30"], members)


# --------------------------------------------------------------------------- patterns


def test_daily_shift_runs_from_0830_to_0830_local() -> None:
    shift = shift_at(daily(), local(SH, 2026, 11, 3, 8, 29))
    assert shift.index == 1 and shift.member_position == 1
    assert shift.start == local(SH, 2026, 11, 2, 8, 30)
    assert shift.end == local(SH, 2026, 11, 3, 8, 30)
    assert shift.start.tzinfo == UTC and shift.duration == timedelta(hours=24)
    # The boundary belongs to the incoming shift.
    assert shift_at(daily(), local(SH, 2026, 11, 3, 8, 30)).index == 2


def test_first_shift_starts_at_the_anchor() -> None:
    spec = daily(members=3)
    first = shift_at(spec, local(SH, 2026, 11, 1, 8, 30))
    assert (first.index, first.member_position) == (0, 0)
    assert boundary(spec, 0) == first.start == local(SH, 2026, 11, 1, 8, 30)
    assert shift_at(spec, local(SH, 2026, 11, 1, 8, 29, 59)).index == -1


def test_across_a_month_end() -> None:
    spec = daily(members=3, anchor=date(2027, 1, 30))
    shift = shift_at(spec, local(SH, 2027, 2, 1, 3, 0))
    assert shift.start == local(SH, 2027, 1, 31, 8, 30)
    assert (shift.index, shift.member_position) == (1, 1)
    assert shift.end == local(SH, 2027, 2, 1, 8, 30)


def test_across_the_year_end() -> None:
    spec = daily(members=3)
    eve = shift_at(spec, local(SH, 2026, 12, 31, 12, 0))
    new_year = shift_at(spec, local(SH, 2027, 1, 1, 0, 0))
    assert new_year == eve  # 31 December 08:30 until 1 January 08:30
    assert new_year.start == local(SH, 2026, 12, 31, 8, 30)
    assert new_year.end == local(SH, 2027, 1, 1, 8, 30)
    assert new_year.index == (date(2026, 12, 31) - date(2026, 11, 1)).days == 60
    assert new_year.member_position == 0
    following = shift_at(spec, new_year.end)
    assert (following.index, following.member_position) == (61, 1)


def test_leap_day() -> None:
    spec = daily(members=3)
    leap = shift_at(spec, local(SH, 2028, 2, 29, 12, 0))
    assert leap.start == local(SH, 2028, 2, 29, 8, 30)
    assert leap.end == local(SH, 2028, 3, 1, 8, 30)
    before = shift_at(spec, local(SH, 2028, 2, 29, 8, 0))
    assert before.start == local(SH, 2028, 2, 28, 8, 30) and before.index == leap.index - 1


def test_day_and_night_shifts() -> None:
    spec = RosterSpec.build("day_night", date(2026, 11, 30), SH, None, 5)
    assert spec.shift_starts == (time(8, 0), time(20, 0))
    day = shift_at(spec, local(SH, 2026, 12, 1, 12, 0))
    night = shift_at(spec, local(SH, 2026, 12, 2, 3, 0))
    assert (day.index, day.start) == (2, local(SH, 2026, 12, 1, 8, 0))
    assert day.end == local(SH, 2026, 12, 1, 20, 0)
    assert (night.index, night.start) == (3, local(SH, 2026, 12, 1, 20, 0))
    assert night.end == local(SH, 2026, 12, 2, 8, 0)
    assert (day.member_position, night.member_position) == (2, 3)


def test_night_shift_over_the_year_end() -> None:
    spec = RosterSpec.build("day_night", date(2026, 12, 1), SH, ["08:00", "20:00"], 4)
    night = shift_at(spec, local(SH, 2027, 1, 1, 0, 0))
    assert night.start == local(SH, 2026, 12, 31, 20, 0)
    assert night.end == local(SH, 2027, 1, 1, 8, 0)
    assert night.index == 2 * 30 + 1 and night.member_position == 61 % 4


def test_weekly_shifts_start_on_the_anchor_weekday() -> None:
    spec = RosterSpec.build("weekly", date(2026, 11, 2), SH, ["09:00"], 2)  # a Monday
    shift = shift_at(spec, local(SH, 2026, 11, 15, 23, 0))
    assert shift.start == local(SH, 2026, 11, 9, 9, 0)
    assert shift.start.astimezone(ZoneInfo(SH)).weekday() == 0
    assert shift.duration == timedelta(days=7) and shift.member_position == 1
    # Over the year end: Monday 28 December to Monday 4 January.
    shift = shift_at(spec, local(SH, 2027, 1, 1, 12, 0))
    assert shift.start == local(SH, 2026, 12, 28, 9, 0)
    assert shift.end == local(SH, 2027, 1, 4, 9, 0)


def test_urumqi_is_utc_plus_six_two_hours_behind_beijing() -> None:
    spec = daily("Asia/Urumqi")
    shift = shift_at(spec, local(SH, 2026, 11, 3, 10, 0))  # 08:00 in Ürümqi
    assert shift.start == local("Asia/Urumqi", 2026, 11, 2, 8, 30)
    assert shift.start == datetime(2026, 11, 2, 2, 30, tzinfo=UTC)
    assert next_handover(spec, shift.start) == local(SH, 2026, 11, 3, 10, 30)


def test_the_same_roster_in_beijing_and_urumqi_differs_by_two_hours() -> None:
    instant = datetime(2027, 6, 1, tzinfo=UTC)
    beijing, urumqi = shift_at(daily(SH), instant), shift_at(daily("Asia/Urumqi"), instant)
    assert urumqi.start - beijing.start == timedelta(hours=2)


# --------------------------------------------------------------------------- daylight saving


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [("Europe/Berlin", date(2027, 3, 27), 23), ("Europe/Berlin", date(2026, 10, 24), 25),
     ("America/New_York", date(2027, 3, 13), 23), ("America/New_York", date(2026, 10, 31), 25),
     ("Asia/Shanghai", date(2027, 3, 13), 24)],
)
def test_daily_shifts_follow_the_wall_clock_across_dst(zone: str, day: date, hours: int) -> None:
    spec = RosterSpec.build("daily", date(2026, 10, 1), zone, ["08:30"], 3)
    shift = shift_at(spec, datetime.combine(day, time(12), tzinfo=ZoneInfo(zone)))
    assert shift.duration == timedelta(hours=hours)
    assert shift.start.astimezone(ZoneInfo(zone)).time() == time(8, 30)
    assert shift.end.astimezone(ZoneInfo(zone)).time() == time(8, 30)


def test_night_shift_is_one_hour_shorter_or_longer_at_a_dst_change() -> None:
    spec = RosterSpec.build("day_night", date(2026, 10, 1), "Europe/Berlin", None, 2)
    spring = shift_at(spec, local("Europe/Berlin", 2027, 3, 28, 3, 30))
    autumn = shift_at(spec, local("Europe/Berlin", 2026, 10, 25, 1, 30))
    assert spring.duration == timedelta(hours=11) and autumn.duration == timedelta(hours=13)
    day_after = shift_at(spec, local("Europe/Berlin", 2027, 3, 28, 12, 0))
    assert day_after.duration == timedelta(hours=12)


def test_weekly_shift_over_a_dst_change_is_a_week_less_an_hour() -> None:
    spec = RosterSpec.build("weekly", date(2027, 3, 8), "America/New_York", ["09:00"], 3)
    shift = shift_at(spec, local("America/New_York", 2027, 3, 14, 12, 0))
    assert shift.duration == timedelta(days=7, hours=-1)


def test_start_in_a_dst_gap_resolves_forward() -> None:
    spec = RosterSpec.build("daily", date(2027, 3, 1), "America/New_York", ["02:30"], 2)
    shift = shift_at(spec, local("America/New_York", 2027, 3, 14, 12, 0))
    assert shift.start.astimezone(ZoneInfo("America/New_York")).time() == time(3, 30)
    assert shift.start == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    # The next day the wall clock is back to 02:30.
    assert shift.end.astimezone(ZoneInfo("America/New_York")).time() == time(2, 30)
    assert shift.duration == timedelta(hours=23)


def test_ambiguous_start_resolves_to_the_first_occurrence() -> None:
    spec = RosterSpec.build("daily", date(2026, 10, 1), "America/New_York", ["01:30"], 2)
    shift = shift_at(spec, local("America/New_York", 2026, 11, 1, 12, 0))
    assert shift.start == local("America/New_York", 2026, 11, 1, 1, 30, fold=0)
    assert shift.start == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    # The second 01:30 (EST) is inside that shift, not the start of another.
    assert shift_at(spec, local("America/New_York", 2026, 11, 1, 1, 30, fold=1)) == shift


# --------------------------------------------------------------------------- before the anchor


def test_instants_before_the_anchor() -> None:
    spec = daily(members=3)
    shift = shift_at(spec, local(SH, 2026, 10, 30, 12, 0))
    assert shift.index == -2 and shift.member_position == 1
    assert shift_at(spec, local(SH, 2026, 11, 1, 0, 0)).member_position == 2
    long_ago = shift_at(spec, local(SH, 2020, 1, 1, 12, 0))
    assert long_ago.index < 0 and 0 <= long_ago.member_position < 3


# --------------------------------------------------------------------------- helpers


def test_shifts_between_lists_overlapping_shifts() -> None:
    spec = daily(members=3)
    start = local(SH, 2026, 11, 2, 12, 0)
    shifts = list(shifts_between(spec, start, local(SH, 2026, 11, 4, 8, 30)))
    assert [s.index for s in shifts] == [1, 2]  # the shift from 4 Nov 08:30 is excluded
    assert list(shifts_between(spec, start, start)) == []
    assert list(shifts_between(spec, start, start - timedelta(hours=1))) == []


def test_next_handover_at_a_boundary_is_the_following_one() -> None:
    spec = daily()
    at = local(SH, 2026, 11, 3, 8, 30)
    assert next_handover(spec, at) == local(SH, 2026, 11, 4, 8, 30)
    assert next_handover(spec, at - timedelta(microseconds=1)) == at


def test_instants_in_any_zone_are_accepted_but_naive_ones_refused() -> None:
    spec = daily()
    in_new_york = local(SH, 2026, 11, 3, 12, 0).astimezone(ZoneInfo("America/New_York"))
    assert shift_at(spec, in_new_york) == shift_at(spec, in_new_york.astimezone(UTC))
    plus_eight = in_new_york.astimezone(timezone(timedelta(hours=8)))
    assert shift_at(spec, plus_eight).index == 2
    with pytest.raises(ValueError):
        shift_at(spec, datetime(2026, 11, 3, 12, 0))


def test_shift_by_index_matches_shift_at() -> None:
    spec = RosterSpec.build("day_night", date(2026, 11, 1), SH, None, 3)
    for index in range(-5, 6):
        shift = shift_by_index(spec, index)
        assert shift_at(spec, shift.start) == shift
        assert shift_at(spec, shift.end) != shift  # the end belongs to the next one


# --------------------------------------------------------------------------- overrides, swaps


def test_overrides_replace_the_officer_of_one_shift() -> None:
    spec = daily(members=4)
    now = local(SH, 2026, 11, 3, 12, 0)
    current, following = who_is_on_duty(spec, {}, now)
    assert (current.member_position, following.member_position) == (2, 3)
    assert following.start == current.end
    current, following = who_is_on_duty(spec, {current.start: 0}, now)
    assert current.member_position == 0 and current.overridden
    assert following.member_position == 3 and not following.overridden


def test_an_override_naming_the_rotation_officer_changes_nothing() -> None:
    shift = shift_at(daily(members=4), local(SH, 2026, 11, 3, 12, 0))
    assert apply_overrides(shift, {shift.start: shift.member_position}) == shift
    assert apply_overrides(shift, {shift.start + timedelta(hours=1): 0}) == shift


def test_override_keys_in_another_zone_still_match() -> None:
    shift = shift_at(daily(members=4), local(SH, 2026, 11, 3, 12, 0))
    key = shift.start.astimezone(ZoneInfo(SH))
    assert apply_overrides(shift, {key: 0}).member_position == 0


def test_swap_trades_two_officers_shifts() -> None:
    spec = daily(members=4)
    mine = shift_at(spec, local(SH, 2026, 11, 3, 12, 0))  # position 2
    theirs = shift_at(spec, local(SH, 2026, 11, 5, 12, 0))  # position 0
    swapped = swap_overrides(spec, mine.start, theirs.start)
    assert swapped == {mine.start: 0, theirs.start: 2}
    assert apply_overrides(mine, swapped).member_position == 0
    assert apply_overrides(theirs, swapped).member_position == 2


def test_a_second_swap_builds_on_the_overrides() -> None:
    spec = daily(members=4)
    now = local(SH, 2026, 11, 3, 12, 0)
    current, following = who_is_on_duty(spec, {}, now)
    overrides = {current.start: 0}
    swapped = swap_overrides(spec, current.start, following.start, overrides)
    assert swapped == {current.start: 3, following.start: 0}


def test_swaps_must_name_two_shift_starts_of_different_officers() -> None:
    spec = daily(members=4)
    start = local(SH, 2026, 11, 3, 8, 30)
    with pytest.raises(ValueError, match="exact start"):
        swap_overrides(spec, start + timedelta(minutes=1), start + timedelta(days=1))
    with pytest.raises(ValueError, match="same officer"):
        swap_overrides(spec, start, start + timedelta(days=4))  # four officers: same one
    with pytest.raises(ValueError, match="same officer"):
        swap_overrides(spec, start, start + timedelta(days=1), {start: 3})


# --------------------------------------------------------------------------- specs


def test_specs_accept_enum_patterns_and_aware_times() -> None:
    spec = RosterSpec.build(ShiftPattern.weekly, date(2026, 1, 1), SH, None, 2)
    assert spec.shift_starts == (time(8, 30),) and spec.pattern == "weekly"
    aware = RosterSpec("daily", date(2026, 1, 1), SH, (time(8, 0, tzinfo=UTC),), 1)
    assert aware.shift_starts == (time(8, 0),)
    assert RosterSpec.build("daily", date(2026, 1, 1), SH, [" 07:45 "], 1).shift_starts == (
        time(7, 45),)


@pytest.mark.parametrize(
    ("pattern", "zone", "starts", "members"),
    [("fortnightly", SH, None, 2), ("day_night", SH, ["08:00"], 2),
     ("day_night", SH, ["20:00", "08:00"], 2), ("day_night", SH, ["08:00", "08:00"], 2),
     ("day_night", SH, ["08:00", "09:00"], 2), ("day_night", SH, ["00:30", "23:30"], 2),
     ("daily", SH, ["08:00", "20:00"], 2), ("daily", SH, None, 0), ("daily", SH, ["8h"], 1),
     ("daily", "Mars/Olympus", None, 1), ("weekly", "", None, 1)],
)
def test_invalid_specs_are_refused(
    pattern: str, zone: str, starts: list[str] | None, members: int
) -> None:
    with pytest.raises(ValueError):
        RosterSpec.build(pattern, date(2026, 1, 1), zone, starts, members)


# --------------------------------------------------------------------------- properties

ZONES = ["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin", "America/New_York",
         "Australia/Lord_Howe", "America/Santiago"]
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                        timezones=st.just(UTC))


@st.composite
def specs(draw: st.DrawFn) -> RosterSpec:
    pattern = draw(st.sampled_from(["daily", "day_night", "weekly"]))
    anchor = draw(st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)))
    zone = draw(st.sampled_from(ZONES))
    minutes = st.integers(min_value=0, max_value=24 * 60 - 1)
    first = draw(minutes)
    starts = [first]
    if pattern == "day_night":
        second = draw(minutes)
        assume(min(abs(second - first), 24 * 60 - abs(second - first)) >= 120)
        starts = sorted([first, second])
    return RosterSpec(pattern, anchor, zone, tuple(time(*divmod(m, 60)) for m in starts),
                      draw(st.integers(min_value=1, max_value=9)))


@settings(max_examples=300, deadline=None)
@given(specs(), instants, st.integers(min_value=1, max_value=24 * 21))
def test_shifts_tile_time_without_gaps_or_overlaps(
    spec: RosterSpec, start: datetime, hours: int
) -> None:
    shifts = list(shifts_between(spec, start, start + timedelta(hours=hours)))
    assert shifts[0].start <= start < shifts[0].end
    assert shifts[-1].start < start + timedelta(hours=hours) <= shifts[-1].end
    for before, after in itertools.pairwise(shifts):
        assert before.end == after.start and after.index == before.index + 1
        assert after.member_position == (before.member_position + 1) % spec.member_count
    for shift in shifts:
        assert shift_at(spec, shift.start) == shift
        assert shift.end > shift.start
        assert timedelta(hours=1) <= shift.duration <= timedelta(days=7, hours=2)


@settings(max_examples=200, deadline=None)
@given(specs(), instants)
def test_each_shift_contains_its_instant_and_position_cycles(
    spec: RosterSpec, instant: datetime
) -> None:
    shift = shift_at(spec, instant)
    assert shift.start <= instant < shift.end
    assert shift.member_position == shift.index % spec.member_count
    later = shift_by_index(spec, shift.index + spec.member_count)
    earlier = shift_by_index(spec, shift.index - spec.member_count)
    assert later.member_position == earlier.member_position == shift.member_position
    local_start = shift.start.astimezone(spec.zone)
    slot = shift.index % len(spec.shift_starts)
    wanted = spec.shift_starts[slot]
    # Starts are on the wall clock, except where a DST gap pushed them forward.
    if local_start.time() != wanted:
        assert local_start.replace(tzinfo=None) > datetime.combine(local_start.date(), wanted)
    if spec.pattern == "weekly":
        assert local_start.weekday() == spec.anchor_date.weekday()


@settings(max_examples=200, deadline=None)
@given(specs(), instants)
def test_who_is_on_duty_returns_consecutive_shifts(spec: RosterSpec, instant: datetime) -> None:
    current, following = who_is_on_duty(spec, {}, instant)
    assert current.start <= instant < current.end and following.start == current.end
    assert next_handover(spec, instant) == current.end


@settings(max_examples=200, deadline=None)
@given(specs(), instants, st.integers(min_value=1, max_value=30))
def test_swapping_twice_restores_the_rotation(
    spec: RosterSpec, instant: datetime, distance: int
) -> None:
    assume(distance % spec.member_count != 0)
    first = shift_at(spec, instant)
    second = shift_by_index(spec, first.index + distance)
    overrides = swap_overrides(spec, first.start, second.start)
    assert len(overrides) == 2
    untouched = shift_by_index(spec, first.index + distance + 1)
    assert apply_overrides(untouched, overrides) == untouched
    back = swap_overrides(spec, first.start, second.start, overrides)
    restored: dict[datetime, int] = {**overrides, **back}
    for shift in (first, second):
        again: Shift = apply_overrides(shift, restored)
        assert again == shift and not again.overridden


# --------------------------------------------------------------------------- previews


def test_upcoming_shifts_start_with_the_one_on_duty_and_apply_overrides() -> None:
    spec = daily(members=3)  # from 1 November 08:30 in Shanghai
    now = local(SH, 2026, 11, 3, 11, 0)  # shift 2 (position 2) is on duty
    swapped = {local(SH, 2026, 11, 5, 8, 30): 0}
    shifts = upcoming_shifts(spec, swapped, now, 4)
    assert [s.index for s in shifts] == [2, 3, 4, 5]
    assert [s.member_position for s in shifts] == [2, 0, 0, 2]
    assert [s.overridden for s in shifts] == [False, False, True, False]
    assert shifts[0].start <= now < shifts[0].end


def test_upcoming_shifts_of_a_roster_not_started_begin_at_its_first_shift() -> None:
    spec = RosterSpec.build("day_night", date(2026, 12, 1), SH, None, 2)
    shifts = upcoming_shifts(spec, {}, local(SH, 2026, 11, 20, 9, 0), 3)
    assert [s.start for s in shifts] == [local(SH, 2026, 12, 1, 8, 0),
                                         local(SH, 2026, 12, 1, 20, 0),
                                         local(SH, 2026, 12, 2, 8, 0)]
    assert upcoming_shifts(spec, {}, local(SH, 2026, 12, 1, 9, 0), 0) == []
