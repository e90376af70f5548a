"""Deadlines as officers type them: the accepted forms, the refusals, and fuzzing."""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.timeparse import CODES
from core.timeparse import DeadlineError
from core.timeparse import next_date
from core.timeparse import normalise
from core.timeparse import parse_deadline

SH = "Asia/Shanghai"
# Sunday 22 November 2026, 15:00 in Beijing.
NOW = datetime(2026, 11, 22, 15, 0, tzinfo=ZoneInfo(SH)).astimezone(UTC)


def beijing(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(SH)).astimezone(UTC)


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else
                   "\u3000" if c == " " else c for c in text)


ACCEPTED = [
    # relative spans: elapsed time from now
    ("2h", NOW + timedelta(hours=2)),
    ("90m", NOW + timedelta(minutes=90)),
    ("90 min", NOW + timedelta(minutes=90)),
    ("1h30m", NOW + timedelta(minutes=90)),
    ("1.5h", NOW + timedelta(minutes=90)),
    ("30分钟", NOW + timedelta(minutes=30)),
    ("30分鐘", NOW + timedelta(minutes=30)),
    ("2小时", NOW + timedelta(hours=2)),
    ("2 小时后", NOW + timedelta(hours=2)),
    ("2小时内", NOW + timedelta(hours=2)),
    ("1小时30分钟", NOW + timedelta(minutes=90)),
    ("两个小时", NOW + timedelta(hours=2)),
    ("两个半小时", NOW + timedelta(minutes=150)),
    ("半小时", NOW + timedelta(minutes=30)),
    ("半个小时", NOW + timedelta(minutes=30)),
    ("半天", NOW + timedelta(hours=12)),
    ("3天", NOW + timedelta(days=3)),
    ("三天后", NOW + timedelta(days=3)),
    ("1d", NOW + timedelta(days=1)),
    ("2周", NOW + timedelta(days=14)),
    ("1 week", NOW + timedelta(days=7)),
    ("in 2 hours", NOW + timedelta(hours=2)),
    ("In 2 Hours", NOW + timedelta(hours=2)),
    ("in an hour", NOW + timedelta(hours=1)),
    ("within 2 hours", NOW + timedelta(hours=2)),
    ("2 days later", NOW + timedelta(days=2)),
    # day words
    ("明天18:00", beijing(2026, 11, 23, 18, 0)),
    ("明天 18:00", beijing(2026, 11, 23, 18, 0)),
    ("明天１８：００", beijing(2026, 11, 23, 18, 0)),
    ("明天", beijing(2026, 11, 23, 18, 0)),
    ("明日18時", beijing(2026, 11, 23, 18, 0)),
    ("今天", beijing(2026, 11, 22, 18, 0)),
    ("今天 17点", beijing(2026, 11, 22, 17, 0)),
    ("今天晚上8点半", beijing(2026, 11, 22, 20, 30)),
    ("今晚8点", beijing(2026, 11, 22, 20, 0)),
    ("今晚", beijing(2026, 11, 22, 22, 0)),
    ("今天24:00", beijing(2026, 11, 23, 0, 0)),
    ("今天24点前", beijing(2026, 11, 23, 0, 0)),
    ("明早", beijing(2026, 11, 23, 12, 0)),
    ("明早8点", beijing(2026, 11, 23, 8, 0)),
    ("明天下午", beijing(2026, 11, 23, 18, 0)),
    ("明天上午", beijing(2026, 11, 23, 12, 0)),
    ("明天中午", beijing(2026, 11, 23, 12, 0)),
    ("明天晚上", beijing(2026, 11, 23, 22, 0)),
    ("明天晚上12点", beijing(2026, 11, 24, 0, 0)),
    ("明天凌晨2点", beijing(2026, 11, 23, 2, 0)),
    ("后天上午10点", beijing(2026, 11, 24, 10, 0)),
    ("後天上午10點", beijing(2026, 11, 24, 10, 0)),
    ("后天上午十点", beijing(2026, 11, 24, 10, 0)),
    ("大后天", beijing(2026, 11, 25, 18, 0)),
    ("明天下午三点一刻", beijing(2026, 11, 23, 15, 15)),
    ("截止明天18:00", beijing(2026, 11, 23, 18, 0)),
    ("明天18:00前", beijing(2026, 11, 23, 18, 0)),
    ("明天18点之前", beijing(2026, 11, 23, 18, 0)),
    ("tomorrow 18:00", beijing(2026, 11, 23, 18, 0)),
    ("Tomorrow 6pm", beijing(2026, 11, 23, 18, 0)),
    ("tomorrow at 6:30 pm", beijing(2026, 11, 23, 18, 30)),
    ("tomorrow noon", beijing(2026, 11, 23, 12, 0)),
    ("tomorrow midnight", beijing(2026, 11, 24, 0, 0)),
    ("by tomorrow", beijing(2026, 11, 23, 18, 0)),
    ("tonight", beijing(2026, 11, 22, 22, 0)),
    # weekdays (NOW is a Sunday)
    ("周五", beijing(2026, 11, 27, 18, 0)),
    ("星期五 18:00", beijing(2026, 11, 27, 18, 0)),
    ("周5 9点", beijing(2026, 11, 27, 9, 0)),
    ("周日", beijing(2026, 11, 22, 18, 0)),  # today, still ahead
    ("礼拜天", beijing(2026, 11, 22, 18, 0)),
    ("周日 9点", beijing(2026, 11, 29, 9, 0)),  # today's 9:00 has passed: next Sunday
    ("下周一", beijing(2026, 11, 23, 18, 0)),  # weeks start on Monday
    ("下個星期一上午十點", beijing(2026, 11, 23, 10, 0)),
    ("下周日", beijing(2026, 11, 29, 18, 0)),
    ("friday", beijing(2026, 11, 27, 18, 0)),
    ("next monday 9am", beijing(2026, 11, 23, 9, 0)),
    # a time alone: its next occurrence
    ("下午4点", beijing(2026, 11, 22, 16, 0)),
    ("下午3点", beijing(2026, 11, 23, 15, 0)),  # 15:00 is now: tomorrow's
    ("18:00", beijing(2026, 11, 22, 18, 0)),
    ("18.30", beijing(2026, 11, 22, 18, 30)),
    ("18:00:30", beijing(2026, 11, 22, 18, 0, 30)),
    ("9:15", beijing(2026, 11, 23, 9, 15)),
    ("9点", beijing(2026, 11, 23, 9, 0)),
    ("9点整", beijing(2026, 11, 23, 9, 0)),
    ("3点钟", beijing(2026, 11, 23, 3, 0)),
    ("十点零五分", beijing(2026, 11, 23, 10, 5)),
    ("6pm", beijing(2026, 11, 22, 18, 0)),
    ("12am", beijing(2026, 11, 23, 0, 0)),
    ("12pm", beijing(2026, 11, 23, 12, 0)),
    ("中午1点", beijing(2026, 11, 23, 13, 0)),
    ("晚上11点", beijing(2026, 11, 22, 23, 0)),
    ("下午15点", beijing(2026, 11, 23, 15, 0)),
    ("midnight", beijing(2026, 11, 23, 0, 0)),
    ("１８：００", beijing(2026, 11, 22, 18, 0)),
    # dates
    ("2026-12-01 09:00", beijing(2026, 12, 1, 9, 0)),
    ("2026-12-01T09:00", beijing(2026, 12, 1, 9, 0)),
    ("2026/12/01 9:00", beijing(2026, 12, 1, 9, 0)),
    ("2026.12.01", beijing(2026, 12, 1, 18, 0)),
    ("２０２６－１２－０１　０９：００", beijing(2026, 12, 1, 9, 0)),
    ("12-01 09:00", beijing(2026, 12, 1, 9, 0)),
    ("12-1 9:00", beijing(2026, 12, 1, 9, 0)),
    ("12/1", beijing(2026, 12, 1, 18, 0)),
    ("12月1日 9时", beijing(2026, 12, 1, 9, 0)),
    ("12月1日", beijing(2026, 12, 1, 18, 0)),
    ("12月1号下午", beijing(2026, 12, 1, 18, 0)),
    ("十二月一日上午九点", beijing(2026, 12, 1, 9, 0)),
    ("2026年12月1日 9点30分", beijing(2026, 12, 1, 9, 30)),
    ("2026年12月1日9點30分", beijing(2026, 12, 1, 9, 30)),
    ("二〇二六年十二月一日", beijing(2026, 12, 1, 18, 0)),
    ("1月5日", beijing(2027, 1, 5, 18, 0)),  # the next 5 January is next year's
    ("5号", beijing(2026, 12, 5, 18, 0)),  # the next 5th is next month's
    ("11月20日", beijing(2027, 11, 20, 18, 0)),  # two days ago: next year's, not the past
    ("20号", beijing(2026, 12, 20, 18, 0)),
    ("11-22 16:00", beijing(2026, 11, 22, 16, 0)),  # today, while its time is ahead
    ("11月22日 9点", beijing(2027, 11, 22, 9, 0)),  # today's has passed: next year's
    ("30号", beijing(2026, 11, 30, 18, 0)),
    ("2027-11-22", beijing(2027, 11, 22, 18, 0)),  # a year and three hours away
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_forms(text: str, expected: datetime) -> None:
    result = parse_deadline(text, NOW, SH)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_full_width_input_means_the_same(text: str, expected: datetime) -> None:
    assert parse_deadline(fullwidth(text), NOW, SH) == expected


def test_the_users_time_zone_counts() -> None:
    assert parse_deadline("明天18:00", NOW, "Asia/Urumqi") == beijing(2026, 11, 23, 20, 0)
    assert parse_deadline("明天18:00", NOW, ZoneInfo("Asia/Urumqi")) == beijing(
        2026, 11, 23, 20, 0)
    # 01:00 UTC is already the 23rd in Beijing but still the 22nd in Ürümqi (07:00).
    early = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    assert parse_deadline("今天20:00", early, SH) == beijing(2026, 11, 23, 20, 0)
    assert parse_deadline("今天20:00", early, "Asia/Urumqi") == datetime(
        2026, 11, 23, 14, 0, tzinfo=UTC)


def test_now_in_any_zone_is_the_same_instant() -> None:
    assert parse_deadline("2h", NOW.astimezone(ZoneInfo("Asia/Urumqi")), SH) == (
        NOW + timedelta(hours=2))


def test_local_times_in_a_dst_gap_resolve_forward() -> None:
    now = datetime(2027, 3, 13, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    result = parse_deadline("明天2:30", now, "America/New_York")
    assert result == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT
    # Relative spans are elapsed time, not wall-clock time.
    assert parse_deadline("1d", now, "America/New_York") == now.astimezone(UTC) + timedelta(
        hours=24)


def test_the_year_end() -> None:
    eve = datetime(2026, 12, 31, 20, 0, tzinfo=ZoneInfo(SH))
    assert parse_deadline("明天9点", eve, SH) == beijing(2027, 1, 1, 9, 0)
    assert parse_deadline("1-2", eve, SH) == beijing(2027, 1, 2, 18, 0)
    assert parse_deadline("3号", eve, SH) == beijing(2027, 1, 3, 18, 0)
    assert parse_deadline("8:00", eve, SH) == beijing(2027, 1, 1, 8, 0)
    leap = datetime(2028, 2, 28, 10, 0, tzinfo=ZoneInfo(SH))
    assert parse_deadline("明天", leap, SH) == beijing(2028, 2, 29, 18, 0)
    assert parse_deadline("2月29日", leap, SH) == beijing(2028, 2, 29, 18, 0)


def test_a_date_without_a_year_is_never_in_the_past() -> None:
    december = datetime(2026, 12, 20, 10, 0, tzinfo=ZoneInfo(SH))
    assert parse_deadline("01-04", december, SH) == beijing(2027, 1, 4, 18, 0)
    assert parse_deadline("1/4 9:00", december, SH) == beijing(2027, 1, 4, 9, 0)
    assert parse_deadline("12月19日", december, SH) == beijing(2027, 12, 19, 18, 0)
    assert parse_deadline("19号", december, SH) == beijing(2027, 1, 19, 18, 0)
    eve = datetime(2026, 12, 31, 20, 0, tzinfo=ZoneInfo(SH))
    assert parse_deadline("31号", eve, SH) == beijing(2027, 1, 31, 18, 0)
    april = datetime(2027, 4, 2, 10, 0, tzinfo=ZoneInfo(SH))
    assert parse_deadline("31号", april, SH) == beijing(2027, 5, 31, 18, 0)  # no 31 April


def test_next_date() -> None:
    today = date(2026, 12, 20)
    assert next_date(today, 4, 1) == date(2027, 1, 4)
    assert next_date(today, 20, 12) == today
    assert next_date(today, 19) == date(2027, 1, 19)
    assert next_date(date(2026, 3, 1), 29, 2) == date(2028, 2, 29)
    assert next_date(date(2027, 4, 1), 31) == date(2027, 5, 31)
    for impossible in ((30, 2), (32, None), (31, 4)):
        with pytest.raises(ValueError):
            next_date(today, *impossible)


@pytest.mark.parametrize("text", ["12月1日", "2026-12-01", "明天", "周五", "next monday", "5号"])
def test_a_day_without_a_time_can_be_refused(text: str) -> None:
    with pytest.raises(DeadlineError) as error:
        parse_deadline(text, NOW, SH, default_time=None)
    assert error.value.code == "no_time"
    assert parse_deadline(text, NOW, SH, default_time=time(9, 0)).astimezone(
        ZoneInfo(SH)).time() == time(9, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("12月1日 9:00", beijing(2026, 12, 1, 9, 0)), ("明天下午", beijing(2026, 11, 23, 18, 0)),
    ("2h", NOW + timedelta(hours=2)), ("今晚", beijing(2026, 11, 22, 22, 0))])
def test_a_time_of_day_satisfies_a_caller_that_needs_one(text: str, expected: datetime) -> None:
    assert parse_deadline(text, NOW, SH, default_time=None) == expected


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                    timezones=st.just(UTC)), st.integers(1, 12), st.integers(1, 28))
def test_a_month_and_day_is_their_next_occurrence(now: datetime, month: int, day: int) -> None:
    result = parse_deadline(f"{month}月{day}日", now, SH)
    assert now < result <= now + timedelta(days=366)
    local = result.astimezone(ZoneInfo(SH))
    assert (local.month, local.day, local.hour) == (month, day, 18)


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty"), ("   ", "empty"), ("\u3000", "empty"), ("前", "unrecognised"),
     ("下周找时间", "unrecognised"), ("asap", "unrecognised"), ("尽快", "unrecognised"),
     ("25:00", "unrecognised"), ("24:30", "unrecognised"), ("5:61", "unrecognised"),
     ("18", "unrecognised"), ("明天18", "unrecognised"), ("h", "unrecognised"),
     ("天", "unrecognised"), ("13月1日", "unrecognised"), ("2026-02-30", "unrecognised"),
     ("2026-13-01", "unrecognised"), ("32号", "unrecognised"), ("星期8", "unrecognised"),
     ("上午15点", "unrecognised"), ("13pm", "unrecognised"), ("0am", "unrecognised"),
     ("晚上9am", "unrecognised"), ("今晚下午3点", "unrecognised"),
     ("midnight 3pm", "unrecognised"), ("1e400h", "unrecognised"), ("3.5.5h", "unrecognised"),
     ("明天" * 50, "unrecognised"),
     ("2026-11-01", "in_the_past"), ("今天 9点", "in_the_past"), ("今早", "in_the_past"),
     ("this friday", "in_the_past"),
     ("0h", "in_the_past"), ("0001-01-01", "in_the_past"),
     ("2028-01-01", "too_far"), ("400天", "too_far"), ("53周", "too_far"),
     ("99999999999999天", "too_far"), ("9999-12-31", "too_far"), ("2月29日", "too_far")],
)
def test_refusals_carry_a_code(text: str, code: str) -> None:
    with pytest.raises(DeadlineError) as error:
        parse_deadline(text, NOW, SH)
    assert error.value.code == code and code in CODES
    assert str(error.value) == code


