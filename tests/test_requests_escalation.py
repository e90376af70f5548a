"""Escalation of unanswered requests with a controllable clock, on both databases:
remind the room at the deadline, alert coordinators at twice it, flag passed reply
deadlines to both sides; each fires once, also across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from storage import requests as store
from storage.db import Database
from storage.models import DutyRoom
from storage.models import ScheduleMark
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

REQUESTER, DUTY, CQ_LIAISON, COORDINATOR = 101, 201, 301, 401
CHONGQING_ROOM = -1001000000301


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def people(emulator: BotApiEmulator) -> None:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [DUTY]),
                          CHONGQING_ROOM: ("重庆市局值班室", [CQ_LIAISON])})


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as harness:
        yield harness


async def submit(bot: BotHarness, text: str, *, deadline: str | None = None) -> ApiCall | None:
    sent = await bot.send(REQUESTER, text)
    if deadline is not None:
        sent = await bot.press(REQUESTER, sent, "答复期限")
        sent = await bot.send(REQUESTER, deadline)
    await bot.press(REQUESTER, sent, "提交")
    delivered = await bot.deliver()
    cards = [c for c in delivered.messages if c.chat_id == SICHUAN_ROOM]
    return cards[0] if cards else None


def to(sent: Sent, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in sent.messages if c.chat_id == chat_id]


async def test_remind_at_the_deadline_alert_at_twice_it_each_once(
    bot: BotHarness, clock: FakeClock
) -> None:
    card = await submit(bot, "/request 四川 治安管控互动 特急 协查涉枪线索")
    assert card is not None
    clock.advance(minutes=14, seconds=59)
    assert not (await bot.run_due()).messages
    # The scheduler's job fires at the instant itself; run_due takes what is due before now.
    clock.set(T0 + timedelta(minutes=15, seconds=1))
    sent = await bot.run_due()
    [reminder] = [c for c in sent.messages if c.chat_id == SICHUAN_ROOM]
    assert "超时未接收" in reminder.params["text"] and "15分钟" in reminder.params["text"]
    assert reminder.params["reply_parameters"]["message_id"] == card.message_ref[1]
    assert "接收" in Sent([reminder]).buttons()[0][0]
    assert not (await bot.run_due()).messages  # fires once
    clock.set(T0 + timedelta(minutes=30, seconds=1))
    sent = await bot.run_due()
    assert to(sent, SICHUAN_ROOM) == []
    [alert] = to(sent, COORDINATOR)  # 重庆's coordinator shares the zone; reads English
    assert "Request overdue" in alert and "XZ-2026-000001" in alert
    assert not (await bot.run_due()).messages
    # Accepting from the reminder works, and updates the card and the reminder.
    pressed = await bot.press(DUTY, reminder, "接收")
    assert pressed.alerts == ["已接收 XZ-2026-000001。"]
    delivered = await bot.deliver()
    edits = {c.method: c for c in delivered.calls if c.method.startswith("edit")}
    assert "已接收" in edits["editMessageText"].params["text"]
    assert edits["editMessageReplyMarkup"].params["message_id"] == reminder.message_ref[1]
    clock.set(T0 + timedelta(hours=5))
    assert not (await bot.run_due()).messages
    async with bot.db.session() as session:
        request = await store.load_request(session, number="XZ-2026-000001")
    assert [e.action for e in request.events] == [
        "created", "routed", "reminded", "escalated", "accept"]


async def test_an_answered_request_never_escalates(bot: BotHarness, clock: FakeClock) -> None:
    card = await submit(bot, "/request 四川 治安管控互动 加急 协查车辆")
    await bot.press(DUTY, card, "接收")
    await bot.deliver()
    for minutes in (119, 121, 240, 241, 60 * 24):
        clock.set(T0 + timedelta(minutes=minutes))
        assert not (await bot.run_due()).messages, minutes


async def test_reply_deadline_is_flagged_to_both_sides(bot: BotHarness, clock: FakeClock) -> None:
    card = await submit(bot, "/request 四川 治安管控互动 平急 查询户籍", deadline="3h")
    await bot.press(DUTY, card, "接收")
    await bot.deliver()
    clock.set(T0 + timedelta(hours=3, seconds=1))
    sent = await bot.run_due()
    [room] = to(sent, SICHUAN_ROOM)
    [requester] = to(sent, REQUESTER)
    assert "已过答复期限" in room and "12-01 12:00" in room
    assert "已过答复期限" in requester and "已接收" in requester
    assert not (await bot.run_due()).messages


async def test_configured_deadlines(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock,
                          ack_deadline_flash_minutes=5) as bot:
        await submit(bot, "/request 四川 治安管控互动 特急 协查涉枪线索")
        clock.set(T0 + timedelta(minutes=5, seconds=1))
        assert to(await bot.run_due(), SICHUAN_ROOM)


async def test_a_restart_across_a_due_escalation_fires_it_once(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        await submit(bot, "/request 四川 治安管控互动 特急 协查涉枪线索")
    # Down from 09:00 to 09:20: the 09:15 reminder is due on start (late, within grace).
    clock.set(T0 + timedelta(minutes=20))
    async with BotHarness(emulator, database_url, now=clock) as bot:
        sent = await bot.deliver()
        [reminder] = to(sent, SICHUAN_ROOM)
        assert "超时未接收" in reminder and "系统恢复后补发" in reminder
    async with BotHarness(emulator, database_url, now=clock) as bot:
        assert not (await bot.deliver()).messages
        assert not (await bot.run_due()).messages
    # Down again until 10:30: the 09:30 alert is past the grace period, yet still sent
    # (an unanswered request must not go quiet), once.
    clock.set(T0 + timedelta(minutes=90))
    async with BotHarness(emulator, database_url, now=clock) as bot:
        sent = await bot.deliver()
        [alert] = to(sent, COORDINATOR)
        assert "Request overdue" in alert and "sent late" in alert
    async with BotHarness(emulator, database_url, now=clock) as bot:
        assert not (await bot.deliver()).messages
        # Coordinators see that the alert went out only after the grace period.
        listing = await bot.send(COORDINATOR, "/missed")
        assert "request escalation (past the grace period; sent late" in listing.text
        assert "XZ-2026-000001" in listing.text
        async with bot.db.session() as session:
            marks = {m.key: m.outcome for m in (await session.execute(
                select(ScheduleMark))).scalars()}
    assert marks == {
        "request:XZ-2026-000001:escalate:remind_room": "late",
        "request:XZ-2026-000001:escalate:alert_coordinators": "missed",
    }


async def test_without_a_duty_room_the_liaisons_are_reminded(
    bot: BotHarness, clock: FakeClock
) -> None:
    assert await submit(bot, "/request 重庆 治安管控互动 特急 协查涉枪线索") is None
    sent = await bot.send(COORDINATOR, "/requests undelivered")
    assert "XZ-2026-000001" in sent.text and "undelivered" in sent.text
    clock.set(T0 + timedelta(minutes=15, seconds=1))
    sent = await bot.run_due()
    [reminder] = to(sent, CQ_LIAISON)
    assert "超时未接收" in reminder
    assert next(label for label, _ in sent.buttons()) == "✅ 接收"


async def test_a_room_registered_meanwhile_gets_the_request_at_the_deadline(
    bot: BotHarness, clock: FakeClock, directory: Directory
) -> None:
    await submit(bot, "/request 重庆 治安管控互动 特急 协查涉枪线索")
    async with bot.db.session() as session:
        session.add(DutyRoom(unit_id=directory.chongqing, chat_id=CHONGQING_ROOM,
                             title="重庆市局值班室", registered_at=T0))
    clock.set(T0 + timedelta(minutes=15, seconds=1))
    sent = await bot.run_due()
    card, reminder = to(sent, CHONGQING_ROOM)
    assert card.startswith("<b>🔴特急</b>") and "超时未接收" in reminder
    assert to(sent, CQ_LIAISON) == []
    sent = await bot.send(COORDINATOR, "/requests undelivered")
    assert "XZ-2026-000001" not in sent.text
