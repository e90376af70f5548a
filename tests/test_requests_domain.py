"""The pure rules of requests: numbers, urgency, transitions and who may act, button
data, periods and filters, statistics, and rendering in three languages."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from core import requests as rules
from core.clock import time_zone
from core.enums import RequestStatus
from core.enums import Role
from core.enums import Urgency
from core.periods import Period
from core.periods import parse_period
from core.requests import Action
from core.requests import Filters
from core.requests import Press
from core.requests import Scope
from core.requests import StatsRow
from i18n import LANGUAGES
from i18n import Translator
from storage.models import AssistanceRequest
from storage.models import Mechanism
from storage.models import RequestEvent
from storage.models import Unit
from storage.models import User
from views import requests as render

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 15, 4, 0, tzinfo=UTC)  # 12:00 in Beijing, a Tuesday


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("XZ-2026-000123", "XZ-2026-000123"),
        ("xz-2026-123", "XZ-2026-000123"),
        (" ＸＺ－２０２６－１２３ ", "XZ-2026-000123"),
        ("XZ2026000123", "XZ-2026-000123"),
        ("XZ-2026-0", None),
        ("XZ-26-1", None),
        ("XZ-2026-1234567", None),
        ("四川", None),
        ("", None),
    ],
)
def test_numbers(text: str, number: str | None) -> None:
    assert rules.parse_number(text) == number


def test_number_format() -> None:
    assert rules.format_number(2026, 1) == "XZ-2026-000001"


@pytest.mark.parametrize(
    ("text", "urgency"),
    [("特急", Urgency.flash), ("🔴特急", Urgency.flash), ("FLASH", Urgency.flash),
     (" 加急 ", Urgency.urgent), ("urgent", Urgency.urgent), ("平急", Urgency.routine),
     ("Routine", Urgency.routine), ("很急", None), ("", None)],
)
def test_urgency_words(text: str, urgency: Urgency | None) -> None:
    assert rules.parse_urgency(text) == urgency


def test_text_cleaning() -> None:
    assert rules.clean_line("  协查\n涉枪   线索 ") == "协查 涉枪 线索"
    assert rules.clean_block("  第一行  \n\n\n第二行\n") == "第一行\n\n第二行"
    assert rules.text_problem("", 10) is rules.TextProblem.empty
    assert rules.text_problem("x" * 11, 10) is rules.TextProblem.too_long
    assert rules.text_problem("x" * 10, 10) is None


# --------------------------------------------------------------------------- who may act

TRANSITIONS = {
    RequestStatus.open: {Action.accept, Action.decline, Action.transfer, Action.complete,
                         Action.cancel},
    RequestStatus.accepted: {Action.transfer, Action.complete, Action.cancel},
    RequestStatus.declined: set(),
    RequestStatus.transferred: set(),
    RequestStatus.completed: set(),
    RequestStatus.cancelled: set(),
}


@pytest.mark.parametrize("status", list(RequestStatus))
def test_allowed_transitions(status: RequestStatus) -> None:
    assert {a for a in Action if rules.allowed(a, status)} == TRANSITIONS[status]


@pytest.mark.parametrize(
    ("role", "unit_id", "answers", "withdraws", "views"),
    [
        (Role.officer, 2, True, False, True),  # the target unit
        (Role.duty_officer, 1, False, True, True),  # the requesting unit
        (Role.duty_officer, 3, False, False, False),  # another unit
        (Role.officer, None, False, False, False),
        (Role.coordinator, 3, True, True, True),
        (Role.admin, None, True, True, True),
        (None, 2, False, False, False),  # not registered
    ],
)
def test_who_may_act_and_view(
    role: Role | None, unit_id: int | None, answers: bool, withdraws: bool, views: bool
) -> None:
    sides = {"from_unit_id": 1, "to_unit_id": 2}
    for action in rules.TARGET_ACTIONS:
        assert rules.may_act(action, role, unit_id, **sides) is answers
    assert rules.may_act(Action.cancel, role, unit_id, **sides) is withdraws
    assert rules.may_view(role, unit_id, **sides) is views


def test_available_actions() -> None:
    sides = {"from_unit_id": 1, "to_unit_id": 2}
    assert rules.available_actions(RequestStatus.open, Role.officer, 2, **sides) == [
        Action.accept, Action.decline, Action.transfer, Action.complete]
    assert rules.available_actions(RequestStatus.accepted, Role.officer, 1,
                                   include_cancel=True, **sides) == [Action.cancel]
    assert rules.available_actions(RequestStatus.completed, Role.admin, None,
                                   include_cancel=True, **sides) == []


def test_button_data_round_trips_and_fits_telegram() -> None:
    for action in Action:
        data = rules.action_data(action, 999_999_999, 999_999_999)
        assert len(data.encode()) <= 64
        assert rules.parse_action_data(data) == Press(action, 999_999_999, 999_999_999)
        # Beyond a database integer: refused before any query.
        assert rules.parse_action_data(rules.action_data(action, 2**31, 1)) is None


# --------------------------------------------------------------------------- periods


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI).astimezone(UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("今天", local(2026, 12, 15), local(2026, 12, 16)),
        ("today", local(2026, 12, 15), local(2026, 12, 16)),
        ("本周", local(2026, 12, 14), local(2026, 12, 21)),
        ("本週", local(2026, 12, 14), local(2026, 12, 21)),
        ("本月", local(2026, 12, 1), local(2027, 1, 1)),
        ("上月", local(2026, 11, 1), local(2026, 12, 1)),
        ("last-month", local(2026, 11, 1), local(2026, 12, 1)),
        ("2026-11", local(2026, 11, 1), local(2026, 12, 1)),
        ("2026/2", local(2026, 2, 1), local(2026, 3, 1)),
        ("2026", local(2026, 1, 1), local(2027, 1, 1)),
        ("2026-11-05", local(2026, 11, 5), local(2026, 11, 6)),
        ("2026-11-01..2026-11-30", local(2026, 11, 1), local(2026, 12, 1)),
        ("2026-11-01～2026-11-03", local(2026, 11, 1), local(2026, 11, 4)),
        ("7d", NOW - timedelta(days=7), NOW),
        ("30天", NOW - timedelta(days=30), NOW),
        ("2w", NOW - timedelta(days=14), NOW),
    ],
)
def test_periods(text: str, start: datetime, end: datetime) -> None:
    assert parse_period(text, NOW, SHANGHAI) == Period(start, end)


def test_last_month_in_january_is_last_december() -> None:
    january = datetime(2027, 1, 10, 4, 0, tzinfo=UTC)
    assert parse_period("上月", january, SHANGHAI) == Period(
        local(2026, 12, 1), local(2027, 1, 1))


@pytest.mark.parametrize("text", ["四川", "下周", "2026-13-四川", "11-25"])
def test_words_that_are_no_period(text: str) -> None:
    """Left for the unit's name; period-shaped words that name none (2026-13, 1999, 0d):
    tests/test_periods.py."""
    assert parse_period(text, NOW, SHANGHAI) is None


def test_filters_in_any_order_and_either_script() -> None:
    found = rules.parse_filters(["特急", "收", "本月", "四川"], NOW, SHANGHAI)
    assert (found.scope, found.urgency, found.unit_query) == (Scope.incoming, Urgency.flash,
                                                              "四川")
    assert found.period == Period(local(2026, 12, 1), local(2027, 1, 1))
    assert not found.open_only  # a period shows every status
    assert rules.parse_filters([], NOW, SHANGHAI).open_only
    assert rules.parse_filters(["已轉辦", "已完成"], NOW, SHANGHAI).statuses == [
        RequestStatus.transferred, RequestStatus.completed]
    assert rules.parse_filters(["未送達"], NOW, SHANGHAI).wanted_statuses() == [
        RequestStatus.open]
    assert rules.parse_filters(["云南", "省", "公安厅"], NOW, SHANGHAI).unit_query == \
        "云南 省 公安厅"
    again = Filters.from_json(found.to_json())
    assert again == found


# --------------------------------------------------------------------------- statistics


def row(status: RequestStatus, *, acked: int | None = None, done: int | None = None,
        ack_due: int = 15, reply_due: int | None = None) -> StatsRow:
    base = NOW - timedelta(days=1)
    at = lambda minutes: base + timedelta(minutes=minutes) if minutes is not None else None  # noqa: E731
    return StatsRow(mechanism="治安管控互动", to_unit="四川", status=status, created_at=base,
                    ack_due_at=at(ack_due), acknowledged_at=at(acked), completed_at=at(done),
                    reply_due_at=at(reply_due))


def test_overdue() -> None:
    assert not rules.is_overdue(row(RequestStatus.accepted, acked=10), NOW)
    assert rules.is_overdue(row(RequestStatus.accepted, acked=20), NOW)
    assert rules.is_overdue(row(RequestStatus.open), NOW)  # deadline passed, no answer
    assert not rules.is_overdue(row(RequestStatus.cancelled), NOW)
    assert rules.is_overdue(row(RequestStatus.completed, acked=5, done=200, reply_due=100), NOW)
    assert not rules.is_overdue(row(RequestStatus.completed, acked=5, done=90, reply_due=100),
                                NOW)
    assert rules.is_overdue(row(RequestStatus.accepted, acked=5, reply_due=100), NOW)


def test_stats_figures() -> None:
    rows = [row(RequestStatus.completed, acked=10, done=60),
            row(RequestStatus.completed, acked=30, done=180),
            row(RequestStatus.accepted, acked=20),
            StatsRow(None, "重庆", RequestStatus.open, NOW, NOW + timedelta(hours=1), None, None,
                     None)]
    stats = rules.compute_stats(rows, Period(NOW - timedelta(days=7), NOW), NOW)
    assert stats.total == 4 and stats.overdue == 2 and stats.overdue_share == 0.5
    assert stats.by_mechanism == [("治安管控互动", 3), ("—", 1)]
    assert stats.by_unit == [("四川", 3), ("重庆", 1)]
    assert stats.by_status == [(RequestStatus.open, 1), (RequestStatus.accepted, 1),
                               (RequestStatus.completed, 2)]
    assert stats.median_ack == timedelta(minutes=20)
    assert stats.median_complete == timedelta(minutes=120)
    empty = rules.compute_stats([], Period(NOW - timedelta(days=7), NOW), NOW)
    assert (empty.total, empty.overdue_share, empty.median_ack) == (0, None, None)


@pytest.mark.parametrize(
    ("language", "minutes", "text"),
    [("zh-Hans", 0, "0分钟"), ("zh-Hans", 15, "15分钟"), ("zh-Hans", 125, "2小时5分钟"),
     ("zh-Hant", 60 * 27, "1天3小時"), ("en", 60 * 27 + 5, "1 d 3 h"), ("en", 45, "45 min")],
)
def test_durations(language: str, minutes: int, text: str) -> None:
    assert render.duration(Translator(language), timedelta(minutes=minutes)) == text


# --------------------------------------------------------------------------- rendering


def sample(status: RequestStatus) -> AssistanceRequest:
    created = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    actor = User(telegram_id=201, full_name="李静", role=Role.duty_officer)
    request = AssistanceRequest(
        id=7, number="XZ-2026-000007", urgency=Urgency.flash, status=status, version=3,
        subject="<b>协查</b> & 线索", details="详情 <i>不是标签</i>",
        attachments=[{"type": "photo"}],
        created_at=created, ack_due_at=created + timedelta(minutes=15),
        reply_due_at=created + timedelta(days=1), from_unit_id=1, to_unit_id=2,
        result="已查明" if status is RequestStatus.completed else None,
    )
    request.from_unit = Unit(name="云南省公安厅", short_name="云南")
    request.to_unit = Unit(name="四川省公安厅", short_name="四川")
    request.mechanism = Mechanism(name="治安管控互动")
    request.created_by = User(telegram_id=101, full_name="杨丽华", role=Role.officer)
    request.transferred_to = None
    events = [RequestEvent(action="created", at=created, to_status="open", note=None)]
    events[0].actor = request.created_by
    if status is not RequestStatus.open:
        change = RequestEvent(action="decline", at=created + timedelta(minutes=5),
                              from_status="open", to_status=status.value, note="理由<x>")
        change.actor = actor
        events.append(change)
    if status is RequestStatus.transferred:
        copy = AssistanceRequest(number="XZ-2026-000008")
        copy.to_unit = Unit(name="重庆市公安局", short_name="重庆")
        request.transferred_to = copy
    request.events = events
    return request


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("status", list(RequestStatus))
def test_cards_render_every_state_in_every_language(
    language: str, status: RequestStatus
) -> None:
    tr = Translator(language)
    request = sample(status)
    text = render.card(tr, request, SHANGHAI) + render.history(tr, request, SHANGHAI)
    text += render.list_line(tr, request, SHANGHAI)
    assert "requests." not in text and "{" not in text  # every key found and filled
    assert "&lt;b&gt;协查&lt;/b&gt; &amp; 线索" in text and "<b>协查" not in text
    assert "&lt;i&gt;" in text
    assert text.startswith("<b>🔴")
    assert "12-01 09:00" in text  # Beijing time
    if status is not RequestStatus.open:
        assert "李静" in text
    if status is RequestStatus.transferred:
        assert tr.name("重庆市公安局") in text and "XZ-2026-000008" in text  # 重慶 in zh-Hant
    if status is RequestStatus.completed:
        assert "已查明" in text


def test_times_in_the_readers_zone() -> None:
    request = sample(RequestStatus.open)
    urumqi = render.card(Translator("zh-Hans"), request, ZoneInfo("Asia/Urumqi"))
    assert "12-01 07:00" in urumqi
    assert time_zone("Not/AZone", "Asia/Shanghai") == SHANGHAI
    assert time_zone(None, "Asia/Urumqi") == ZoneInfo("Asia/Urumqi")


def test_a_word_in_the_mechanism_place_meant_as_one() -> None:
    names = [rules.fold(n) for n in ("治安管控互动", "情报信息互享", "intelligence sharing")]
    assert rules.meant_as_mechanism("治安管控", names, before_urgency=False)
    assert rules.meant_as_mechanism("Intelligence", names, before_urgency=False)
    assert rules.meant_as_mechanism("联勤", names, before_urgency=True)
    assert not rules.meant_as_mechanism("协查涉枪线索", names, before_urgency=False)
    assert not rules.meant_as_mechanism("情报", names, before_urgency=False)  # too short to tell
    assert not rules.meant_as_mechanism("特急", names, before_urgency=True)


def test_the_short_number_of_a_request() -> None:
    assert [rules.parse_sequence(t) for t in ("000001", "1", "１２", " 42 ")] == [1, 1, 12, 42]
    assert [rules.parse_sequence(t) for t in ("0", "1234567", "XZ-2026-1", "一")] == [None] * 4
