"""Every button press is answered exactly once (bot/answers.py), on both databases: a
press answered too late for Telegram ("query is too old") still takes effect and is no
error; a guided flow's presses are answered once each; a press no handler answered is
answered after them; a failure after the answer is told in a message, not a second
answer."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from telegram import Update
from telegram.ext import CallbackQueryHandler
from telegram.ext import ContextTypes

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from core.enums import RequestStatus
from storage import requests as request_store
from storage.db import Database
from tests import test_meetings as meetings
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

REQUESTER, DUTY = 101, 201
TOO_OLD = "query is too old"


@pytest.fixture
async def requests_desk(emulator: BotApiEmulator, database_url: str,
                        db: Database) -> AsyncIterator[BotHarness]:
    await make_directory(db)
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [DUTY])})
    async with BotHarness(emulator, database_url, now=FakeClock(T0)) as harness:
        yield harness


@pytest.fixture
async def meetings_desk(emulator: BotApiEmulator, database_url: str,
                        db: Database) -> AsyncIterator[BotHarness]:
    await meetings.seed(db)
    meetings.prepare(emulator)
    async with BotHarness(emulator, database_url, admin_ids=[meetings.ADMIN_ID],
                          now=FakeClock(meetings.T0)) as harness:
        yield harness


async def request_card(bot: BotHarness) -> ApiCall:
    """A request to 四川, delivered: its card, with buttons, in the duty room."""
    sent = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查涉枪线索")
    await bot.press(REQUESTER, sent, "提交")
    delivered = await bot.deliver()
    return next(c for c in delivered.messages if c.params.get("reply_markup"))


async def press_too_late(bot: BotHarness, user: int, card: ApiCall, label: str) -> Sent:
    """Press a button whose answer reaches Telegram after the query expired."""
    data = next(d for text, d in Sent([card]).buttons() if label in text)
    update = bot.emulator.make_callback_update(user, card.message_ref, data)
    bot.emulator.expire_query(update["callback_query"]["id"])
    return await bot.feed(update)


def answers(sent: Sent) -> list[ApiCall]:
    return [c for c in sent.calls if c.method == "answerCallbackQuery"]


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_accept_answered_too_late_is_still_accepted_and_no_error(
    requests_desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    card = await request_card(requests_desk)
    caplog.set_level(logging.DEBUG)
    sent = await press_too_late(requests_desk, DUTY, card, "接收")
    [answer] = answers(sent)  # once: not again by the error handler
    assert not answer.ok and TOO_OLD in (answer.error or "")
    assert problems(caplog) == []
    assert any("could not be answered any more" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG)
    async with requests_desk.db.session() as session:
        request = await request_store.load_request(session, number="XZ-2026-000001")
        assert request is not None and request.status is RequestStatus.accepted
    delivered = await requests_desk.deliver()  # the card and the requester are told
    assert any(c.method == "editMessageText" and "已接收" in c.params["text"]
               for c in delivered.calls)
    assert any(c.chat_id == REQUESTER for c in delivered.messages)


async def test_a_decline_answered_too_late_still_asks_for_the_reason(
    requests_desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler answers first and asks next: the question still comes."""
    card = await request_card(requests_desk)
    sent = await press_too_late(requests_desk, DUTY, card, "拒绝")
    assert len(answers(sent)) == 1 and problems(caplog) == []
    prompt = [c for c in sent.messages if (c.params.get("reply_markup") or {}).get("force_reply")]
    assert prompt and "拒绝" in prompt[0].params["text"] and prompt[0].chat_id == SICHUAN_ROOM


async def test_each_press_of_a_guided_flow_is_answered_once(
    meetings_desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """The flow's steps used to be answered by the flow and again by the button
    fallback, which Telegram refused: a 'query is too old' traceback at ERROR."""
    preview = await meetings.preview_of_a_new_meeting(meetings_desk, "第十五届联席会议")
    done = await meetings_desk.press(meetings.COORD_ID, preview, "确认")
    assert "已创建会议" in done.text
    calls = [c for c in meetings_desk.emulator.calls if c.method == "answerCallbackQuery"]
    assert len(calls) == 3 and all(c.ok for c in calls), [c.error for c in calls]
    assert set(Counter(c.params["callback_query_id"] for c in calls).values()) == {1}
    assert problems(caplog) == []


async def test_a_press_no_handler_answers_is_answered_after_them(
    requests_desk: BotHarness
) -> None:
    async def silent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, "收到")

    requests_desk.application.add_handler(CallbackQueryHandler(silent, pattern="^test:"), -3)
    message = await requests_desk.send(REQUESTER, "/help")
    sent = await requests_desk.press_data(REQUESTER, message.messages[0], "test:silent")
    assert [c.method for c in sent.calls] == ["sendMessage", "answerCallbackQuery"]
    assert sent.calls[1].ok and "text" not in sent.calls[1].params


async def test_a_failure_after_the_answer_is_told_in_a_message(
    requests_desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer()
        raise RuntimeError("the handler failed after answering")

    requests_desk.application.add_handler(CallbackQueryHandler(failing, pattern="^test:"), -3)
    message = await requests_desk.send(REQUESTER, "/help")
    sent = await requests_desk.press_data(REQUESTER, message.messages[0], "test:fail")
    assert [(c.method, c.ok) for c in sent.calls] == [("answerCallbackQuery", True),
                                                      ("sendMessage", True)]
    assert "处理时出了问题" in sent.calls[1].params["text"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "error while handling an update"]
