"""Meetings through the emulator with a controllable clock: the guided creation, reminders
at each offset (once, also across restarts), RSVP with the coordinator's tally, change and
cancellation notices, calendars that parse back, and polite refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from icalendar import Calendar
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from bot.plans.meetings import send_tally
from core.enums import MeetingKind
from core.enums import MeetingStatus
from core.enums import Role
from core.enums import Rsvp
from storage.db import Database
from storage.meetings import create_meeting
from storage.meetings import get_meeting
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Meeting
from storage.models import ScheduleMark
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership
from tests.conftest import HANT_COORDINATOR
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

ADMIN_ID = 910000001
COORD_ID = 910000011
GANSU_DUTY = 910000012
QINGHAI_DUTY = 910000013
GANSU_ROOM = -1001000000201
QINGHAI_ROOM = -1001000000202
XINJIANG_ROOM = -1001000000204
# 10:00 in Beijing on Friday 20 November 2026.
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
# The joint meeting: Thursday 3 December 2026, 09:00–17:30 Beijing time.
START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


async def seed(db: Database) -> dict[str, int]:
    async with db.session() as session:
        zone = Zone(code="nw", name="西北警务协作区", short_name="西北")
        units = {
            "gs": Unit(code="gs", name="甘肃省公安厅", short_name="甘肃"),
            "qh": Unit(code="qh", name="青海省公安厅", short_name="青海"),
            "nx": Unit(code="nx", name="宁夏回族自治区公安厅", short_name="宁夏"),
            "xj": Unit(code="xj", name="新疆维吾尔自治区公安厅", short_name="新疆",
                       timezone="Asia/Urumqi"),
        }
        session.add(zone)
        session.add_all(units.values())
        await session.flush()
        session.add_all([ZoneMembership(zone_id=zone.id, unit_id=u.id) for u in units.values()])
        for code, chat_id in (("gs", GANSU_ROOM), ("qh", QINGHAI_ROOM), ("xj", XINJIANG_ROOM)):
            session.add(DutyRoom(unit_id=units[code].id, chat_id=chat_id,
                                 title=f"{units[code].short_name}值班室"))
        session.add_all([
            User(telegram_id=COORD_ID, full_name="秘书处王芳", role=Role.coordinator,
                 unit_id=units["gs"].id),
            User(telegram_id=GANSU_DUTY, full_name="张伟", role=Role.duty_officer,
                 unit_id=units["gs"].id),
            User(telegram_id=QINGHAI_DUTY, full_name="李娜", role=Role.duty_officer,
                 unit_id=units["qh"].id),
        ])
        ids = {code: unit.id for code, unit in units.items()}
        ids["zone"] = zone.id
        return ids


def prepare(emulator: BotApiEmulator) -> None:
    emulator.add_user(ADMIN_ID, "管理员")
    emulator.add_user(COORD_ID, "王芳")
    emulator.add_user(GANSU_DUTY, "张伟")
    emulator.add_user(QINGHAI_DUTY, "李娜")
    emulator.add_group(GANSU_ROOM, "甘肃值班室", [GANSU_DUTY])
    emulator.add_group(QINGHAI_ROOM, "青海值班室", [QINGHAI_DUTY])
    emulator.add_group(XINJIANG_ROOM, "新疆值班室")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def units(db: Database) -> dict[str, int]:
    return await seed(db)


@pytest.fixture
async def desk(
    emulator: BotApiEmulator, database_url: str, units: dict[str, int], clock: FakeClock
) -> AsyncIterator[BotHarness]:
    prepare(emulator)
    async with BotHarness(emulator, database_url, admin_ids=[ADMIN_ID], now=clock) as harness:
        yield harness


async def add_meeting(desk: BotHarness, units: dict[str, int], **overrides: object) -> int:
    async with desk.db.session() as session:
        coordinator = (
            await session.execute(select(User).where(User.telegram_id == COORD_ID))
        ).scalar_one()
        values: dict = {
            "kind": MeetingKind.joint, "title": "第十五届联席会议",
            "starts_at": START, "ends_at": START + timedelta(hours=8, minutes=30),
            "timezone": "Asia/Shanghai", "zone_id": units["zone"], "place": "青海省西宁市",
            "unit_ids": [units["gs"], units["qh"], units["nx"], units["xj"]],
            "actor": coordinator, "offsets": [7 * 1440, 1440, 60],
        }
        values.update(overrides)
        meeting = await create_meeting(session, **values)
        meeting_id = meeting.id
    await desk.services.rescheduled("meetings")
    return meeting_id


def room_texts(desk: BotHarness, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in desk.emulator.calls
            if c.method == "sendMessage" and c.chat_id == chat_id and c.ok]


async def test_guided_creation_notifies_rooms_and_reports_the_unreachable(
    desk: BotHarness, clock: FakeClock
) -> None:
    assert "会议名称" in (await desk.send(COORD_ID, "/meeting new")).text
    kinds = await desk.send(COORD_ID, "第十五届联席会议")
    zones = await desk.press(COORD_ID, kinds, "联席会议")
    asked = await desk.press(COORD_ID, zones, "西北")
    assert "开始时间" in asked.text
    assert "无法识别时间" in (await desk.send(COORD_ID, "下个月某天")).text
    assert "结束时间" in (await desk.send(COORD_ID, "2026-12-03 09:00")).text
    assert "晚于开始" in (await desk.send(COORD_ID, "08:00")).text
    assert "地点" in (await desk.send(COORD_ID, "17:30")).text
    await desk.send(COORD_ID, "青海省西宁市 https://meet.example.org/nw15")
    assert "没有找到这些单位：火星" in (await desk.send(COORD_ID, "甘肃、火星")).text
    assert "议程" in (await desk.send(COORD_ID, "甘肅、青海、宁夏、新疆")).text
    preview = await desk.send(COORD_ID, "甘青轮值主席交接")
    assert "第十五届联席会议" in preview.text and "宁夏" in preview.text
    assert "12月3日（周四） 09:00–17:30" in preview.text

    done = await desk.press(COORD_ID, preview, "确认")

    assert "已创建会议" in done.text and "宁夏" in done.text
    delivered = await desk.deliver()
    gansu = room_texts(desk, GANSU_ROOM)
    assert len(gansu) == 1 and "会议通知" in gansu[0] and "本单位答复：⏳ 未答复" in gansu[0]
    # Xinjiang sees its own clock, with the zone named.
    xinjiang = room_texts(desk, XINJIANG_ROOM)[0]
    assert "07:00–15:30" in xinjiang and "Asia/Urumqi" in xinjiang
    coordinator = [c.params["text"] for c in delivered.messages if c.chat_id == COORD_ID]
    assert any("会议回执" in t and "无值班室、无法提醒：宁夏" in t for t in coordinator)
    assert any("没有登记值班室" in t for t in coordinator)
    async with desk.db.session() as session:
        meeting = (await session.execute(select(Meeting))).scalar_one()
        assert meeting.starts_at == START and meeting.video_link.endswith("/nw15")
        actions = set((await session.execute(select(AuditEntry.action))).scalars())
    assert "meeting.create" in actions


async def test_bad_input_is_refused_politely_and_changes_nothing(
    desk: BotHarness, units: dict[str, int]
) -> None:
    assert "无权" in (await desk.send(GANSU_DUTY, "/meeting new")).text
    await desk.send(COORD_ID, "/meeting new")
    await desk.send(COORD_ID, "/cancel")
    meeting_id = await add_meeting(desk, units)
    refused = await desk.send(COORD_ID, f"/meeting edit {meeting_id} 时间 2020-01-01 09:00")
    assert "已经过去" in refused.text
    assert "无法识别字段" in (await desk.send(COORD_ID, f"/meeting edit {meeting_id} 颜色 红")).text
    assert "无法识别提醒" in (
        await desk.send(COORD_ID, f"/meeting edit {meeting_id} 提醒 很久以前")).text
    assert "没有找到" in (await desk.send(COORD_ID, "/meeting cancel 999")).text
    async with desk.db.session() as session:
        meeting = (await session.execute(select(Meeting))).scalar_one()
    assert meeting.revision == 1 and meeting.status is MeetingStatus.scheduled


async def test_reminders_go_out_at_each_offset_once(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    meeting_id = await add_meeting(desk, units)
    for offset, lead in ((timedelta(days=7), "7 天后开始"), (timedelta(days=1), "1 天后开始"),
                         (timedelta(hours=1), "1 小时后开始")):
        clock.set(START - offset - timedelta(seconds=1))
        assert not (await desk.run_due()).messages
        clock.set(START - offset + timedelta(seconds=5))
        sent = await desk.run_due()
        rooms = {c.chat_id for c in sent.messages}
        assert rooms == {GANSU_ROOM, QINGHAI_ROOM, XINJIANG_ROOM, COORD_ID}, lead
        reminder = next(c for c in sent.messages if c.chat_id == QINGHAI_ROOM)
        assert lead in reminder.params["text"] and "迟发" not in reminder.params["text"]
        labels = [b["text"] for row in reminder.params["reply_markup"]["inline_keyboard"]
                  for b in row]
        assert {"✅ 参加", "❌ 不参加", "👤 派员"} <= set(labels)
        warning = next(c for c in sent.messages if c.chat_id == COORD_ID)
        assert "宁夏" in warning.params["text"]
        assert not (await desk.run_due()).messages  # fires once
    async with desk.db.session() as session:
        marks = (await session.execute(select(ScheduleMark.key, ScheduleMark.outcome).where(
            ScheduleMark.key.startswith("meeting:")))).all()  # not the daily audit retention
    assert sorted(outcome for _, outcome in marks) == ["sent", "sent", "sent"]
    assert all(key.startswith(f"meeting:{meeting_id}:") for key, _ in marks)


async def test_rsvp_buttons_and_the_coordinators_tally(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    meeting_id = await add_meeting(desk, units)
    clock.set(START - timedelta(days=1) + timedelta(seconds=1))
    sent = await desk.run_due()
    gansu = next(c for c in sent.messages if c.chat_id == GANSU_ROOM)
    qinghai = next(c for c in sent.messages if c.chat_id == QINGHAI_ROOM)
    # Tally message for the coordinator goes out with the first RSVP edit target.
    async with desk.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        await send_tally(session, meeting, now=clock(), default_zone="Asia/Shanghai",
                         default_language="zh-Hans")
    await desk.deliver()

    pressed = await desk.press(GANSU_DUTY, gansu, "参加")
    assert any("已登记：参加" in c.params.get("text", "") for c in pressed.calls
               if c.method == "answerCallbackQuery")
    assert "本单位答复：✅ 参加" in pressed.text  # the reminder now shows the answer

    prompt = await desk.press(QINGHAI_DUTY, qinghai, "派员")
    assert "派员的姓名" in prompt.text
    named = await desk.send(QINGHAI_DUTY, "刘强", chat_id=QINGHAI_ROOM)
    assert "已登记：派员（刘强）" in named.text
    assert "派员（刘强）" in named.text

    edits = await desk.deliver()
    tally = [c.params["text"] for c in edits.calls if c.method == "editMessageText"]
    assert tally and "已答复 2/4" in tally[-1]
    assert "参加：甘肃" in tally[-1] and "派员：青海（刘强）" in tally[-1]
    # Someone not registered cannot answer for the room; nothing changes.
    desk.emulator.add_user(910000099, "陌生人")
    stranger = await desk.press(910000099, gansu, "不参加")
    assert stranger.alerts and "尚未登记" in stranger.alerts[0]
    # Anyone registered in the room answers for the room's unit, and may change the answer.
    changed = await desk.press(COORD_ID, gansu, "不参加")
    assert "本单位答复：❌ 不参加" in changed.text
    async with desk.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        answers = {p.unit_id: (p.rsvp, p.delegate) for p in meeting.participants}
        rsvps = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "meeting.rsvp"))).scalars().all()
    assert answers[units["qh"]] == (Rsvp.delegate, "刘强")
    assert len(rsvps) == 3


async def test_change_and_cancellation_are_announced_and_reminders_follow(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    meeting_id = await add_meeting(desk, units)
    moved = START + timedelta(days=2)
    done = await desk.send(COORD_ID, f"/meeting edit {meeting_id} 时间 2026-12-05 09:00")
    assert "已修改" in done.text and "开始时间" in done.text
    sent = await desk.deliver()
    qinghai = [c.params["text"] for c in sent.messages if c.chat_id == QINGHAI_ROOM]
    assert qinghai and "会议变更" in qinghai[0] and "12月5日（周六） 09:00" in qinghai[0]
    # The 1-day reminder for the old time never fires; the one for the new time does.
    clock.set(START - timedelta(days=1) + timedelta(seconds=1))
    assert not (await desk.run_due()).messages
    clock.set(moved - timedelta(days=1) + timedelta(seconds=1))
    assert {c.chat_id for c in (await desk.run_due()).messages} >= {GANSU_ROOM, QINGHAI_ROOM}

    asked = await desk.send(COORD_ID, f"/meeting cancel {meeting_id} 天气原因")
    assert asked.text.startswith(f"确认取消会议 #{meeting_id}「第十五届联席会议」（12月5日")
    cancelled = await desk.press(COORD_ID, asked, "确认取消会议")
    assert "已取消" in cancelled.text
    notices = await desk.deliver()
    texts = [c.params["text"] for c in notices.messages if c.chat_id == GANSU_ROOM]
    assert texts and "会议取消" in texts[0] and "天气原因" in texts[0]
    clock.set(moved - timedelta(minutes=59))
    assert not (await desk.run_due()).messages
    assert "已取消" in (await desk.send(COORD_ID, f"/meeting cancel {meeting_id}")).text


async def test_calendar_files_parse_back(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    first = await add_meeting(desk, units, video_link="https://meet.example.org/nw15")
    await add_meeting(desk, units, title="反恐演练", kind=MeetingKind.drill,
                      starts_at=START + timedelta(days=5),
                      ends_at=START + timedelta(days=5, hours=3), timezone="Asia/Urumqi",
                      unit_ids=[units["xj"]])
    listing = await desk.send(GANSU_DUTY, "/meetings")
    assert "第十五届联席会议" in listing.text and "反恐演练" not in listing.text

    sent = await desk.send(COORD_ID, "/meetings ics")
    document = next(c for c in sent.calls if c.method == "sendDocument")
    _, data = next(iter(document.files.values()))
    calendar = Calendar.from_ical(bytes(data))
    events = {str(e["summary"]): e for e in calendar.walk("VEVENT")}
    assert len(events) == 2
    joint = events["第十五届联席会议（联席会议）"]
    assert joint.decoded("dtstart") == START
    assert str(joint["uid"]) == f"meeting-{first}@liaison-desk"
    assert str(joint["url"]) == "https://meet.example.org/nw15"
    drill = events["反恐演练（演练）"]
    assert drill.decoded("dtstart").utcoffset() == timedelta(hours=6)
    assert {str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")} == {
        "Asia/Shanghai", "Asia/Urumqi"}

    one = await desk.press(GANSU_DUTY, listing, f"#{first}")
    single = next(c for c in one.calls if c.method == "sendDocument")
    assert len(Calendar.from_ical(bytes(next(iter(single.files.values()))[1])).walk("VEVENT")) == 1


async def test_restart_before_due_sends_once_and_after_grace_records_missed(
    emulator: BotApiEmulator, database_url: str, units: dict[str, int], clock: FakeClock
) -> None:
    prepare(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        meeting_id = await add_meeting(first, units)
    # Down from T0 across the 7-day reminder (missed: the outage is counted from the last
    # heartbeat, not two days back) and the 1-day reminder; back 5 minutes after that one
    # (grace 15 minutes): sent, late.
    clock.set(START - timedelta(days=1) + timedelta(minutes=5))
    async with BotHarness(emulator, database_url, now=clock) as second:
        sent = await second.deliver()
        texts = [c.params["text"] for c in sent.messages if c.chat_id == GANSU_ROOM]
        assert len(texts) == 1 and "迟发" in texts[0]
    async with BotHarness(emulator, database_url, now=clock) as third:
        assert not [c for c in (await third.deliver()).messages if c.chat_id == GANSU_ROOM]
    # Down across the 1-hour reminder until 30 minutes before the start: missed.
    clock.set(START - timedelta(minutes=30))
    async with BotHarness(emulator, database_url, now=clock) as fourth:
        sent = await fourth.deliver()
        assert not [c for c in sent.messages if c.chat_id == GANSU_ROOM]
        alert = [c.params["text"] for c in sent.messages if c.chat_id == COORD_ID]
        assert any("因系统停机未发出" in t for t in alert)
        listing = await fourth.send(COORD_ID, "/missed")
        assert "会议提醒" in listing.text and "第十五届联席会议" in listing.text
        assert "2 条定时消息" in (await fourth.send(COORD_ID, "/meetings")).text
    async with first.db.session() as session:
        marks = dict((await session.execute(
            select(ScheduleMark.key, ScheduleMark.outcome).where(
                ScheduleMark.key.startswith("meeting:")))).all())
    assert sorted(marks.values()) == ["late", "missed", "missed"]
    async with first.db.session() as session:  # housekeeping catches up, never "missed"
        assert set((await session.execute(select(ScheduleMark.outcome).where(
            ScheduleMark.key.startswith("audit:")))).scalars()) == {"late"}
    assert marks[f"meeting:{meeting_id}:7d:{START:%Y%m%dT%H%MZ}"] == "missed"


async def test_grace_period_comes_from_the_settings(
    emulator: BotApiEmulator, database_url: str, units: dict[str, int], clock: FakeClock
) -> None:
    prepare(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        await add_meeting(first, units)
    clock.set(START - timedelta(days=1) + timedelta(minutes=40))
    async with BotHarness(emulator, database_url, now=clock,
                          schedule_grace_minutes=60) as second:
        assert second.services.scheduler is not None
        assert second.services.scheduler.grace == timedelta(minutes=60)
        texts = [c.params["text"] for c in (await second.deliver()).messages
                 if c.chat_id == GANSU_ROOM]
    assert len(texts) == 1 and "迟发" in texts[0]


async def test_participant_list_changes_reach_added_and_removed_rooms(
    desk: BotHarness, units: dict[str, int]
) -> None:
    meeting_id = await add_meeting(desk, units, unit_ids=[units["gs"], units["qh"]])
    done = await desk.send(COORD_ID, f"/meeting edit {meeting_id} 单位 甘肃、新疆")
    assert "参会单位" in done.text
    sent = await desk.deliver()
    by_room = {c.chat_id: c.params["text"] for c in sent.messages}
    assert "会议变更" in by_room[GANSU_ROOM] and "会议变更" in by_room[XINJIANG_ROOM]
    assert "无需参加" in by_room[QINGHAI_ROOM]
    listing = await desk.send(QINGHAI_DUTY, "/meetings")
    assert "第十五届联席会议" not in listing.text


async def test_delegate_prompt_forces_a_reply_from_the_presser(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    await add_meeting(desk, units)
    clock.set(START - timedelta(hours=1) + timedelta(seconds=1))
    reminder = next(c for c in (await desk.run_due()).messages if c.chat_id == GANSU_ROOM)
    prompt = await desk.press(GANSU_DUTY, reminder, "派员")
    ask = next(c for c in prompt.messages if c.params.get("reply_markup"))
    assert ask.params["reply_markup"].get("force_reply") is True
    assert f"tg://user?id={GANSU_DUTY}" in ask.params["text"]
    assert "姓名" in (await desk.send(GANSU_DUTY, "x" * 61, chat_id=GANSU_ROOM)).text
    await desk.send(GANSU_DUTY, "/cancel", chat_id=GANSU_ROOM)
    # After /cancel an ordinary message is not taken as a delegate's name.
    assert not (await desk.send(GANSU_DUTY, "随便说一句", chat_id=GANSU_ROOM)).texts


async def test_restart_before_the_due_time_places_the_job_again_and_sends_once(
    emulator: BotApiEmulator, database_url: str, units: dict[str, int], clock: FakeClock
) -> None:
    prepare(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        meeting_id = await add_meeting(first, units)
    clock.set(START - timedelta(hours=1, minutes=5))
    async with BotHarness(emulator, database_url, now=clock) as second:
        assert not [c for c in (await second.deliver()).messages if c.chat_id == GANSU_ROOM]
        queue = second.application.job_queue
        assert queue is not None
        key = f"due:meetings:meeting:{meeting_id}:1h:{START:%Y%m%dT%H%MZ}"
        job = queue.scheduler.get_job(key)
        assert job is not None and job.trigger.run_date == START - timedelta(hours=1)
        # The job comes due: run it as APScheduler would (its PTB Job is the second arg).
        clock.set(START - timedelta(hours=1) + timedelta(seconds=1))
        await job.args[1].run(second.application)
        await job.args[1].run(second.application)  # a second firing sends nothing
        sent = [c for c in (await second.deliver()).messages if c.chat_id == GANSU_ROOM]
        assert len(sent) == 1 and "迟发" not in sent[0].params["text"]
    clock.advance(minutes=3)
    async with BotHarness(emulator, database_url, now=clock) as third:
        assert not [c for c in (await third.deliver()).messages if c.chat_id == GANSU_ROOM]


async def test_a_first_start_reports_no_false_misses(hant_desk: BotHarness) -> None:
    # The bot never ran on this database before: the handovers and shift reminders its
    # rosters planned for the last days were not missed, nobody was there to send them.
    admin = 920000001  # HANT_ADMIN (tests/conftest.py)
    assert "沒有因停機而未發出" in (await hant_desk.send(admin, "/missed")).text
    assert "因停機未發出" not in (await hant_desk.send(admin, "/meetings")).text
    async with hant_desk.db.session() as session:
        outcomes = set((await session.execute(select(ScheduleMark.outcome))).scalars())
    assert "missed" not in outcomes


def ics_buttons(sent: Sent) -> list[str]:
    return [data for _, data in sent.buttons() if data.startswith("mtg:ics:")]


async def test_a_start_day_without_a_time_asks_for_the_time(
    desk: BotHarness, units: dict[str, int]
) -> None:
    await desk.send(COORD_ID, "/meeting new")
    zones = await desk.press(COORD_ID, await desk.send(COORD_ID, "第十五届联席会议"), "联席会议")
    await desk.press(COORD_ID, zones, "西北")
    asked = await desk.send(COORD_ID, "12月3日")
    assert "「12月3日」几点开始" in asked.text and "结束时间" not in asked.text
    assert "结束时间" in (await desk.send(COORD_ID, "9:00")).text
    await desk.send(COORD_ID, "17:30")
    await desk.send(COORD_ID, "跳过")
    await desk.send(COORD_ID, "甘肃、青海")
    preview = await desk.send(COORD_ID, "跳过")
    assert "12月3日（周四） 09:00–17:30" in preview.text
    assert "已放弃" in (await desk.press(COORD_ID, preview, "放弃")).text
    # /meeting edit: a day alone is refused, asking for the time; nothing changes.
    meeting_id = await add_meeting(desk, units)
    refused = await desk.send(COORD_ID, f"/meeting edit {meeting_id} 时间 12月5日")
    assert refused.texts == ["「12月5日」没有写几点，请连同开始时间一起输入，例如 "
                             "<code>12月5日 09:00</code>。"]
    async with desk.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
    assert meeting is not None and meeting.starts_at == START and meeting.revision == 1


async def test_a_date_without_a_year_is_the_next_one(
    desk: BotHarness, units: dict[str, int]
) -> None:
    # 20 November 2026: "11月19日" was yesterday, so it means next year's.
    meeting_id = await add_meeting(desk, units)
    done = await desk.send(COORD_ID, f"/meeting edit {meeting_id} 时间 11月19日 09:00")
    assert "已修改" in done.text
    async with desk.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
    assert meeting is not None and meeting.starts_at == datetime(2027, 11, 19, 1, 0, tzinfo=UTC)


async def test_calendar_buttons_one_per_listed_meeting_none_when_cancelled(
    desk: BotHarness, units: dict[str, int]
) -> None:
    ids = [await add_meeting(desk, units, title=f"周例会{n}",
                             starts_at=START + timedelta(days=n),
                             ends_at=START + timedelta(days=n, hours=1)) for n in range(17)]
    listing = await desk.send(COORD_ID, "/meetings")
    assert ics_buttons(listing) == [f"mtg:ics:{i}" for i in ids[:15]]  # the 15 listed
    assert all(f"#{i}" in listing.text for i in ids[:15]) and f"#{ids[15]}" not in listing.text
    shown = await desk.send(COORD_ID, f"/meeting {ids[0]}")
    assert ics_buttons(shown) == [f"mtg:ics:{ids[0]}"]
    asked = await desk.send(COORD_ID, f"/meeting cancel {ids[0]}")
    await desk.press(COORD_ID, asked, "确认取消会议")
    cancelled = await desk.send(COORD_ID, f"/meeting {ids[0]}")
    assert len(cancelled.texts) == 1 and "已取消" in cancelled.text  # and nothing else
    assert ics_buttons(cancelled) == []
    # The 📅 under the earlier card now says the meeting is cancelled, and sends no file.
    pressed = await desk.press(COORD_ID, shown, f"mtg:ics:{ids[0]}")
    assert pressed.alerts and "已取消" in pressed.alerts[0]
    assert not [c for c in pressed.calls if c.method == "sendDocument"]


async def preview_of_a_new_meeting(desk: BotHarness, title: str) -> object:
    await desk.send(COORD_ID, "/meeting new")
    zones = await desk.press(COORD_ID, await desk.send(COORD_ID, title), "联席会议")
    await desk.press(COORD_ID, zones, "西北")
    await desk.send(COORD_ID, "2026-12-03 09:00")
    await desk.send(COORD_ID, "17:30")
    await desk.send(COORD_ID, "青海省西宁市")
    await desk.send(COORD_ID, "甘肃、青海")
    preview = await desk.send(COORD_ID, "无")
    assert title in preview.text and preview.buttons()
    return preview


DISCARDED = "已放弃，未作任何修改。"


async def test_a_discarded_or_cancelled_preview_creates_nothing(desk: BotHarness) -> None:
    preview = await preview_of_a_new_meeting(desk, "第一次草稿")
    await desk.press(COORD_ID, preview, "放弃")
    late = await desk.press(COORD_ID, preview, "确认")
    assert late.alerts == ["您已取消「创建会议」，这个按钮不再起作用，什么也没有改变。"]
    preview = await preview_of_a_new_meeting(desk, "第二次草稿")
    assert (await desk.send(COORD_ID, "/cancel")).text == DISCARDED
    late = await desk.press(COORD_ID, preview, "确认")
    assert late.alerts == ["您已取消「创建会议」，这个按钮不再起作用，什么也没有改变。"]
    async with desk.db.session() as session:
        assert (await session.execute(select(Meeting))).scalars().all() == []
    # A preview used once does not create a second meeting.
    preview = await preview_of_a_new_meeting(desk, "第三次草稿")
    assert "已创建会议" in (await desk.press(COORD_ID, preview, "确认")).text
    again = await desk.press(COORD_ID, preview, "确认")
    assert again.alerts == ["这个按钮已经用过（创建会议），不会再执行一次。"]
    async with desk.db.session() as session:
        assert len((await session.execute(select(Meeting))).scalars().all()) == 1


async def test_meeting_commands_get_one_answer_and_no_unknown_command(
    desk: BotHarness, units: dict[str, int]
) -> None:
    meeting_id = await add_meeting(desk, units)
    for text in (f"/meeting {meeting_id}", "/meeting 999", "/meeting",
                 f"/meeting cancel {meeting_id}"):
        sent = await desk.send(COORD_ID, text)
        assert len(sent.texts) == 1, (text, sent.texts)
        assert "没有这个命令" not in sent.text


async def test_a_kept_meeting_cancellation_is_dead(
    desk: BotHarness, units: dict[str, int]
) -> None:
    meeting_id = await add_meeting(desk, units)
    asked = await desk.send(COORD_ID, f"/meeting cancel {meeting_id} 天气原因")
    kept = await desk.press(COORD_ID, asked, "不取消")
    assert kept.text == "未取消，会议保持不变。"
    late = await desk.press(COORD_ID, asked, "确认取消会议")
    assert late.alerts == ["您已取消「取消会议」，这个按钮不再起作用，什么也没有改变。"]
    async with desk.db.session() as session:
        assert (await get_meeting(session, meeting_id)).status is MeetingStatus.scheduled
    assert [c for c in (await desk.deliver()).messages if c.chat_id == GANSU_ROOM] == []
    # Asked twice, confirmed on one: the other finds the meeting cancelled already.
    first = await desk.send(COORD_ID, f"/meeting cancel {meeting_id}")
    second = await desk.send(COORD_ID, f"/meeting cancel {meeting_id} 另行通知")
    assert "已取消" in (await desk.press(COORD_ID, second, "确认取消会议")).text
    late = await desk.press(COORD_ID, first, "确认取消会议")
    assert late.alerts == ["这个确认已被更新的一条取代（取消会议），请使用最新的那条消息。"]


async def test_a_cancelled_or_replaced_delegate_prompt_takes_no_name(
    desk: BotHarness, units: dict[str, int], clock: FakeClock
) -> None:
    meeting_id = await add_meeting(desk, units)
    clock.set(START - timedelta(hours=1) + timedelta(seconds=1))
    reminder = next(c for c in (await desk.run_due()).messages if c.chat_id == GANSU_ROOM)

    def ask_of(sent: object) -> object:
        return next(c for c in sent.messages if c.params.get("reply_markup"))

    async def name(prompt: object, text: str) -> object:
        return await desk.feed(desk.emulator.make_message_update(
            GANSU_DUTY, GANSU_ROOM, text, reply_to=prompt.message_ref))

    async def answers() -> list:
        async with desk.db.session() as session:
            meeting = await get_meeting(session, meeting_id)
            return [p.rsvp for p in meeting.participants if p.delegate]

    cancelled = ask_of(await desk.press(GANSU_DUTY, reminder, "派员"))
    await desk.send(GANSU_DUTY, "/cancel", chat_id=GANSU_ROOM)
    late = await name(cancelled, "王强")
    assert late.text == "您已取消「派员答复」，这个按钮不再起作用，什么也没有改变。"
    older = ask_of(await desk.press(GANSU_DUTY, reminder, "派员"))
    newer = ask_of(await desk.press(GANSU_DUTY, reminder, "派员"))
    late = await name(older, "王强")
    assert late.text == "这个确认已被更新的一条取代（派员答复），请使用最新的那条消息。"
    assert await answers() == []
    await name(newer, "李四")
    assert len(await answers()) == 1


async def test_each_meeting_verb_gets_one_answer(
    desk: BotHarness, units: dict[str, int]
) -> None:
    """/meeting ID, edit, cancel and its usage are answered once, not also as an unknown
    command by the fallback of a later handler group."""
    meeting_id = await add_meeting(desk, units)
    for text in (f"/meeting {meeting_id}", f"/meeting edit {meeting_id} 地点 西宁",
                 f"/meeting edit {meeting_id} 结束 900d", "/meeting cancel 999", "/meeting x"):
        sent = await desk.send(COORD_ID, text)
        assert len(sent.messages) == 1, (text, sent.texts)
        assert "没有这个命令" not in sent.text


async def test_a_draft_left_six_hours_is_over_and_takes_no_answer(
    desk: BotHarness, clock: FakeClock
) -> None:
    """The same time limit as /request and /notice: the confirm button says the draft
    expired, and text typed afterwards is a lookup, not the draft's answer."""
    preview = await preview_of_a_new_meeting(desk, "过期的草稿")
    clock.advance(hours=6, minutes=1)
    late = await desk.press(COORD_ID, preview, "确认")
    assert late.alerts == ["这份会议草稿已超过 6 小时未动，已作废；请重新发送 /meeting new。"]
    async with desk.db.session() as session:
        assert (await session.execute(select(Meeting))).scalars().all() == []
    await desk.send(COORD_ID, "/meeting new")
    clock.advance(hours=7)
    answer = await desk.send(COORD_ID, "甘肃")  # a lookup now, not the title
    assert "会议类型" not in answer.text and "类型" not in answer.text