def test_a_callers_mistakes_are_value_errors() -> None:
    with pytest.raises(ValueError) as naive:
        parse_deadline("2h", datetime(2026, 11, 22, 15, 0), SH)
    assert not isinstance(naive.value, DeadlineError)
    with pytest.raises(ValueError) as zone:
        parse_deadline("2h", NOW, "Mars/Olympus")
    assert not isinstance(zone.value, DeadlineError)


def test_normalise() -> None:
    assert normalise("明天　１８：００") == "明天18:00"
    assert normalise("後天上午十點") == "后天上午10点"
    assert normalise("二十三点") == "23点"
    assert normalise("12-01  09:00") == "12-01 09:00"
    assert normalise("In 2 Hours") == "in2hours"
    assert normalise("截止明天之前") == "明天"


# --------------------------------------------------------------------------- properties

FRAGMENTS = ["明天", "后天", "今天", "今晚", "下午", "上午", "晚上", "凌晨", "中午", "3", "12",
             "18", "24", "0", "99", ":", "：", "00", "30", "点", "點", "半", "刻", "分", "时",
             "月", "日", "号", "-", "/", ".", "2026", "2027", "h", "m", "d", "小时", "天", "周",
             "星期", "in", "at", "tomorrow", "next", "friday", "pm", "am", "noon", "midnight",
             " ", "前", "后", "内", "十", "二", "两", "个", "〇", "一", "t", "１", "８", "e", "年"]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
