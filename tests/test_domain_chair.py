"""Chair rotation terms: clamped month arithmetic, month and year ends, handover reminders."""

from __future__ import annotations

import itertools
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.chair import DEFAULT_HANDOVER_OFFSETS
from core.chair import ChairSpec
from core.chair import add_months
from core.chair import chair_at
from core.chair import handover_reminder_instants
from core.chair import term_by_index
from core.chair import term_start

SH = "Asia/Shanghai"


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(SH)).astimezone(UTC)


# --------------------------------------------------------------------------- months


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [(date(2027, 1, 31), 1, date(2027, 2, 28)), (date(2028, 1, 31), 1, date(2028, 2, 29)),
     (date(2027, 1, 31), 2, date(2027, 3, 31)), (date(2026, 8, 31), 1, date(2026, 9, 30)),
     (date(2026, 11, 30), 2, date(2027, 1, 30)), (date(2026, 12, 31), 1, date(2027, 1, 31)),
     (date(2026, 12, 15), 12, date(2027, 12, 15)), (date(2028, 2, 29), 12, date(2029, 2, 28)),
     (date(2028, 2, 29), 48, date(2032, 2, 29)), (date(2026, 3, 15), -3, date(2025, 12, 15)),
     (date(2027, 3, 31), -1, date(2027, 2, 28)), (date(2026, 1, 1), 0, date(2026, 1, 1))],
)
def test_month_arithmetic_clamps_days(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


# --------------------------------------------------------------------------- terms


def test_northwest_chair_hands_over_at_the_term_end() -> None:
    # 甘肃 (position 1) took the chair in 2025; a year later 青海 (2) takes over.
    spec = ChairSpec(date(2024, 11, 6), 12, 7, SH)
    before = datetime(2026, 11, 6, 8, 59, tzinfo=ZoneInfo(SH))
    term = chair_at(spec, before)
    assert term.position == 1 and term.index == 1
    assert term.start == beijing(2025, 11, 6, 9, 0)
    assert term.end == beijing(2026, 11, 6, 9, 0)
    after = chair_at(spec, term.end)
    assert after.position == 2 and after.index == term.index + 1
    assert chair_at(spec, datetime(2031, 11, 6, 9, 0, tzinfo=ZoneInfo(SH))).position == 0


def test_the_handover_is_at_the_local_time_of_day() -> None:
    spec = ChairSpec(date(2026, 1, 1), 6, 3, "Asia/Urumqi", handover_time=time(10, 30))
    term = chair_at(spec, datetime(2026, 7, 1, tzinfo=UTC))
    assert term.start == datetime(2026, 1, 1, 4, 30, tzinfo=UTC)  # 10:30 at UTC+6
    assert term.end == datetime(2026, 7, 1, 4, 30, tzinfo=UTC)
    assert chair_at(spec, term.end).position == 1


def test_monthly_terms_from_the_31st_clamp_without_drifting() -> None:
    spec = ChairSpec(date(2027, 1, 31), 1, 4, SH)
    starts = [term_start(spec, i).astimezone(ZoneInfo(SH)).date() for i in range(5)]
    assert starts == [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31),
                      date(2027, 4, 30), date(2027, 5, 31)]
    february = chair_at(spec, beijing(2027, 3, 15, 12, 0))
    assert (february.index, february.position) == (1, 1)
    assert february.start == beijing(2027, 2, 28, 9, 0)
    assert february.end == beijing(2027, 3, 31, 9, 0)


def test_leap_february() -> None:
    spec = ChairSpec(date(2027, 11, 30), 3, 2, SH)
    term = chair_at(spec, beijing(2028, 3, 1, 0, 0))
    assert term.start == beijing(2028, 2, 29, 9, 0) and term.index == 1
    assert term.end == beijing(2028, 5, 30, 9, 0)


def test_across_the_year_end() -> None:
    spec = ChairSpec(date(2026, 7, 1), 6, 7, SH)
    last_of_year = chair_at(spec, beijing(2026, 12, 31, 23, 59))
    new_year = chair_at(spec, beijing(2027, 1, 1, 9, 0))
    assert last_of_year.index == 0 and last_of_year.end == beijing(2027, 1, 1, 9, 0)
    assert new_year.index == 1 and new_year.position == 1
    assert chair_at(spec, beijing(2027, 1, 1, 8, 59)) == last_of_year