async def test_a_start_that_passed_before_confirming_asks_start_and_end_again(
    desk: BotHarness, clock: FakeClock
) -> None:
    """The rest of the draft (place, units, agenda) is kept: only the times are asked."""
    await desk.send(COORD_ID, "/meeting new")
    zones = await desk.press(COORD_ID, await desk.send(COORD_ID, "改期的会议"), "联席会议")
    await desk.press(COORD_ID, zones, "西北")
    await desk.send(COORD_ID, "2026-11-20 12:00")  # two hours after T0
    await desk.send(COORD_ID, "13:00")
    await desk.send(COORD_ID, "青海省西宁市")
    await desk.send(COORD_ID, "甘肃、青海")
    preview = await desk.send(COORD_ID, "无")
    clock.advance(hours=3)  # the meeting began an hour ago; the draft is not expired
    pressed = await desk.press(COORD_ID, preview, "确认")
    assert len(pressed.alerts) == 1 and "11月20日" in pressed.alerts[0]
    assert pressed.text.startswith("4/7 开始时间（Asia/Shanghai）"), pressed.text
    end = await desk.send(COORD_ID, "2026-12-10 09:00")
    assert "结束" in end.text
    again = await desk.send(COORD_ID, "17:30")
    assert "改期的会议" in again.text and "青海省西宁市" in again.text and again.buttons()
    assert "已创建会议" in (await desk.press(COORD_ID, again, "确认")).text
    async with desk.db.session() as session:
        (meeting,) = (await session.execute(select(Meeting))).scalars().all()
    assert meeting.starts_at == datetime(2026, 12, 10, 1, 0, tzinfo=UTC)


