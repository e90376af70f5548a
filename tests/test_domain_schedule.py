"""Reminder plans, due-time classification, escalation deadlines, and the clocks."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.clock import as_utc
from core.clock import is_zone
from core.clock import local_instant
from core.clock import time_zone
from core.clock import valid_zone
from core.enums import Urgency
from core.schedule import DEFAULT_ACK_DEADLINES
from core.schedule import DEFAULT_MEETING_OFFSETS
from core.schedule import PlannedReminder
from core.schedule import ack_deadline
from core.schedule import classify_due
from core.schedule import escalation_plan
from core.schedule import offset_label
from core.schedule import reminders_before
from tools.clock import FakeClock

START = datetime(2026, 12, 10, 1, 30, tzinfo=UTC)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("minutes", "label"),
    [(10080, "7d"), (1440, "1d"), (2880, "2d"), (60, "1h"), (120, "2h"), (30, "30m"),
     (90, "90m"), (1500, "25h"), (1, "1m"), (0, "0m")],
)
def test_offset_labels(minutes: int, label: str) -> None:
    assert offset_label(minutes) == label


# --------------------------------------------------------------------------- meetings


def test_meeting_reminders_at_the_default_offsets() -> None:
    plan = reminders_before(START, DEFAULT_MEETING_OFFSETS)
    assert [(r.key_suffix, r.due_at) for r in plan] == [
        ("7d", START - timedelta(days=7)), ("1d", START - timedelta(days=1)),
        ("1h", START - timedelta(hours=1))]
    assert [r.offset_minutes for r in plan] == [10080, 1440, 60]
    assert plan[0].label == "7d"


def test_offsets_are_deduplicated_sorted_and_positive() -> None:
    assert [r.label for r in reminders_before(START, [30, 60, 30, 0, -5])] == ["1h", "30m"]
    assert reminders_before(START, []) == []
    assert [r.offset_minutes for r in reminders_before(START, ["60", 15])] == [60, 15]


def test_reminder_times_are_utc_whatever_zone_the_start_is_in() -> None:
    start = START.astimezone(ZoneInfo("Asia/Urumqi"))
    (reminder,) = reminders_before(start, [60])
    assert reminder.due_at == START - timedelta(hours=1) and reminder.due_at.tzinfo is UTC
    with pytest.raises(ValueError):
        reminders_before(datetime(2026, 12, 10, 9, 30), [60])


def test_planned_reminder_fills_its_key_suffix() -> None:
    assert PlannedReminder(90, START).key_suffix == "90m"
    assert PlannedReminder(90, START, "custom").label == "custom"


# --------------------------------------------------------------------------- due times

GRACE = timedelta(minutes=30)


@pytest.mark.parametrize(
    ("late_by", "state"),
    [(timedelta(minutes=-1), "future"), (timedelta(microseconds=-1), "future"),
     (timedelta(0), "due"), (timedelta(seconds=59), "due"), (timedelta(minutes=1), "due"),
     (timedelta(minutes=1, microseconds=1), "late"), (timedelta(minutes=30), "late"),
     (timedelta(minutes=30, microseconds=1), "missed"), (timedelta(days=2), "missed")],
)
def test_classify_due(late_by: timedelta, state: str) -> None:
    assert classify_due(START, START + late_by, GRACE) == state


def test_a_grace_shorter_than_on_time_wins() -> None:
    assert classify_due(START, START + timedelta(seconds=30), timedelta(seconds=10)) == "missed"
    assert classify_due(START, START + timedelta(seconds=5), timedelta(0)) == "missed"
    assert classify_due(START, START, timedelta(0)) == "due"
    assert classify_due(START, START + timedelta(seconds=5), GRACE, on_time=timedelta(0)) == (
        "late")


def test_classify_due_compares_instants_not_wall_clocks() -> None:
    now = (START + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=8)))
    assert classify_due(START, now, GRACE) == "late"


@settings(max_examples=200, deadline=None)
@given(st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3)),
       st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3)),
       st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1)))
def test_due_states_only_move_forward_as_time_passes(
    first: timedelta, second: timedelta, grace: timedelta
) -> None:
    order = ["future", "due", "late", "missed"]
    earlier, later = sorted([first, second])
    before = classify_due(START, START + earlier, grace)
    after = classify_due(START, START + later, grace)
    assert order.index(before) <= order.index(after)


# --------------------------------------------------------------------------- deadlines


def test_default_acknowledgement_deadlines() -> None:
    assert dict(DEFAULT_ACK_DEADLINES) == {"flash": 15, "urgent": 120, "routine": 1440}
    with pytest.raises(TypeError):
        DEFAULT_ACK_DEADLINES["flash"] = 1  # type: ignore[index]


@pytest.mark.parametrize(("urgency", "minutes"),
                         [(Urgency.flash, 15), (Urgency.urgent, 120), (Urgency.routine, 1440),
                          ("flash", 15)])
def test_escalation_at_one_and_two_deadlines(urgency: str, minutes: int) -> None:
    plan = escalation_plan(START, urgency)
    assert [(e.step, e.due_at - START) for e in plan] == [
        ("remind_room", timedelta(minutes=minutes)),
        ("alert_coordinators", timedelta(minutes=2 * minutes))]
    assert ack_deadline(START, urgency) == START + timedelta(minutes=minutes)


def test_deadlines_can_be_configured_in_minutes_or_as_timedeltas() -> None:
    assert ack_deadline(START, "urgent", {"urgent": 5}) == START + timedelta(minutes=5)
    plan = escalation_plan(START, Urgency.flash, {"flash": timedelta(minutes=10)})
    assert [e.due_at - START for e in plan] == [timedelta(minutes=10), timedelta(minutes=20)]


def test_unknown_urgency_or_nonpositive_deadline_is_refused() -> None:
    with pytest.raises(ValueError):
        escalation_plan(START, "whenever")
    with pytest.raises(ValueError):
        ack_deadline(START, "flash", {"flash": 0})


# --------------------------------------------------------------------------- clocks


def test_fake_clock_is_set_and_advanced() -> None:
    clock = FakeClock(datetime(2026, 11, 22, 15, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    assert clock.now() == clock() == datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.advance(minutes=5) == datetime(2026, 11, 22, 7, 5, tzinfo=UTC)
    assert clock.advance(timedelta(hours=1)) == datetime(2026, 11, 22, 8, 5, tzinfo=UTC)
    assert clock.set(START) == START and clock() == START
    assert clock.set(START - timedelta(days=1)) == START - timedelta(days=1)
    assert "FakeClock(" in repr(clock)


def test_fake_clock_refuses_naive_times_and_running_backwards() -> None:
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 1))
    clock = FakeClock(START)
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        clock.advance(minutes=-1)
    assert clock() == START


def test_as_utc_and_local_instant() -> None:
    assert as_utc(START.astimezone(ZoneInfo("Asia/Shanghai"))).tzinfo is UTC
    with pytest.raises(ValueError):
        as_utc(datetime(2026, 1, 1))
    new_york = ZoneInfo("America/New_York")
    gap = local_instant(datetime(2027, 3, 14).date(), datetime(2000, 1, 1, 2, 30).time(),
                        new_york)
    assert gap == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)  # 03:30 EDT
    fold = local_instant(datetime(2026, 11, 1).date(), datetime(2000, 1, 1, 1, 30).time(),
                         new_york)
    assert fold == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30, EDT


@pytest.mark.parametrize("name", ["Asia", "", "Asia/Nowhere", "../etc/passwd", "x" * 300, None])
def test_a_time_zone_the_data_got_wrong_falls_back_to_the_default(name: str | None) -> None:
    """"Asia" is a folder of the zone database and "x" * 300 too long a file name: both
    raise OSError, not the KeyError of an unknown zone."""
    assert time_zone(name) == ZoneInfo("Asia/Shanghai")
    assert time_zone(name, "Asia/Urumqi") == ZoneInfo("Asia/Urumqi")
    assert time_zone(name, "Asia") == ZoneInfo("UTC")
    assert not valid_zone(name or "") and not is_zone(name or "")


def test_zones_people_type_and_zones_the_database_knows() -> None:
    assert valid_zone("Asia/Urumqi") and valid_zone("UTC")
    assert is_zone("PRC") and not valid_zone("PRC")  # known, but not how a person names one
