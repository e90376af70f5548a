"""Deadlines as officers type them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.timeparse import DeadlineError, parse_deadline

SH = "Asia/Shanghai"
# Sunday 22 November 2026, 15:00 in Beijing.
NOW = datetime(2026, 11, 22, 15, 0, tzinfo=ZoneInfo(SH)).astimezone(UTC)


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(SH)).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW + timedelta(hours=2)),
        ("90m", NOW + timedelta(minutes=90)),
        ("30分钟", NOW + timedelta(minutes=30)),
        ("2小时", NOW + timedelta(hours=2)),
        ("2 小时后", NOW + timedelta(hours=2)),
        ("3天", NOW + timedelta(days=3)),
        ("1d", NOW + timedelta(days=1)),
        ("in 2 hours", NOW + timedelta(hours=2)),
        ("明天18:00", beijing(2026, 11, 23, 18, 0)),
        ("明天 18:00", beijing(2026, 11, 23, 18, 0)),
        ("明天１８：００", beijing(2026, 11, 23, 18, 0)),
        ("明天", beijing(2026, 11, 23, 18, 0)),
        ("今天 17点", beijing(2026, 11, 22, 17, 0)),
        ("今天晚上8点半", beijing(2026, 11, 22, 20, 30)),
        ("后天上午10点", beijing(2026, 11, 24, 10, 0)),
        ("後天上午10點", beijing(2026, 11, 24, 10, 0)),
        ("下午4点", beijing(2026, 11, 22, 16, 0)),
        ("下午3点", beijing(2026, 11, 23, 15, 0)),  # 15:00 has just passed: tomorrow's
        ("18:00", beijing(2026, 11, 22, 18, 0)),
        ("9:15", beijing(2026, 11, 23, 9, 15)),
        ("2026-12-01 09:00", beijing(2026, 12, 1, 9, 0)),
        ("2026/12/01 9:00", beijing(2026, 12, 1, 9, 0)),
        ("12-01 09:00", beijing(2026, 12, 1, 9, 0)),
        ("12月1日 9时", beijing(2026, 12, 1, 9, 0)),
        ("12月1日", beijing(2026, 12, 1, 18, 0)),
        ("2026年12月1日 9点30分", beijing(2026, 12, 1, 9, 30)),
        ("1月5日", beijing(2027, 1, 5, 18, 0)),
        ("tomorrow 18:00", beijing(2026, 11, 23, 18, 0)),
        ("Tomorrow 6pm", beijing(2026, 11, 23, 18, 0)),
    ],
)
def test_accepted_forms(text: str, expected: datetime) -> None:
    assert parse_deadline(text, NOW, SH) == expected


def test_the_users_time_zone_counts() -> None:
    urumqi = parse_deadline("明天18:00", NOW, "Asia/Urumqi")
    assert urumqi == beijing(2026, 11, 23, 20, 0)


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty"), ("   ", "empty"), ("下周找时间", "unrecognised"), ("25:00", "unrecognised"),
     ("13月1日", "unrecognised"), ("2026-02-30", "unrecognised"), ("2026-11-01", "in_the_past"),
     ("今天 9点", "in_the_past"), ("2028-01-01", "too_far"), ("400天", "too_far"),
     ("asap", "unrecognised")],
)
def test_refusals_carry_a_code(text: str, code: str) -> None:
    with pytest.raises(DeadlineError) as error:
        parse_deadline(text, NOW, SH)
    assert error.value.code == code


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_anything_else_is_a_deadline_error_never_a_crash(text: str) -> None:
    try:
        result = parse_deadline(text, NOW, SH)
    except DeadlineError:
        return
    assert NOW < result <= NOW + timedelta(days=366)
