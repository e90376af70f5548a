"""Duty rosters through the emulator with a controllable clock: each shift pattern, the
handover brief's contents, private shift reminders at each officer's offsets, overrides and
swaps (nobody is reminded of a shift swapped away), restarts, and DST-safe handovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from bot.plans.roster import RosterPlanner
from core.enums import MeetingKind
from core.enums import NoticeKind
from core.enums import NoticeStatus
from core.enums import RequestStatus
from core.enums import Role
from core.enums import ShiftPattern
from core.enums import SwapStatus
from core.enums import Urgency
from handlers.roster_common import parse_day
from storage.dataio import import_file
from storage.db import Database
from storage.models import AssistanceRequest
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import Roster
from storage.models import RosterMember
from storage.models import ScheduleMark
from storage.models import ShiftOverride
from storage.models import ShiftSwap
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership
from tools.clock import FakeClock
from tools.testing import BotHarness

ADMIN_ID = 910000001
COORD_ID = 910000031
ZHANG = 910000032  # 张伟, duty officer of 甘肃, on the roster
MA = 910000033  # 马建军, duty officer of 甘肃, on the roster
OUTSIDER = 910000034  # 青海 duty officer
# Of the hant_desk fixture (tests/conftest.py): duty officers in zh-Hant and zh-Hans, an
# officer in English.
HANT_DUTY_OFFICER, HANT_SIMPLIFIED_DUTY, HANT_ENGLISH = 920000004, 920000006, 920000005
GANSU_ROOM = -1001000000301
XINJIANG_ROOM = -1001000000304
# 2026-11-20 is a Friday; the 甘肃 roster starts 2026-11-02 08:30 (Beijing):
# 张伟 (position 0) on 11-02, 马建军 11-03, 何文静 11-04, 张伟 11-05, …
# 11-19 → 何文静; 11-20 is day 18: 18 % 3 = 0 → 张伟; 11-21 → 马建军; 11-22 → 何文静;
# 11-23 → 张伟. The tests start at midnight in Beijing on Friday 20 November.
T0 = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)


def at_beijing(day: int, hour: int = 8, minute: int = 30) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


async def seed(db: Database) -> dict[str, int]:
    async with db.session() as session:
        zone = Zone(code="nw", name="西北警务协作区", short_name="西北")
        gansu = Unit(code="gs", name="甘肃省公安厅", short_name="甘肃")
        qinghai = Unit(code="qh", name="青海省公安厅", short_name="青海")
        xinjiang = Unit(code="xj", name="新疆维吾尔自治区公安厅", short_name="新疆",
                        timezone="Asia/Urumqi")
        session.add_all([zone, gansu, qinghai, xinjiang])
        await session.flush()
        session.add_all([ZoneMembership(zone_id=zone.id, unit_id=u.id)
                         for u in (gansu, qinghai, xinjiang)])
        room = DutyRoom(unit_id=gansu.id, chat_id=GANSU_ROOM, title="甘肃省厅值班室")
        xj_room = DutyRoom(unit_id=xinjiang.id, chat_id=XINJIANG_ROOM, title="新疆值班室")
        session.add_all([room, xj_room])
        users = {
            "coord": User(telegram_id=COORD_ID, full_name="王芳", role=Role.coordinator,
                          unit_id=qinghai.id),
            "zhang": User(telegram_id=ZHANG, full_name="张伟", role=Role.duty_officer,
                          unit_id=gansu.id),
            "ma": User(telegram_id=MA, full_name="马建军", role=Role.duty_officer,
                       unit_id=gansu.id),
            "outsider": User(telegram_id=OUTSIDER, full_name="李娜", role=Role.duty_officer,
                             unit_id=qinghai.id),
        }
        session.add_all(users.values())
        # People of the units who are not on a roster yet (an edit may only add those).
        session.add_all([Liaison(unit_id=gansu.id, name="杨帆"),
                         Liaison(unit_id=xinjiang.id, name="古丽"),
                         Liaison(unit_id=qinghai.id, name="赵强")])
        await session.flush()
        session.add(Roster(
            duty_room_id=room.id, pattern=ShiftPattern.daily, anchor_date=date(2026, 11, 2),
            timezone="Asia/Shanghai", shift_starts=["08:30"],
            members=[
                RosterMember(position=0, name="张伟", phone="+86 100 0000 0201",
                             user_id=users["zhang"].id, telegram_user_id=ZHANG),
                RosterMember(position=1, name="马建军", user_id=users["ma"].id,
                             telegram_user_id=MA),
                RosterMember(position=2, name="何文静"),
            ],
        ))
        session.add(Roster(
            duty_room_id=xj_room.id, pattern=ShiftPattern.day_night,
            anchor_date=date(2026, 11, 2), timezone="Asia/Urumqi",
            shift_starts=["08:00", "20:00"],
            members=[RosterMember(position=0, name="买买提江"),
                     RosterMember(position=1, name="陈晓梅")],
        ))
        return {"gs": gansu.id, "qh": qinghai.id, "xj": xinjiang.id, "zone": zone.id,
                "room": room.id, "xj_room": xj_room.id}


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    return FakeClock(getattr(request, "param", T0))


@pytest.fixture
async def ids(db: Database) -> dict[str, int]:
    return await seed(db)


def prepare(emulator: BotApiEmulator) -> None:
    for user_id, name in ((ADMIN_ID, "管理员"), (COORD_ID, "王芳"), (ZHANG, "张伟"),
                          (MA, "马建军"), (OUTSIDER, "李娜")):
        emulator.add_user(user_id, name)
    emulator.add_group(GANSU_ROOM, "甘肃省厅值班室", [ZHANG, MA])
    emulator.add_group(XINJIANG_ROOM, "新疆值班室")


@pytest.fixture
async def desk(
    emulator: BotApiEmulator, database_url: str, ids: dict[str, int], clock: FakeClock
) -> AsyncIterator[BotHarness]:
    prepare(emulator)
    async with BotHarness(emulator, database_url, admin_ids=[ADMIN_ID], now=clock) as harness:
        yield harness


def texts_to(sent_calls: list, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in sent_calls if c.chat_id == chat_id]


async def occurrences(desk: BotHarness, start: datetime, end: datetime) -> list:
    planner = RosterPlanner(desk.services)
    async with desk.db.session() as session:
        return list(await planner.occurrences(session, start, end))


# --------------------------------------------------------------------------- patterns


async def test_each_shift_pattern_places_handovers_in_local_time(
    desk: BotHarness, ids: dict[str, int]
) -> None:
    found = await occurrences(desk, T0, T0 + timedelta(days=2))
    gansu = [o.due_at for o in found if o.key.startswith(f"handover:room{ids['room']}:")]
    assert gansu == [at_beijing(20), at_beijing(21)]
    urumqi = [o.due_at for o in found if o.key.startswith(f"handover:room{ids['xj_room']}:")]
    # 08:00 and 20:00 in Urumqi (UTC+6): 02:00 and 14:00 UTC.
    assert [t.strftime("%d %H:%M") for t in urumqi] == [
        "20 02:00", "20 14:00", "21 02:00", "21 14:00"]
    async with desk.db.session() as session:
        roster = (await session.execute(
            select(Roster).where(Roster.duty_room_id == ids["room"]))).scalar_one()
        roster.pattern, roster.shift_starts = ShiftPattern.weekly, ["08:30"]
    weekly = [o.due_at for o in await occurrences(desk, T0, T0 + timedelta(days=21))
              if o.key.startswith(f"handover:room{ids['room']}:")]
    # Weekly from Monday 2 November: Mondays 23 and 30 November, 7 December.
    assert weekly == [at_beijing(23), at_beijing(30), at_beijing(30) + timedelta(days=7)]


async def test_dst_handovers_keep_the_local_hour(desk: BotHarness, ids: dict[str, int]) -> None:
    async with desk.db.session() as session:
        roster = (await session.execute(
            select(Roster).where(Roster.duty_room_id == ids["room"]))).scalar_one()
        roster.timezone, roster.anchor_date = "Europe/Berlin", date(2026, 10, 20)
    start = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    handovers = [o.due_at for o in await occurrences(desk, start, start + timedelta(days=4))
                 if o.key.startswith(f"handover:room{ids['room']}:")]
    # Summer time ends on Sunday 25 October 2026: 08:30 CEST = 06:30 UTC, then 07:30 UTC.
    assert [t.strftime("%m-%d %H:%M") for t in handovers] == [
        "10-24 06:30", "10-25 07:30", "10-26 07:30", "10-27 07:30"]


# --------------------------------------------------------------------------- briefs


async def test_handover_brief_lists_what_the_incoming_officer_needs(
    desk: BotHarness, ids: dict[str, int], clock: FakeClock
) -> None:
    async with desk.db.session() as session:
        session.add_all([
            AssistanceRequest(number="2026-0012", from_unit_id=ids["qh"], to_unit_id=ids["gs"],
                              urgency=Urgency.flash, subject="协查涉爆嫌疑车辆",
                              status=RequestStatus.open,
                              ack_due_at=at_beijing(21, 8, 0)),
            AssistanceRequest(number="2026-0013", from_unit_id=ids["xj"], to_unit_id=ids["gs"],
                              urgency=Urgency.routine, subject="核查户籍信息",
                              status=RequestStatus.accepted,
                              reply_due_at=at_beijing(23, 18, 0)),
            AssistanceRequest(number="2026-0014", from_unit_id=ids["xj"], to_unit_id=ids["gs"],
                              urgency=Urgency.routine, subject="已办结的请求",
                              status=RequestStatus.completed),
        ])
        notice = Notice(number="TB-2026-003", kind=NoticeKind.warning, text="寒潮预警\n详情…",
                        status=NoticeStatus.sent, sent_at=T0)
        acknowledged = Notice(number="TB-2026-002", kind=NoticeKind.work, text="已确认的通报",
                              status=NoticeStatus.sent, sent_at=T0)
        session.add_all([notice, acknowledged])
        await session.flush()
        session.add_all([
            NoticeDelivery(notice_id=notice.id, duty_room_id=ids["room"]),
            NoticeDelivery(notice_id=acknowledged.id, duty_room_id=ids["room"],
                           acknowledged_at=T0, acknowledged_revision=1),
        ])
        meeting = Meeting(kind=MeetingKind.area, title="甘青片会", starts_at=at_beijing(21, 14),
                          ends_at=at_beijing(21, 16), timezone="Asia/Shanghai",
                          reminder_offsets=[])
        later = Meeting(kind=MeetingKind.joint, title="下周联席会议",
                        starts_at=at_beijing(28, 9), ends_at=at_beijing(28, 17),
                        reminder_offsets=[])
        session.add_all([meeting, later])
        await session.flush()
        session.add_all([MeetingParticipant(meeting_id=m.id, unit_id=ids["gs"])
                         for m in (meeting, later)])

    clock.set(at_beijing(21) + timedelta(seconds=1))
    sent = await desk.run_due()

    brief = texts_to(sent.messages, GANSU_ROOM)
    assert len(brief) == 1, brief
    text = brief[0]
    assert "交接班" in text and "交班：张伟" in text and "接班：<b>马建军" in text
    assert "2026-0012" in text and "特急" in text and "⚠️已超时" in text
    assert "2026-0013" in text and "答复时限 11月23日（周一） 18:00" in text
    assert "2026-0014" not in text
    assert "TB-2026-003" in text and "寒潮预警" in text and "TB-2026-002" not in text
    assert "甘青片会" in text and "下周联席会议" not in text
    assert not texts_to((await desk.run_due()).messages, GANSU_ROOM)  # once


# --------------------------------------------------------------------------- reminders


async def test_incoming_officer_is_reminded_privately_at_their_offsets(
    desk: BotHarness, clock: FakeClock
) -> None:
    # 马建军 takes over on 21 November 08:30: reminded 1 day and 1 hour before.
    clock.set(at_beijing(20) + timedelta(seconds=1))
    sent = await desk.run_due()
    reminders = texts_to(sent.messages, MA)
    assert len(reminders) == 1 and "值班提醒" in reminders[0] and "还有 1 天" in reminders[0]
    assert "交班人：张伟" in reminders[0]
    # 张伟 changes his own offsets; 何文静 has no account and gets nothing.
    saved = await desk.send(ZHANG, "/roster remind 2h 30m")
    assert "2 小时" in saved.text and "30 分钟" in saved.text
    assert "无法识别" in (await desk.send(ZHANG, "/roster remind 很早")).text
    clock.set(at_beijing(21, 7, 30) + timedelta(seconds=1))
    assert len(texts_to((await desk.run_due()).messages, MA)) == 1
    # 张伟's next shift is 23 November 08:30: 2 h before, not 1 day before.
    clock.set(at_beijing(22) + timedelta(seconds=1))
    assert not texts_to((await desk.run_due()).messages, ZHANG)
    clock.set(at_beijing(23, 6, 30) + timedelta(seconds=1))
    assert len(texts_to((await desk.run_due()).messages, ZHANG)) == 1


@pytest.mark.parametrize(("user_id", "off", "current"), [
    (HANT_DUTY_OFFICER, "今後接班前不再提醒您", "您已關閉值班提醒"),
    (HANT_SIMPLIFIED_DUTY, "今后接班前不再提醒您", "您已关闭值班提醒"),
    (HANT_ENGLISH, "you will no longer be reminded before your shifts",
     "You have no shift reminders"),
])
async def test_turning_reminders_off_reads_naturally_in_each_language(
    hant_desk: BotHarness, user_id: int, off: str, current: str
) -> None:
    saved = (await hant_desk.send(user_id, "/roster remind off")).text
    assert off in saved and "不提醒" not in saved and "no reminders" not in saved
    assert current in (await hant_desk.send(user_id, "/roster remind")).text
    async with hant_desk.db.session() as session:
        user = (await session.execute(
            select(User).where(User.telegram_id == user_id))).scalar_one()
    assert user.preferences["shift_reminders"] == []


# --------------------------------------------------------------------------- overrides, swaps


def test_a_shift_day_without_a_year_is_the_next_one() -> None:
    december = date(2026, 12, 20)
    assert parse_day("01-04", december, upcoming=True) == date(2027, 1, 4)
    assert parse_day("1月4日", december, upcoming=True) == date(2027, 1, 4)
    assert parse_day("12-20", december, upcoming=True) == december
    assert parse_day("2026-01-04", december, upcoming=True) == date(2026, 1, 4)
    assert parse_day("02-30", december, upcoming=True) is None
    # A roster's or a rotation's first day may be in the past: this year's.
    assert parse_day("11-02", december) == date(2026, 11, 2)


async def test_an_override_typed_in_december_for_january_is_next_january(
    desk: BotHarness, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 12, 28, 2, 0, tzinfo=UTC))
    done = await desk.send(MA, "/roster edit override 01-03 张伟", chat_id=GANSU_ROOM)
    assert "值班表已更新" in done.text
    async with desk.db.session() as session:
        override = (await session.execute(select(ShiftOverride))).scalar_one()
    assert override.shift_start == at_beijing(3).replace(year=2027, month=1)


async def test_override_changes_the_brief_and_the_reminders(
    desk: BotHarness, ids: dict[str, int], clock: FakeClock
) -> None:
    refused = await desk.send(OUTSIDER, "/roster edit override 11-21 张伟",
                              chat_id=GANSU_ROOM)
    assert "只有本单位的值班员" in refused.text
    assert "没有「赵六」" in (await desk.send(
        MA, "/roster edit override 11-21 赵六", chat_id=GANSU_ROOM)).text
    done = await desk.send(MA, "/roster edit override 11-21 何文静 培训", chat_id=GANSU_ROOM)
    assert "值班表已更新" in done.text and "何文静" in done.text and "（调班）" in done.text

    clock.set(at_beijing(20) + timedelta(seconds=1))
    assert not texts_to((await desk.run_due()).messages, MA)  # not MA's shift any more
    clock.set(at_beijing(21) + timedelta(seconds=1))
    brief = texts_to((await desk.run_due()).messages, GANSU_ROOM)
    assert brief and "接班：<b>何文静" in brief[0] and "调班培训" in brief[0]
    async with desk.db.session() as session:
        assert (await session.execute(select(ShiftOverride))).scalar_one().reason == "培训"
        actions = set((await session.execute(select(AuditEntry.action))).scalars())
    assert "roster.override" in actions


async def test_who_is_on_duty_now_follows_the_overrides(
    desk: BotHarness, clock: FakeClock
) -> None:
    # 21 November is 马建军's by rotation; 张伟 takes it instead.
    await desk.send(MA, "/roster edit override 11-21 张伟", chat_id=GANSU_ROOM)
    clock.set(at_beijing(20, 9))
    shown = await desk.send(ZHANG, "/oncall 甘肃")
    assert "在班：张伟" in shown.text and "下一班：张伟" in shown.text
    clock.set(at_beijing(21, 9))
    shown = await desk.send(ZHANG, "/oncall 甘肃")
    assert "在班：张伟" in shown.text and "下一班：何文静" in shown.text


async def test_swap_confirmed_by_the_other_officer(
    desk: BotHarness, clock: FakeClock
) -> None:
    # 张伟 has 23 November, 马建军 has 21 November: they trade.
    asked = await desk.send(ZHANG, "/swap 11-23 马建军 11-21")
    assert "已发起换班申请" in asked.text
    assert "没有班次" in (await desk.send(ZHANG, "/swap 11-24 马建军 11-21")).text
    requests = await desk.deliver()
    room_request = next(c for c in requests.messages if c.chat_id == GANSU_ROOM)
    assert "换班申请" in room_request.params["text"]
    assert any(c.chat_id == MA for c in requests.messages)

    stranger = await desk.press(OUTSIDER, room_request, "同意")
    assert stranger.alerts and "只有被申请的值班员" in stranger.alerts[0]
    confirmed = await desk.press(MA, room_request, "同意")
    assert "换班已确认" in confirmed.text
    await desk.deliver()
    again = await desk.press(MA, room_request, "同意")
    assert again.alerts and "已确认，无需再操作" in again.alerts[0]

    # 马建军 is no longer reminded of 21 November; 张伟 is.
    clock.set(at_beijing(20) + timedelta(seconds=1))
    sent = await desk.run_due()
    assert not texts_to(sent.messages, MA)
    assert len(texts_to(sent.messages, ZHANG)) == 1
    clock.set(at_beijing(21) + timedelta(seconds=1))
    brief = texts_to((await desk.run_due()).messages, GANSU_ROOM)
    assert "交班：张伟" in brief[0] and "接班：<b>张伟" in brief[0]
    roster = await desk.send(MA, "/roster", chat_id=GANSU_ROOM)
    assert "11月23日（周一） 08:30 <b>马建军</b> （调班）" in roster.text
    async with desk.db.session() as session:
        swap = (await session.execute(select(ShiftSwap))).scalar_one()
        overrides = (await session.execute(select(ShiftOverride))).scalars().all()
    assert swap.status is SwapStatus.confirmed and len(overrides) == 2


async def test_swap_confirmed_by_a_coordinator_not_by_the_requester(
    desk: BotHarness, clock: FakeClock
) -> None:
    # 张伟 asks 马建军 to cover his shift of 23 November; a coordinator confirms it.
    await desk.send(ZHANG, "/swap 11-23 马建军")
    request = next(c for c in (await desk.deliver()).messages if c.chat_id == GANSU_ROOM)
    own = await desk.press(ZHANG, request, "同意")
    assert own.alerts and "只有被申请的值班员" in own.alerts[0]
    confirmed = await desk.press(COORD_ID, request, "同意")
    assert "换班已确认" in confirmed.text and "王芳" in confirmed.text
    told = await desk.deliver()
    assert any("换班已确认" in t for t in texts_to(told.messages, ZHANG))
    # The reminders follow: 马建军 is reminded of 23 November, 张伟 is not.
    clock.set(at_beijing(22) + timedelta(seconds=1))
    sent = await desk.run_due()
    assert not texts_to(sent.messages, ZHANG)
    [reminder] = texts_to(sent.messages, MA)
    assert "还有 1 天" in reminder
    clock.set(at_beijing(23) + timedelta(seconds=1))
    [brief] = texts_to((await desk.run_due()).messages, GANSU_ROOM)
    assert "接班：<b>马建军" in brief
    async with desk.db.session() as session:
        swap = (await session.execute(select(ShiftSwap))).scalar_one()
        decided = (await session.execute(select(AuditEntry).where(
            AuditEntry.action.like("%swap%")))).scalars().all()
    assert swap.status is SwapStatus.confirmed
    assert COORD_ID in {entry.actor_telegram_id for entry in decided}


async def test_swap_rejected_or_withdrawn_changes_nothing(desk: BotHarness) -> None:
    await desk.send(ZHANG, "/swap 11-23 马建军")  # ask 马建军 to cover
    sent = await desk.deliver()
    request = next(c for c in sent.messages if c.chat_id == GANSU_ROOM)
    assert "代 张伟 值" in request.params["text"]
    rejected = await desk.press(MA, request, "拒绝")
    assert "换班未获同意" in rejected.text
    await desk.send(ZHANG, "/swap 11-23 马建军 11-24")
    second = next(c for c in (await desk.deliver()).messages
                  if c.chat_id == GANSU_ROOM and c.params.get("reply_markup"))
    withdrawn = await desk.press(ZHANG, second, "拒绝")
    assert "已撤回" in withdrawn.text
    async with desk.db.session() as session:
        assert not (await session.execute(select(ShiftOverride))).scalars().all()
        statuses = sorted(s.value for s in (await session.execute(
            select(ShiftSwap.status))).scalars())
    assert statuses == ["cancelled", "rejected"]


# --------------------------------------------------------------------------- /roster


async def test_roster_shows_seven_days_in_the_rooms_zone(
    desk: BotHarness, clock: FakeClock
) -> None:
    clock.set(at_beijing(20, 10))
    gansu = await desk.send(ZHANG, "/roster")
    assert "当前值班：张伟" in gansu.text
    assert "11月21日（周六） 08:30 <b>马建军</b>" in gansu.text
    assert "👈 您" in gansu.text and "时区" not in gansu.text
    assert gansu.text.count(" 08:30 <b>") == 7
    urumqi = await desk.send(COORD_ID, "/roster 新疆")
    assert "Asia/Urumqi" in urumqi.text and "08:00–20:00" in urumqi.text
    assert "尚未登记值班室" in (await desk.send(OUTSIDER, "/roster")).text


# 10:00 in Beijing: the day's 08:30 handover is past when the pattern changes.
@pytest.mark.parametrize("clock", [datetime(2026, 11, 20, 2, 0, tzinfo=UTC)], indirect=True)
async def test_roster_edit_validates_and_reshapes(
    desk: BotHarness, ids: dict[str, int], clock: FakeClock
) -> None:
    for bad, answer in (("pattern hourly", "无法识别班制"),
                        ("pattern day_night 20:00 08:00", "不匹配班制"),
                        ("tz Mars/Olympus", "无法识别时区"),
                        ("start 昨天以前", "无法识别日期"),
                        ("officers ,", "至少填写一名")):
        assert answer in (await desk.send(MA, f"/roster edit {bad}", chat_id=GANSU_ROOM)).text
    async with desk.db.session() as session:
        roster = (await session.execute(
            select(Roster).where(Roster.duty_room_id == ids["room"]))).scalar_one()
        assert roster.pattern is ShiftPattern.daily and roster.timezone == "Asia/Shanghai"

    preview = await desk.send(MA, "/roster edit pattern day_night 08:00 20:00",
                              chat_id=GANSU_ROOM)
    assert "08:00–20:00" in preview.text and "修改预览" in preview.text
    done = await desk.press(MA, preview, "确认")
    assert "值班表已更新" in done.text and "08:00–20:00" in done.text
    done = await desk.send(MA, "/roster edit officers 马建军 @nobody", chat_id=GANSU_ROOM)
    assert "没有找到已登记用户" in done.text
    preview = await desk.send(MA, "/roster edit officers 马建军, 张伟, 何文静, "
                              "杨帆 +86 100 0000 0205", chat_id=GANSU_ROOM)
    done = await desk.press(MA, preview, "确认")
    assert "值班表已更新" in done.text and "杨帆" in done.text
    # The edit did not produce a burst of late handovers for shifts already past.
    clock.advance(minutes=1)
    assert not texts_to((await desk.run_due()).messages, GANSU_ROOM)
    async with desk.db.session() as session:
        roster = (await session.execute(
            select(Roster).where(Roster.duty_room_id == ids["room"]))).scalar_one()
        names = [m.name for m in sorted((await session.execute(select(RosterMember).where(
            RosterMember.roster_id == roster.id))).scalars(), key=lambda m: m.position)]
    assert names == ["马建军", "张伟", "何文静", "杨帆"]


async def test_a_coordinator_may_edit_any_rooms_roster_a_duty_officer_only_their_own(
    desk: BotHarness, ids: dict[str, int]
) -> None:
    refused = await desk.send(OUTSIDER, "/roster edit officers 李娜", chat_id=XINJIANG_ROOM)
    assert "只有本单位的值班员" in refused.text
    preview = await desk.send(COORD_ID, "/roster edit officers 买买提江, 陈晓梅, 古丽",
                              chat_id=XINJIANG_ROOM)
    done = await desk.press(COORD_ID, preview, "确认")
    assert "值班表已更新" in done.text and "古丽" in done.text
    async with desk.db.session() as session:
        roster = (await session.execute(
            select(Roster).where(Roster.duty_room_id == ids["xj_room"]))).scalar_one()
        names = [m.name for m in sorted((await session.execute(select(RosterMember).where(
            RosterMember.roster_id == roster.id))).scalars(), key=lambda m: m.position)]
        actions = set((await session.execute(select(AuditEntry.action))).scalars())
    assert names == ["买买提江", "陈晓梅", "古丽"] and "roster.members" in actions


# --------------------------------------------------------------------------- restarts


async def test_restart_sends_a_late_brief_within_grace_and_records_missed_beyond(
    emulator: BotApiEmulator, database_url: str, ids: dict[str, int], clock: FakeClock
) -> None:
    prepare(emulator)
    clock.set(at_beijing(21) + timedelta(minutes=10))
    async with BotHarness(emulator, database_url, now=clock) as bot:
        sent = await bot.deliver()
        brief = texts_to(sent.messages, GANSU_ROOM)
        assert len(brief) == 1 and "迟发" in brief[0] and "接班：<b>马建军" in brief[0]
    async with BotHarness(emulator, database_url, now=clock) as bot:
        assert not texts_to((await bot.deliver()).messages, GANSU_ROOM)
    clock.set(at_beijing(22) + timedelta(hours=2))
    async with BotHarness(emulator, database_url, now=clock) as bot:
        assert not texts_to((await bot.deliver()).messages, GANSU_ROOM)
        listing = await bot.send(COORD_ID, "/missed")
        assert "交接班简报" in listing.text and "甘肃省厅值班室" in listing.text
    async with bot.db.session() as session:
        outcome = (await session.execute(select(ScheduleMark.outcome).where(
            ScheduleMark.key.like(f"handover:room{ids['room']}:20261122%")))).scalar_one()
    assert outcome == "missed"


async def test_a_roster_imported_while_down_is_not_missed_before_it_existed(
    emulator: BotApiEmulator, database_url: str
) -> None:
    # The bot ran five days ago, on a database without rosters; while it was down the
    # Traditional directory (a daily roster in 北京) was imported, a day before it is back.
    back = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    clock = FakeClock(back - timedelta(days=5))
    async with BotHarness(emulator, database_url, now=clock):
        pass
    db = Database(database_url)
    report = await import_file(db, "tests/data/jingjinji_hant.yaml", now=back - timedelta(days=1))
    await db.dispose()
    assert not report.problems
    clock.set(back)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        await bot.deliver()
    async with bot.db.session() as session:
        missed = (await session.execute(select(ScheduleMark).where(
            ScheduleMark.outcome == "missed"))).scalars().all()
    # Its handovers and reminders of the last day are missed; none from before the import.
    assert missed and min(m.due_at for m in missed) >= back - timedelta(days=1)


async def test_first_edit_creates_a_roster_from_today(
    desk: BotHarness, ids: dict[str, int], clock: FakeClock
) -> None:
    qinghai_room = -1001000000302
    desk.emulator.add_group(qinghai_room, "青海值班室", [OUTSIDER])
    async with desk.db.session() as session:
        session.add(DutyRoom(unit_id=ids["qh"], chat_id=qinghai_room, title="青海值班室"))
    assert "还没有值班表" in (await desk.send(OUTSIDER, "/roster", chat_id=qinghai_room)).text
    preview = await desk.send(OUTSIDER, f"/roster edit officers 李娜 {OUTSIDER}, 赵强",
                              chat_id=qinghai_room)
    async with desk.db.session() as session:  # nothing is written before 确认
        assert (await session.execute(select(Roster).join(DutyRoom).where(
            DutyRoom.chat_id == qinghai_room))).scalar_one_or_none() is None
    done = await desk.press(OUTSIDER, preview, "确认")
    assert "值班表已更新" in done.text and "李娜" in done.text and "赵强" in done.text
    async with desk.db.session() as session:
        roster = (await session.execute(select(Roster).join(DutyRoom).where(
            DutyRoom.chat_id == qinghai_room))).scalar_one()
        members = (await session.execute(select(RosterMember).where(
            RosterMember.roster_id == roster.id))).scalars().all()
    assert roster.anchor_date == date(2026, 11, 20) and roster.pattern is ShiftPattern.daily
    assert {m.name: m.telegram_user_id for m in members} == {"李娜": OUTSIDER, "赵强": None}


async def test_a_longer_offset_does_not_resurrect_a_passed_reminder(
    desk: BotHarness, clock: FakeClock
) -> None:
    # 20 hours before 马建军's shift of 21 November he asks for two days' notice.
    clock.set(at_beijing(21) - timedelta(hours=20))
    await desk.run_due()
    assert "2 天" in (await desk.send(MA, "/roster remind 2d")).text
    clock.advance(minutes=1)
    assert not texts_to((await desk.run_due()).messages, MA)
    async with desk.db.session() as session:
        outcome = (await session.execute(select(ScheduleMark.outcome).where(
            ScheduleMark.key.like("shiftrem:%:20261121T0030Z:%:2d")))).scalar_one()
    assert outcome == "skipped"
