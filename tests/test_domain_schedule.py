"""Reminder plans, escalation deadlines and chair terms."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.chair import ChairSpec, add_months, chair_at, next_chair
from bot.domain.schedule import (
    DEFAULT_MEETING_OFFSETS,
    ack_deadline,
    escalation_plan,
    offset_label,
    reminders_before,
)

START = datetime(2026, 12, 10, 1, 30, tzinfo=UTC)


def test_meeting_reminders_at_the_default_offsets() -> None:
    plan = reminders_before(START, DEFAULT_MEETING_OFFSETS)
    assert [(r.label, r.due_at) for r in plan] == [
        ("7d", START - timedelta(days=7)), ("1d", START - timedelta(days=1)),
        ("1h", START - timedelta(hours=1))]


def test_offsets_are_deduplicated_and_sorted() -> None:
    assert [r.label for r in reminders_before(START, [30, 60, 30, 0, -5])] == ["1h", "30m"]
    assert offset_label(90) == "90m" and offset_label(2880) == "2d"


@pytest.mark.parametrize(("urgency", "minutes"), [("flash", 15), ("urgent", 120),
                                                   ("routine", 1440)])
def test_escalation_at_one_and_two_deadlines(urgency: str, minutes: int) -> None:
    plan = escalation_plan(START, urgency)
    assert [(e.step, e.due_at - START) for e in plan] == [
        ("remind_room", timedelta(minutes=minutes)),
        ("alert_coordinators", timedelta(minutes=2 * minutes))]
    assert ack_deadline(START, urgency, {urgency: 5}) == START + timedelta(minutes=5)


def test_month_arithmetic_clamps_days() -> None:
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 30), 2) == date(2027, 1, 30)
    assert add_months(date(2026, 3, 15), -3) == date(2025, 12, 15)


def test_northwest_chair_hands_over_at_the_term_end() -> None:
    # 甘肃 (position 1) took the chair at the 2025 meeting; a year later 青海 (2) takes over.
    spec = ChairSpec(date(2024, 11, 6), 12, 7, "Asia/Shanghai")
    before = datetime(2026, 11, 6, 8, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    term = chair_at(spec, before)
    assert term.position == 1
    assert term.end == datetime(2026, 11, 6, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    after = chair_at(spec, term.end)
    assert after.position == 2 and next_chair(spec, before) == after
    assert chair_at(spec, datetime(2031, 11, 6, 9, 0, tzinfo=UTC)).position == 0


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1),
                    timezones=st.just(UTC)), st.integers(1, 24), st.integers(1, 12))
def test_every_instant_lies_in_its_term(instant: datetime, months: int, units: int) -> None:
    spec = ChairSpec(date(2026, 1, 31), months, units)
    term = chair_at(spec, instant)
    assert term.start <= instant < term.end
    assert next_chair(spec, instant).start == term.end