@example("1" * 5000)
@example("1" * 70 + "h")
@example("9" * 20 + ":00")
@example("\x00")
@example("٣h")  # Arabic-Indic digits are digits too
def test_any_text_is_a_deadline_or_a_deadline_error(text: str) -> None:
    try:
        result = parse_deadline(text, NOW, SH)
    except DeadlineError as error:
        assert error.code in CODES
        return
    assert NOW < result <= NOW + timedelta(days=366)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join))
def test_plausible_fragments_never_crash(text: str) -> None:
    try:
        result = parse_deadline(text, NOW, SH)
    except DeadlineError as error:
        assert error.code in CODES
        return
    assert NOW < result <= NOW + timedelta(days=366)
    assert result.tzinfo is UTC


instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                        timezones=st.just(UTC))
zones = st.sampled_from([SH, "Asia/Urumqi", "Europe/Berlin", "America/New_York"])


@settings(max_examples=300, deadline=None)
@given(instants, zones, st.integers(0, 23), st.integers(0, 59))
def test_a_bare_time_is_its_next_occurrence(
    now: datetime, zone: str, hour: int, minute: int
) -> None:
    result = parse_deadline(f"{hour:02d}:{minute:02d}", now, zone)
    assert now < result <= now + timedelta(hours=25)
    local = result.astimezone(ZoneInfo(zone))
    # On the wall clock, unless a DST gap pushed it forward.
    assert (local.hour, local.minute) == (hour, minute) or local.fold == 0


@settings(max_examples=300, deadline=None)
@given(instants, zones, st.integers(1, 8784), st.sampled_from(["h", "小时", " hours", "個小時"]))
def test_relative_hours_are_elapsed_time(now: datetime, zone: str, hours: int, unit: str) -> None:
    assert parse_deadline(f"{hours}{unit}", now, zone) == now + timedelta(hours=hours)
    assert parse_deadline(f"in {hours} hours", now, zone) == now + timedelta(hours=hours)


@settings(max_examples=300, deadline=None)
@given(instants, zones, st.integers(1, 2), st.integers(0, 23))
def test_day_words_land_on_that_local_day(
    now: datetime, zone: str, days: int, hour: int
) -> None:
    word = {1: "明天", 2: "后天"}[days]
    result = parse_deadline(f"{word}{hour}点", now, zone)
    today = now.astimezone(ZoneInfo(zone)).date()
    local = result.astimezone(ZoneInfo(zone))
    assert local.date() == today + timedelta(days=days)
    assert local.hour in (hour, hour + 1)  # +1 only inside a DST gap