async def test_a_typed_answer_at_a_button_step_stays_in_the_flow(desk: BotHarness) -> None:
    """A kind may be typed; a zone is chosen with its buttons; a photo where text is
    wanted, or text at the final check, is answered there, never taken as a lookup."""
    await desk.send(COORD_ID, "/meeting new")
    photo = desk.emulator.make_message_update(COORD_ID, COORD_ID, photo="AgACAgIAAxk-m-0001")
    assert "这一步需要文字" in (await desk.feed(photo)).text
    assert "会议类型" in (await desk.send(COORD_ID, "第十六届联席会议")).text
    unclear = await desk.send(COORD_ID, "茶话会")
    assert "「茶话会」不是会议类型" in unclear.text and "联络员" not in unclear.text
    zones = await desk.send(COORD_ID, "片會")  # Traditional, typed
    assert "类型：<b>片会</b>" in zones.text and "所属协作区" in zones.text
    assert "请点选上面的按钮" in (await desk.send(COORD_ID, "西北")).text
    await desk.press(COORD_ID, await desk.send(COORD_ID, "西北"), "西北")
    await desk.send(COORD_ID, "2026-12-03 09:00")
    await desk.send(COORD_ID, "17:30")
    await desk.send(COORD_ID, "-")
    await desk.send(COORD_ID, "甘肃、青海")
    preview = await desk.send(COORD_ID, "-")
    assert "请确认会议信息" in preview.text
    assert "创建前的核对" in (await desk.send(COORD_ID, "好的")).text
    done = await desk.press(COORD_ID, preview, "确认")
    assert "已创建会议" in done.text
    async with desk.db.session() as session:
        meeting = (await session.execute(select(Meeting))).scalar_one()
    assert meeting.kind is MeetingKind.area and meeting.title == "第十六届联席会议"


async def test_an_earlier_steps_button_says_the_draft_is_still_open(
    hant_desk: BotHarness,
) -> None:
    """On the Traditional directory: a kind button pressed again once the flow has moved
    on says the draft is open (not that it expired) and changes nothing; after /cancel
    the same buttons are dead, and say it was cancelled."""
    await hant_desk.send(HANT_COORDINATOR, "/meeting new")
    kinds = await hant_desk.send(HANT_COORDINATOR, "京津冀聯席會議")
    zones = await hant_desk.send(HANT_COORDINATOR, "聯席會議")
    again = await hant_desk.press(HANT_COORDINATOR, kinds, "片會")
    assert again.alerts and again.alerts[0].startswith("這個按鈕屬於已經答過的一步，草稿仍在")
    assert "所屬協作區" in (await hant_desk.send(HANT_COORDINATOR, "京津冀")).text
    await hant_desk.send(HANT_COORDINATOR, "/cancel")
    dead = await hant_desk.press(HANT_COORDINATOR, zones, "京津冀")
    assert dead.alerts == ["您已取消「建立會議」，這個按鈕不再起作用，什麼也沒有改變。"]
    assert not dead.texts  # not "left six hours": it was cancelled a moment ago
