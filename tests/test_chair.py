"""Chair rotation through the emulator with a controllable clock: /chair, the reminders to
both units' duty rooms before the handover, the handover itself (the rotation advances),
month-end terms, /chair set, and a handover missed while the bot was down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from bot.plans.chair import ChairPlanner
from core.enums import Role
from storage.db import Database
from storage.models import AuditEntry
from storage.models import ChairRotation
from storage.models import ChairRotationEntry
from storage.models import DutyRoom
from storage.models import ScheduleMark
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership
from tools.clock import FakeClock
from tools.testing import BotHarness

ADMIN_ID = 910000001
COORD_ID = 910000041
OFFICER_ID = 910000042
GANSU_ROOM = -1001000000401
QINGHAI_ROOM = -1001000000402
SHAANXI_ROOM = -1001000000403
# 甘肃 has chaired since 2025-12-03 09:00 and hands over to 青海 on 2026-12-03 09:00 (Beijing).
HANDOVER = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


async def seed(db: Database) -> dict[str, int]:
    async with db.session() as session:
        zone = Zone(code="nw", name="西北警务协作区", short_name="西北")
        units = [Unit(code=code, name=name, short_name=short) for code, name, short in (
            ("sn", "陕西省公安厅", "陕西"), ("gs", "甘肃省公安厅", "甘肃"),
            ("qh", "青海省公安厅", "青海"), ("nx", "宁夏回族自治区公安厅", "宁夏"))]
        other = Unit(code="sc", name="四川省公安厅", short_name="四川")
        session.add_all([zone, *units, other])
        await session.flush()
        session.add_all([ZoneMembership(zone_id=zone.id, unit_id=u.id) for u in units])
        session.add_all([
            DutyRoom(unit_id=units[0].id, chat_id=SHAANXI_ROOM, title="陕西值班室"),
            DutyRoom(unit_id=units[1].id, chat_id=GANSU_ROOM, title="甘肃值班室"),
            DutyRoom(unit_id=units[2].id, chat_id=QINGHAI_ROOM, title="青海值班室"),
        ])
        session.add(ChairRotation(
            zone_id=zone.id, term_months=12, anchor_date=date(2024, 12, 3),
            entries=[ChairRotationEntry(position=i, unit_id=u.id) for i, u in enumerate(units)],
        ))
        session.add_all([
            User(telegram_id=COORD_ID, full_name="王芳", role=Role.coordinator,
                 unit_id=units[1].id),
            User(telegram_id=OFFICER_ID, full_name="李娜", role=Role.officer,
                 unit_id=units[2].id),
        ])
        return {"zone": zone.id, "sc": other.id}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def ids(db: Database) -> dict[str, int]:
    return await seed(db)


def prepare(emulator: BotApiEmulator) -> None:
    for user_id, name in ((ADMIN_ID, "管理员"), (COORD_ID, "王芳"), (OFFICER_ID, "李娜")):
        emulator.add_user(user_id, name)
    for chat_id, title in ((GANSU_ROOM, "甘肃值班室"), (QINGHAI_ROOM, "青海值班室"),
                           (SHAANXI_ROOM, "陕西值班室")):
        emulator.add_group(chat_id, title)


@pytest.fixture
async def desk(
    emulator: BotApiEmulator, database_url: str, ids: dict[str, int], clock: FakeClock
) -> AsyncIterator[BotHarness]:
    prepare(emulator)
    async with BotHarness(emulator, database_url, admin_ids=[ADMIN_ID], now=clock) as harness:
        yield harness


def rooms_of(sent: list) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for call in sent:
        found.setdefault(call.chat_id, []).append(call.params.get("text", ""))
    return found


async def test_chair_shows_current_next_and_handover(desk: BotHarness) -> None:
    shown = await desk.send(OFFICER_ID, "/chair")
    assert "西北警务协作区" in shown.text
    assert "当前：<b>甘肃</b>" in shown.text and "下一任：<b>青海</b>" in shown.text
    assert "12月3日（周四） 09:00 交接（还有 13 天）" in shown.text
    assert "陕西 → <b>甘肃</b> → 青海 → 宁夏" in shown.text
    assert "没有找到协作区" in (await desk.send(OFFICER_ID, "/chair 火星")).text


async def test_both_rooms_are_reminded_and_the_rotation_advances(
    desk: BotHarness, ids: dict[str, int], clock: FakeClock
) -> None:
    for due, lead in ((HANDOVER - timedelta(days=7), "7 天后"),
                      (HANDOVER - timedelta(days=1), "1 天后")):
        clock.set(due + timedelta(seconds=1))
        sent = rooms_of((await desk.run_due()).messages)
        assert set(sent) == {GANSU_ROOM, QINGHAI_ROOM}, lead
        assert lead in sent[GANSU_ROOM][0] and "由<b>甘肃</b>交接给<b>青海</b>" in \
            sent[QINGHAI_ROOM][0]
        assert not (await desk.run_due()).messages
    clock.set(HANDOVER + timedelta(seconds=1))
    sent = rooms_of((await desk.run_due()).messages)
    assert set(sent) == {GANSU_ROOM, QINGHAI_ROOM}
    assert "轮值主席交接" in sent[GANSU_ROOM][0] and "下一任：宁夏" in sent[GANSU_ROOM][0]
    shown = await desk.send(OFFICER_ID, "/chair 西北")
    assert "当前：<b>青海</b>" in shown.text and "下一任：<b>宁夏</b>" in shown.text
    async with desk.db.session() as session:
        advance = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "chair.advance"))).scalar_one()
    assert advance.detail["outgoing"] == "gs" and advance.detail["incoming"] == "qh"


async def test_terms_clamp_at_month_ends_across_the_year_end(
    desk: BotHarness, ids: dict[str, int]
) -> None:
    async with desk.db.session() as session:
        rotation = (await session.execute(select(ChairRotation))).scalar_one()
        rotation.term_months, rotation.anchor_date = 1, date(2026, 10, 31)
    planner = ChairPlanner(desk.services)
    async with desk.db.session() as session:
        found = await planner.occurrences(session, T0, datetime(2027, 3, 15, tzinfo=UTC))
    handovers = [o.due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for o in found
                 if o.key.endswith(":handover")]
    # 31 October + 1, 2, 3, 4 months: 30 Nov, 31 Dec, 31 Jan, 28 Feb (09:00 Beijing).
    assert handovers == [
        "2026-11-30 01:00", "2026-12-31 01:00", "2027-01-31 01:00", "2027-02-28 01:00"]


async def test_chair_set_validates_and_saves(desk: BotHarness, clock: FakeClock) -> None:
    assert "无权" in (await desk.send(OFFICER_ID, "/chair set 西北 12 2026-01-01 甘肃 青海")).text
    for bad, answer in (("西北 0 2026-01-01 甘肃 青海", "1 到 120"),
                        ("西北 12 某天 甘肃 青海", "无法识别日期"),
                        ("西北 12 2026-01-01 甘肃 四川", "不是西北警务协作区的成员"),
                        ("西北 12 2026-01-01 甘肃 甘肃", "重复出现"),
                        ("西北 12 2026-01-01 甘肃", "至少需要两个单位"), ("西北 12", "用法")):
        assert answer in (await desk.send(COORD_ID, f"/chair set {bad}")).text, bad
    done = await desk.send(COORD_ID, "/chair set 西北 6 2026-06-01 青海、宁夏、甘肃")
    assert "轮值安排已保存" in done.text and "当前：<b>青海</b>" in done.text
    assert "下一任：<b>宁夏</b>" in done.text
    async with desk.db.session() as session:
        rotation = (await session.execute(select(ChairRotation))).scalar_one()
        assert rotation.term_months == 6
        actions = set((await session.execute(select(AuditEntry.action))).scalars())
    assert "chair.rotation.save" in actions
    clock.advance(minutes=1)
    assert not (await desk.run_due()).messages


async def test_handover_missed_while_down_is_recorded(
    emulator: BotApiEmulator, database_url: str, ids: dict[str, int], clock: FakeClock
) -> None:
    prepare(emulator)
    async with BotHarness(emulator, database_url, now=clock):
        pass  # ran, then down from T0 until after the handover
    clock.set(HANDOVER + timedelta(hours=3))
    async with BotHarness(emulator, database_url, now=clock) as bot:
        assert not (await bot.deliver()).messages
        listing = await bot.send(COORD_ID, "/missed")
        assert "轮值交接" in listing.text
        shown = await bot.send(OFFICER_ID, "/chair")
        assert "当前：<b>青海</b>" in shown.text
    async with bot.db.session() as session:
        marks = dict((await session.execute(select(ScheduleMark.key, ScheduleMark.outcome)
                                             .where(ScheduleMark.key.like("chair:%")))).all())
        advance = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "chair.advance"))).scalar_one()
    assert set(marks.values()) == {"missed"} and advance.detail["missed"] is True
