"""Extreme periods, dates and numbers in every command's arguments: a polite answer, never
"not completed" (the error handler) and never a crash.

/requests, /export requests and /stats refuse a period out of the range they can query
(naming that range), a date-looking word whose month or day does not exist, and a range
that ends before it starts, instead of taking such a word for a unit's name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from telegram.ext import ConversationHandler

from bot.config import LANGUAGES
from core.periods import Period
from core.periods import PeriodProblem
from core.periods import parse_period
from i18n import t
from tools.testing import BotHarness

ADMIN = 910000001  # 周立新, administrator, zh-Hans
OFFICER = 910000007  # 王雅琴, officer of 四川, zh-Hant
COORDINATOR = 910000002  # 马建军, coordinator of 甘肃, on 甘肃's daily roster
DUTY = 910000004  # 李静, duty officer of 四川, on 四川's weekly roster
SICHUAN_ROOM = -1001000000103
GENERIC_ERRORS = {t(language, "errors.generic") for language in LANGUAGES}

EXTREMES = [
    "0", "-1", "00", str(10**30), "-" + str(10**30), "²", "٣", "１２",
    "1900-01-01", "9999-12-31", "0000-00-00", "2026-13", "2026-00", "2025-02-30",
    "2026-00-05", "2026-12-32", "99999-01-01", "1900-01-01..9999-12-31",
    "2026-12-31..2026-01-01", "1900", "9999", "0d", "9999999999d", "1000w", "13-45",
    "02-30", "25:99", "24:00", "99:99", "1" * 300, "2026-" + "1" * 300, "x" * 1000,
]

# Every command argument that is a period, a date, a time, a count or an id ({} is the value).
TEMPLATES = [
    "/requests {}", "/requests 收 {} 四川", "/requests {} 已完成",
    "/export requests {}", "/export requests {} 四川 已完成", "/export {}",
    "/stats {}", "/stats {} 特急",
    "/notices {}", "/notices export {}",
    "/request {}", "/request 四川 治安管控互动 特急 {}",
    "/meeting {}", "/meeting edit {} 时间 2026-12-03 09:00", "/meeting edit 1 时间 {}",
    "/meeting edit 1 时间 {} 09:00", "/meeting edit 1 时间 2026-12-03 {}",
    "/meeting edit 1 提醒 {}", "/meeting edit 1 结束 {}", "/meeting edit 1 结束 {}d",
    "/meeting cancel {}",
    "/meetings {}",
    "/roster {}", "/roster edit override {} 何勇 培训", "/roster edit pattern day_night {} 20:00",
    "/roster edit pattern weekly {}", "/roster edit officers 李静, 王雅琴 {}",
    "/roster edit start {}", "/roster remind {}h", "/meeting edit 1 提醒 {}d",
    "/roster remind {}", "/roster remind 1d {}",
    "/swap {} 王雅琴 {}", "/swap {} 王雅琴", "/swap 11-30 {} 王雅琴", "/swap {} {} 张伟",
    "/chair {}", "/chair set 西北 {} 2024-12-03 陕西、甘肃", "/chair set 西北 12 {} 陕西、甘肃",
    "/invite 四川 值班员 --hours {}", "/invite {}",
    "/deactivate {}", "/activate {}",
    "/oncall {}", "/contact {}", "/agreement {}", "/missed {}", "/start {}",
]

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("word", "kind"), [
    ("1900-01-01..9999-12-31", "out_of_range"), ("9999-12-31", "out_of_range"),
    ("1999-12-31", "out_of_range"), ("2101-01", "out_of_range"), ("1900", "out_of_range"),
    ("99999-01-01", "out_of_range"), ("2026-13", "no_such_month"),
    ("2026-00", "no_such_month"), ("2026-00-05", "no_such_month"),
    ("2026-123", "no_such_month"), ("2025-02-30", "no_such_day"), ("2026-12-32", "no_such_day"),
    ("2026-11-00", "no_such_day"), ("2026/02/29", "no_such_day"),
    ("2026-12-31..2026-01-01", "reversed"), ("0d", "bad_span"), ("0w", "bad_span"),
    ("9999999999d", "bad_span"), ("99999天", "bad_span"),
])
def test_a_period_that_names_none_is_a_problem(word: str, kind: str) -> None:
    with pytest.raises(PeriodProblem) as caught:
        parse_period(word, NOW, SHANGHAI)
    assert caught.value.kind == kind


def test_the_edges_of_the_range_are_periods() -> None:
    widest = parse_period("2000-01-01..2100-12-31", NOW, SHANGHAI)
    assert widest == Period(datetime(1999, 12, 31, 16, tzinfo=UTC),
                            datetime(2100, 12, 31, 16, tzinfo=UTC))
    assert parse_period("2024-02-29", NOW, SHANGHAI) is not None
    longest = (NOW.date() - datetime(2000, 1, 1).date()).days
    assert parse_period(f"{longest}d", NOW, SHANGHAI) is not None
    with pytest.raises(PeriodProblem):
        parse_period(f"{longest + 1}d", NOW, SHANGHAI)
    assert parse_period("四川", NOW, SHANGHAI) is None
    assert parse_period("2026-13-四川", NOW, SHANGHAI) is None


async def test_periods_out_of_range_or_not_existing_are_refused_politely(desk: BotHarness) -> None:
    wide = await desk.send(ADMIN, "/requests 1900-01-01..9999-12-31")
    assert wide.text == ("「1900-01-01..9999-12-31」超出可查询的范围："
                         "日期须在 2000-01-01 至 2100-12-31 之间。")

    month = await desk.send(ADMIN, "/export requests 2026-13")
    assert month.text == "「2026-13」中的月份不存在：月份为 1 至 12。"
    assert [c.method for c in month.messages] == ["sendMessage"]  # no file

    day = await desk.send(ADMIN, "/stats 2025-02-30 特急")
    assert day.text == "「2025-02-30」中的日期不存在：该月没有这一天。"
    assert [c.method for c in day.messages] == ["sendMessage"]  # no chart

    zero = await desk.send(ADMIN, "/requests 0d")
    assert "相对期间须为 1 至 " in zero.text and "（最早 2000-01-01）" in zero.text

    hant = await desk.send(OFFICER, "/requests 2026-00-05 四川")
    assert hant.text == "「2026-00-05」中的月份不存在：月份為 1 至 12。"
    reversed_ = await desk.send(OFFICER, "/export requests 2026-12-31..2026-01-01")
    assert "的結束日期早於開始日期" in reversed_.text


async def test_a_meeting_edited_to_end_after_years_is_refused(desk: BotHarness) -> None:
    before = (await desk.send(ADMIN, "/meeting 1")).text
    for value in ("900d", "9999999999d"):
        refused = await desk.send(ADMIN, f"/meeting edit 1 结束 {value}")
        assert refused.text == t("zh-Hans", "meetings.errors.too_long_meeting")
    assert (await desk.send(ADMIN, "/meeting 1")).text == before


def a_flow_is_open(desk: BotHarness) -> bool:
    """Whether a guided flow holds a state for anyone (PTB keeps them in its handlers
    and has no public way to ask)."""
    return any(handler._conversations for handlers in desk.application.handlers.values()
               for handler in handlers if isinstance(handler, ConversationHandler))


def generic_or_crash(sent_texts: list[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    crashed = [r.getMessage() for r in caplog.records if "error while handling" in r.getMessage()]
    return crashed + [text for text in sent_texts if text in GENERIC_ERRORS]


@pytest.mark.parametrize("template", TEMPLATES)
async def test_extreme_arguments_are_answered_politely(
    desk: BotHarness, caplog: pytest.LogCaptureFixture, template: str
) -> None:
    """Each template with each extreme value, from a coordinator and a duty officer in
    private (always answered), and from the duty officer in 四川's duty room (where a
    command for private chats may say nothing)."""
    caplog.set_level(logging.ERROR)
    failures = []
    for value in EXTREMES:
        text = template.replace("{}", value)[:4096]
        for user, chat in ((COORDINATOR, COORDINATOR), (DUTY, DUTY), (DUTY, SICHUAN_ROOM)):
            sent = await desk.send(user, text, chat_id=chat)
            if a_flow_is_open(desk):  # one in 40: the next value starts afresh
                await desk.send(user, "/cancel", chat_id=chat)
            problems = generic_or_crash(sent.texts + sent.alerts, caplog)
            if problems or (chat == user and not sent.messages):
                failures.append((user, chat, text[:80], problems or "no answer"))
            caplog.clear()
    assert not failures, failures


async def type_extremes(desk: BotHarness, user: int, caplog: pytest.LogCaptureFixture,
                        step: str, reach: Callable[[], Awaitable[object]]
                        ) -> list[tuple[str, str, object]]:
    """Reach a guided flow's prompt and type one extreme value there, for each value;
    returns the failures."""
    failures: list[tuple[str, str, object]] = []
    for value in EXTREMES:
        await reach()
        caplog.clear()
        sent = await desk.send(user, value)
        problems = generic_or_crash(sent.texts + sent.alerts, caplog)
        if problems or not sent.messages:
            failures.append((step, value[:40], problems or "no answer"))
        await desk.send(user, "/cancel")
    return failures


async def test_extreme_times_typed_in_guided_flows(
    desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply deadline of a request, the time of a scheduled notice, a new meeting's
    start and end: typed as extreme values, each is answered politely."""
    caplog.set_level(logging.ERROR)

    async def request_deadline() -> None:
        draft = await desk.send(DUTY, "/request 甘肃 治安管控互动 特急 协查涉枪线索")
        await desk.press(DUTY, draft, "答复期限")

    async def notice_time() -> None:
        preview = await desk.send(COORDINATOR, "/notice 预警 紧急 全部 今晚有强降雨")
        await desk.press(COORDINATOR, preview, "定时发送")

    async def meeting_start() -> None:
        await desk.send(COORDINATOR, "/meeting new")
        kinds = await desk.send(COORDINATOR, "联席会议")
        zones = await desk.press(COORDINATOR, kinds, kinds.buttons()[0][1])
        asked = await desk.press(COORDINATOR, zones, zones.buttons()[0][1])
        assert "4/7" in asked.text

    async def meeting_end() -> None:
        await meeting_start()
        assert "5/7" in (await desk.send(COORDINATOR, "2026-12-03 09:00")).text

    failures = [
        *await type_extremes(desk, DUTY, caplog, "request deadline", request_deadline),
        *await type_extremes(desk, COORDINATOR, caplog, "notice time", notice_time),
        *await type_extremes(desk, COORDINATOR, caplog, "meeting start", meeting_start),
        *await type_extremes(desk, COORDINATOR, caplog, "meeting end", meeting_end),
    ]
    assert not failures, failures