def test_the_position_wraps_around_the_units() -> None:
    spec = ChairSpec(date(2020, 1, 1), 12, 3, SH)
    positions = [chair_at(spec, beijing(2020 + k, 6, 1)).position for k in range(7)]
    assert positions == [0, 1, 2, 0, 1, 2, 0]


def test_before_the_anchor() -> None:
    spec = ChairSpec(date(2026, 11, 6), 12, 7, SH)
    term = chair_at(spec, beijing(2025, 1, 1))
    assert term.index == -2 and term.position == 5
    assert term.start == beijing(2024, 11, 6, 9, 0)


def test_handover_in_a_dst_zone_keeps_the_wall_clock() -> None:
    spec = ChairSpec(date(2026, 1, 15), 3, 2, "Europe/Berlin")
    winter, summer = term_by_index(spec, 0), term_by_index(spec, 1)
    assert winter.start == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert summer.start == datetime(2026, 4, 15, 7, 0, tzinfo=UTC)  # 09:00 CEST


def test_handover_reminders() -> None:
    spec = ChairSpec(date(2024, 11, 6), 12, 7, SH)
    term = term_by_index(spec, 2)
    plan = handover_reminder_instants(term)
    assert DEFAULT_HANDOVER_OFFSETS == (7 * 24 * 60, 24 * 60)
    assert [(r.key_suffix, r.due_at) for r in plan] == [
        ("7d", beijing(2026, 10, 30, 9, 0)), ("1d", beijing(2026, 11, 5, 9, 0))]
    assert [r.key_suffix for r in handover_reminder_instants(term, [60, 30 * 1440])] == [
        "30d", "1h"]


@pytest.mark.parametrize(("months", "units", "zone"),
                         [(0, 3, SH), (12, 0, SH), (-1, 2, SH), (12, 3, "Nowhere/Else")])
def test_invalid_specs_are_refused(months: int, units: int, zone: str) -> None:
    with pytest.raises(ValueError):
        ChairSpec(date(2026, 1, 1), months, units, zone)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        chair_at(ChairSpec(date(2026, 1, 1), 12, 3), datetime(2026, 6, 1))


# --------------------------------------------------------------------------- properties

anchors = st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31))
instants = st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2040, 1, 1),
                        timezones=st.just(UTC))
zones = st.sampled_from([SH, "Asia/Urumqi", "Europe/Berlin", "America/New_York"])


@settings(max_examples=300, deadline=None)
@given(instants, anchors, st.integers(1, 24), st.integers(1, 12), zones)
def test_every_instant_lies_in_its_term(
    instant: datetime, anchor: date, months: int, units: int, zone: str
) -> None:
    spec = ChairSpec(anchor, months, units, zone)
    term = chair_at(spec, instant)
    assert term.start <= instant < term.end
    assert term.position == term.index % units
    following = chair_at(spec, term.end)
    assert following.start == term.end and following.index == term.index + 1
    assert following.position == (term.position + 1) % units
    # A term lasts its months, give or take the clamped days and an hour of DST.
    days = (term.end - term.start) / timedelta(days=1)
    assert 28 * months - 3 - 1 / 24 <= days <= 31 * months + 3 + 1 / 24


@settings(max_examples=300, deadline=None)
@given(anchors, st.integers(-240, 240), st.integers(-240, 240))
def test_month_arithmetic_is_consistent(day: date, first: int, second: int) -> None:
    shifted = add_months(day, first)
    months_apart = (shifted.year - day.year) * 12 + shifted.month - day.month
    assert months_apart == first
    # The day is kept, or clamped to the last day of a shorter month.
    assert shifted.day == day.day or (
        shifted.day < day.day and (shifted + timedelta(days=1)).day == 1)
    if day.day <= 28:
        assert add_months(add_months(day, first), second) == add_months(day, first + second)


@settings(max_examples=100, deadline=None)
@given(anchors, st.integers(1, 24), st.integers(1, 9), zones)
def test_terms_tile_time(anchor: date, months: int, units: int, zone: str) -> None:
    spec = ChairSpec(anchor, months, units, zone)
    terms = [term_by_index(spec, i) for i in range(-3, 10)]
    for before, after in itertools.pairwise(terms):
        assert before.end == after.start and before.start < before.end
        assert chair_at(spec, after.start) == after
        assert chair_at(spec, after.start - timedelta(microseconds=1)) == before
