"""Notices through the emulator, on both databases: the guided and one-shot flows with
bad input at every step (nothing stored), a restart mid-conversation, scheduled sends,
acknowledgement and its refusals, the live status message, the reminder, correction and
withdrawal, /notices and the CSV report, and the handover brief."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from core.enums import NoticeKind
from core.enums import NoticeStatus
from core.enums import Severity
from core.notices import TEXT_MAX
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from services.notices import create_notice
from services.notices import send_notice
from storage import notices as store
from storage.db import Database
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import OutboxMessage
from storage.models import User
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import YUNNAN_ROOM
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

CHONGQING_ROOM = -1001000000301  # registered, but the bot is not in it: delivery fails
COORDINATOR = 401  # English
ADMIN = 901  # zh-Hans; administrators may broadcast too
OFFICER = 101
DUTY = 201  # 四川 duty officer
OUTSIDER = 501  # 甘肃


@pytest.fixture
async def directory(db: Database) -> Directory:
    found = await make_directory(db, yunnan_room=True)
    async with db.session() as session:
        session.add(DutyRoom(unit_id=found.chongqing, chat_id=CHONGQING_ROOM,
                             title="重庆市局值班室", registered_at=T0))
    return found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def people(emulator: BotApiEmulator) -> None:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [201, 202, 501]),
                          YUNNAN_ROOM: ("云南省厅值班室", [101])})


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock,
                          notice_status_edit_seconds=0) as harness:
        yield harness


async def notices(db: Database) -> list[Notice]:
    async with db.session() as session:
        return list((await session.execute(select(Notice).order_by(Notice.id))).scalars())


async def deliveries(db: Database) -> list[NoticeDelivery]:
    async with db.session() as session:
        return list((await session.execute(
            select(NoticeDelivery).order_by(NoticeDelivery.duty_room_id))).scalars())


def in_chat(sent: Sent, chat_id: int) -> list:
    return [c for c in sent.messages if c.chat_id == chat_id]


def last_status(bot: BotHarness, chat_id: int = ADMIN) -> str:
    """The status message as the coordinator sees it now (after every edit)."""
    calls = [c for c in bot.emulator.calls if c.chat_id == chat_id and c.ok and c.method in (
        "sendMessage", "editMessageText") and "📢" in (c.params.get("text") or "")]
    assert calls, "no status message"
    first = next(c for c in calls if c.method == "sendMessage")
    message = bot.emulator.message(chat_id, first.message_ref[1])
    assert message is not None
    return message["text"]


async def broadcast(bot: BotHarness, text: str = "今晚至明晨有强降雨，请加强备勤") -> Sent:
    sent = await bot.send(ADMIN, f"/notice 预警 紧急 全部 {text}")
    assert "请核对通报" in sent.text and "3 个值班室" in sent.text
    sent = await bot.press(ADMIN, sent, "发送")
    assert "TB-2026-000001" in sent.text
    return await bot.deliver()


# --------------------------------------------------------------------------- the flow


async def test_guided_flow_with_bad_input_at_every_step(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN, "/notice")
    assert "请选择通报类型" in sent.text
    sent = await bot.send(ADMIN, "天气")
    assert "无法识别通报类型" in sent.text
    sent = await bot.press(ADMIN, sent, "情报指令")
    assert "紧急程度" in sent.text
    sent = await bot.send(ADMIN, "很急")
    assert "无法识别紧急程度" in sent.text
    sent = await bot.press(ADMIN, sent, "重要")
    assert "接收范围" in sent.text
    prompt = sent
    sent = await bot.press(ADMIN, prompt, "下一步")
    assert "请先选择接收范围" in sent.alerts[0]
    sent = await bot.send(ADMIN, "火星")
    assert "未找到单位或协作区「火星」" in sent.text
    sent = await bot.send(ADMIN, "四川 滇")
    assert "已选择：四川省公安厅、云南省公安厅" in sent.text
    sent = await bot.press(ADMIN, sent, "下一步")
    assert "通报正文" in sent.text
    sent = await bot.send(ADMIN, "   ")
    assert "不能为空" in sent.text
    sent = await bot.send(ADMIN, "长" * (TEXT_MAX + 1))
    assert "过长" in sent.text
    sent = await bot.send(ADMIN, "请核查近期入境可疑人员。")
    assert "请核对通报" in sent.text and "2 个值班室" in sent.text
    sent = await bot.press(ADMIN, sent, "定时发送")
    assert "发送时间" in sent.text
    for bad, expected in (("今天08:00", "已经过去"), ("不知道", "无法识别时间")):
        sent = await bot.send(ADMIN, bad)
        assert expected in sent.text
    assert await notices(bot.db) == []
    sent = await bot.send(ADMIN, "明天08:00")
    assert "请核对通报" in sent.text and "2026-12-02 08:00" in sent.text
    sent = await bot.press(ADMIN, sent, "发送")
    [notice] = await notices(bot.db)
    assert notice.status is NoticeStatus.scheduled and notice.number == "TB-2026-000001"
    assert (notice.kind, notice.severity) == (NoticeKind.instruction, Severity.important)
    assert "将于 2026-12-02 08:00 发出" in sent.text
    assert in_chat(await bot.deliver(), SICHUAN_ROOM) == []


async def test_audience_by_buttons_zones_and_units(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN, "/notice 工作通知 一般")
    assert "接收范围" in sent.text
    sent = await bot.press(ADMIN, sent, "泛西南")  # a zone: 云南, 四川, 重庆
    sent = await bot.press(ADMIN, sent, "西北")  # a zone whose unit has no duty room
    labels = [label for label, _ in sent.buttons()]
    assert "✅ 泛西南" in labels and "✅ 西北" in labels
    sent = await bot.press(ADMIN, sent, "✅ 泛西南")  # pressed again: dropped
    sent = await bot.press(ADMIN, sent, "下一步")
    sent = await bot.send(ADMIN, "请核对")
    assert "西北警务协作区" in sent.text and "0 个值班室" in sent.text
    sent = await bot.press(ADMIN, sent, "发送")
    assert "没有已登记的值班室" in sent.text and "接收范围" in sent.text
    assert await notices(bot.db) == []
    sent = await bot.press(ADMIN, sent, "重庆")  # a unit's button
    sent = await bot.press(ADMIN, sent, "✅ 西北")
    sent = await bot.press(ADMIN, sent, "下一步")
    assert "请核对通报" in sent.text and "1 个值班室" in sent.text
    await bot.press(ADMIN, sent, "发送")
    [notice] = await notices(bot.db)
    assert notice.audience == {"zones": [], "units": [notice.audience["units"][0]]}
    assert len(await deliveries(bot.db)) == 1


async def test_cancel_at_a_step_and_officers_are_refused(bot: BotHarness) -> None:
    sent = await bot.send(OFFICER, "/notice")
    assert "无权" in sent.text
    sent = await bot.send(ADMIN, "/notice 预警")
    sent = await bot.press(ADMIN, sent, "取消")
    assert "已取消" in sent.text
    sent = await bot.send(ADMIN, "/notice 预警 一般")
    sent = await bot.send(ADMIN, "/cancel")
    assert "已取消" in sent.text
    assert await notices(bot.db) == []


async def test_photo_with_caption_goes_with_the_notice(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN, "/notice 形势通报 一般 四川")
    assert "通报正文" in sent.text
    update = bot.emulator.make_message_update(ADMIN, ADMIN, photo="AgAC-notice-photo")
    sent = await bot.feed(update)
    assert "已添加附件" in sent.text
    sent = await bot.send(ADMIN, "现场照片见附件")
    assert "图片 1 张" in sent.text
    await bot.press(ADMIN, sent, "发送")
    room = in_chat(await bot.deliver(), SICHUAN_ROOM)
    assert [c.method for c in room] == ["sendMessage", "sendPhoto"]
    assert room[1].params["photo"] == "AgAC-notice-photo"


async def test_restart_mid_conversation_loses_nothing(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        await first.send(ADMIN, "/notice 工作通知 一般 云南")
    async with BotHarness(emulator, database_url, now=clock) as again:
        sent = await again.send(ADMIN, "请报送本周值班表")
        assert "请核对通报" in sent.text and "云南省公安厅" in sent.text
        await again.press(ADMIN, sent, "发送")
        room = in_chat(await again.deliver(), YUNNAN_ROOM)
        assert "请报送本周值班表" in room[0].params["text"]


# --------------------------------------------------------------------------- scheduled


async def test_scheduled_notice_goes_once_at_its_time_across_a_restart(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        sent = await first.send(ADMIN, "/notice 工作通知 一般 四川 周例会改到周五")
        sent = await first.press(ADMIN, sent, "定时发送")
        sent = await first.send(ADMIN, "2h")
        await first.press(ADMIN, sent, "发送")
        assert in_chat(await first.run_due(), SICHUAN_ROOM) == []
    clock.advance(hours=2, minutes=1)
    async with BotHarness(emulator, database_url, now=clock) as again:
        room = in_chat(await again.deliver(), SICHUAN_ROOM)  # the start-up catch-up fired
        assert len(room) == 1 and "周例会改到周五" in room[0].params["text"]
        assert in_chat(await again.run_due(), SICHUAN_ROOM) == []
    [notice] = await notices_of(database_url)
    assert notice.status is NoticeStatus.sent and notice.sent_at == clock()


async def test_a_scheduled_notice_missed_while_down_still_goes_marked_late(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as first:
        sent = await first.send(ADMIN, "/notice 预警 重要 四川 明早有大雾")
        sent = await first.press(ADMIN, sent, "定时发送")
        sent = await first.send(ADMIN, "1h")
        await first.press(ADMIN, sent, "发送")
    clock.advance(hours=5)  # down far past the grace period
    async with BotHarness(emulator, database_url, now=clock) as again:
        sent = await again.deliver()
        assert len(in_chat(sent, SICHUAN_ROOM)) == 1
        assert "晚于预定时间补发" in in_chat(sent, ADMIN)[0].params["text"]
        assert in_chat(await again.run_due(), SICHUAN_ROOM) == []


async def notices_of(database_url: str) -> list[Notice]:
    db = Database(database_url)
    try:
        return await notices(db)
    finally:
        await db.dispose()


# --------------------------------------------------------------------------- acknowledgement


async def test_members_acknowledge_others_are_refused_and_the_second_is_told(
    bot: BotHarness
) -> None:
    delivered = await broadcast(bot)
    [card] = in_chat(delivered, SICHUAN_ROOM)
    assert "请值班人员点击「收到」" in card.params["text"]
    # An outsider (甘肃) in the group, and a forged button: nothing changes.
    sent = await bot.press(OUTSIDER, card, "收到")
    assert "只有本单位登记人员或协调员" in sent.alerts[0]
    notice_id = (await notices(bot.db))[0].id
    async with bot.db.session() as session:
        yunnan = (await session.execute(select(DutyRoom).where(
            DutyRoom.chat_id == YUNNAN_ROOM))).scalar_one()
    for data in (f"ntk:{notice_id}:{yunnan.id}:1", f"ntk:{notice_id}:999:1",
                 f"ntk:{notice_id + 5}:1:1", "ntk:x", f"ntk:{notice_id}:{yunnan.id}:9",
                 f"ntk:{2**31}:{2**63}:1", "ntk:0:0:0", "ntk:１:１:１"):
        sent = await bot.press_data(DUTY, card, data)
        assert "未作任何更改" in sent.alerts[0]
    assert all(d.acknowledged_at is None for d in await deliveries(bot.db))
    sent = await bot.press(DUTY, card, "收到")
    assert "已确认收到 TB-2026-000001" in sent.alerts[0]
    edited = in_chat(await bot.deliver(), SICHUAN_ROOM)
    assert "李静 已于 12-01 09:00 确认收到" in edited[0].params["text"]
    assert "reply_markup" not in edited[0].params
    sent = await bot.press(202, card, "收到")
    assert "已由 李静 於 12-01 09:00 確認收到" in sent.alerts[0]
    acked = [d for d in await deliveries(bot.db) if d.acknowledged_at is not None]
    assert len(acked) == 1 and acked[0].acknowledged_revision == 1


async def test_status_message_counts_deliveries_acks_and_failures(bot: BotHarness) -> None:
    delivered = await broadcast(bot)
    first = next(c for c in delivered.messages if c.chat_id == ADMIN)
    assert first.method == "sendMessage"
    assert "值班室 3 个：已送达 0" in first.params["text"]  # enqueued with the rooms' messages
    # Each delivery marks the notice; the refresher edits the status message.
    await bot.services.extras["notice_status_refresher"].settle()
    await bot.deliver()
    assert "已送达 2，已确认 0" in last_status(bot)
    [card] = [c for c in bot.emulator.calls if c.chat_id == SICHUAN_ROOM
              and c.method == "sendMessage"]
    await bot.press(DUTY, card, "收到")
    await bot.deliver()
    await bot.run_due(T0 + timedelta(minutes=1, seconds=1))  # the status check
    status = last_status(bot)
    assert "已送达 2，已确认 1，待确认 1，发送失败 1" in status
    assert "• 四川：李静（12-01 09:00）" in status
    assert "待确认：云南" in status and "发送失败：重庆" in status


async def test_status_edits_are_coalesced(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock,
                          notice_status_edit_seconds=5) as bot:
        await broadcast(bot)
        await bot.services.extras["notice_status_refresher"].settle()
        await bot.deliver()
        cards = {c.chat_id: c for c in bot.emulator.calls if c.method == "sendMessage"
                 and c.chat_id in (SICHUAN_ROOM, YUNNAN_ROOM)}
        # Two acknowledgements within the spacing: one edit waits, holding both.
        await bot.press(DUTY, cards[SICHUAN_ROOM], "收到")
        await bot.press(OFFICER, cards[YUNNAN_ROOM], "收到")
        async with bot.db.session() as session:
            waiting = (await session.execute(select(func.count()).select_from(OutboxMessage)
                                             .where(OutboxMessage.kind == "notice_status",
                                                    OutboxMessage.state == "pending"))
                       ).scalar_one()
        assert waiting == 1
        before = len(bot.emulator.calls_for(ADMIN, ["editMessageText"]))
        await bot.deliver()
        assert len(bot.emulator.calls_for(ADMIN, ["editMessageText"])) == before
        clock.advance(seconds=6)
        await bot.deliver()
        edits = bot.emulator.calls_for(ADMIN, ["editMessageText"])
        assert len(edits) == before + 1
        assert "已确认 2" in last_status(bot) and "杨丽华" in last_status(bot)


# --------------------------------------------------------------------------- reminder


async def test_pending_rooms_are_reminded_once_and_the_coordinator_told(
    bot: BotHarness, clock: FakeClock
) -> None:
    await broadcast(bot)
    [card] = [c for c in bot.emulator.calls if c.chat_id == SICHUAN_ROOM
              and c.method == "sendMessage"]
    await bot.press(DUTY, card, "收到")
    await bot.deliver()
    clock.advance(minutes=30, seconds=1)
    sent = await bot.run_due()
    reminders = in_chat(sent, YUNNAN_ROOM)
    assert len(reminders) == 1 and "尚未确认收到" in reminders[0].params["text"]
    assert in_chat(sent, SICHUAN_ROOM) == [] and in_chat(sent, CHONGQING_ROOM) == []
    told = [c for c in in_chat(sent, ADMIN) if "已提醒 1 个" in c.params.get("text", "")]
    assert told and "云南" in told[0].params["text"]
    clock.advance(minutes=30)
    again = await bot.run_due()
    assert in_chat(again, YUNNAN_ROOM) == []
    # The reminder's button acknowledges too (101 is a 云南 officer).
    sent = await bot.press(OFFICER, reminders[0], "收到")
    assert "已确认收到" in sent.alerts[0]
    assert sum(1 for d in await deliveries(bot.db) if d.acknowledged_at) == 2
    assert "notice.remind" in await audited(bot.db)


# --------------------------------------------------------------------------- correct, withdraw


async def test_correct_then_withdraw_edit_every_room_and_keep_old_acks(
    bot: BotHarness
) -> None:
    await broadcast(bot)
    [card] = [c for c in bot.emulator.calls if c.chat_id == SICHUAN_ROOM
              and c.method == "sendMessage"]
    await bot.press(DUTY, card, "收到")
    await bot.deliver()
    sent = await bot.send(ADMIN, "/notices TB-2026-000001")
    sent = await bot.press(ADMIN, sent, "更正")
    assert "更正后全文" in sent.text
    sent = await bot.send(ADMIN, "今晚至明晨有暴雨，请加强备勤并上报险情")
    assert "第2版" in sent.text
    edits = await bot.deliver()
    sichuan = in_chat(edits, SICHUAN_ROOM)[0].params
    assert "已更正（第2版" in sichuan["text"] and "暴雨" in sichuan["text"]
    assert "确认收到第1版" in sichuan["text"] and "reply_markup" in sichuan
    assert "已更正（第2版" in in_chat(edits, YUNNAN_ROOM)[0].params["text"]
    [delivery] = [d for d in await deliveries(bot.db) if d.acknowledged_at]
    assert delivery.acknowledged_revision == 1
    assert "确认的是第1版" in last_status(bot)
    sent = await bot.send(ADMIN, "/notices TB-2026-000001")
    sent = await bot.press(ADMIN, sent, "撤回")
    sent = await bot.press(ADMIN, sent, "确认撤回")
    edits = await bot.deliver()
    for chat in (SICHUAN_ROOM, YUNNAN_ROOM):
        params = in_chat(edits, chat)[0].params
        assert "已于" in params["text"] and "撤回" in params["text"]
        assert "reply_markup" not in params
    sent = await bot.press(DUTY, card, "收到")
    assert "已撤回" in sent.alerts[0]
    [notice] = await notices(bot.db)
    assert notice.status is NoticeStatus.withdrawn and notice.history[0]["revision"] == 1
    assert {"notice.correct", "notice.withdraw"} <= await audited(bot.db)


async def audited(db: Database) -> set[str]:
    from storage.models import AuditEntry
    async with db.session() as session:
        return set((await session.execute(select(AuditEntry.action))).scalars())


# --------------------------------------------------------------------------- lists, report


async def test_list_and_csv_report(bot: BotHarness) -> None:
    await broadcast(bot)
    [card] = [c for c in bot.emulator.calls if c.chat_id == SICHUAN_ROOM
              and c.method == "sendMessage"]
    await bot.press(DUTY, card, "收到")
    await bot.deliver()
    sent = await bot.send(ADMIN, "/notices")
    assert "TB-2026-000001" in sent.text and "送达 2，确认 1，失败 1" in sent.text
    sent = await bot.send(ADMIN, "/notices export")
    [document] = [c for c in sent.calls if c.method == "sendDocument"]
    (name, raw), = document.files.values()
    assert name == "TB-2026-000001.csv"
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["通报编号", "值班室", "单位"]
    by_room = {row[1]: row for row in rows[1:]}
    assert by_room["四川省厅值班室"][4] == "李静" and by_room["四川省厅值班室"][7] == "已确认"
    assert by_room["重庆市局值班室"][7] == "发送失败"
    assert by_room["云南省厅值班室"][7] == "已送达未确认"
    sent = await bot.send(OFFICER, "/notices")
    assert "无权" in sent.text


async def test_list_pages_and_every_change_is_audited(bot: BotHarness, clock: FakeClock) -> None:
    async with bot.db.session() as session:
        admin = (await session.execute(select(User).where(User.telegram_id == ADMIN))
                 ).scalar_one()
        audience = {"units": [await _sichuan(session)]}
        for i in range(store.PAGE_SIZE + 1):
            await create_notice(session, NoticeDraft(
                NoticeKind.work, Severity.info, f"第{i}号工作通知", audience),
                actor=admin, now=clock() + timedelta(seconds=i), policy=NoticePolicy())
    sent = await bot.send(ADMIN, "/notices")
    assert f"共 {store.PAGE_SIZE + 1} 条，第 1/2 页" in sent.text and "第8号" in sent.text
    sent = await bot.press(ADMIN, sent, "下一页")
    assert "第 2/2 页" in sent.text and "第0号" in sent.text
    await bot.deliver()
    card = bot.emulator.calls_for(SICHUAN_ROOM, ["sendMessage"])[0]
    await bot.press(DUTY, card, "收到")
    await bot.press(OUTSIDER, card, "收到")
    assert {"notice.create", "notice.send", "notice.acknowledge",
            "notice.ack_refused"} <= await audited(bot.db)


async def _sichuan(session: object) -> int:
    from storage.models import Unit
    return (await session.execute(select(Unit.id).where(  # type: ignore[attr-defined]
        Unit.code == "sichuan"))).scalar_one()


async def test_help_lists_the_notice_commands_by_role(bot: BotHarness) -> None:
    officer = (await bot.send(OFFICER, "/help")).text
    assert "/notice" not in officer
    coordinator = (await bot.send(ADMIN, "/help")).text
    assert "/notice" in coordinator and "/notices" in coordinator


async def test_handover_brief_still_lists_unacknowledged_notices(bot: BotHarness) -> None:
    from storage.schedules import unacknowledged_notices
    await broadcast(bot)
    async with bot.db.session() as session:
        room = (await session.execute(select(DutyRoom).where(
            DutyRoom.chat_id == SICHUAN_ROOM))).scalar_one()
        assert [n.number for n in await unacknowledged_notices(session, room.id)] == [
            "TB-2026-000001"]
    [card] = [c for c in bot.emulator.calls if c.chat_id == SICHUAN_ROOM
              and c.method == "sendMessage"]
    await bot.press(DUTY, card, "收到")
    async with bot.db.session() as session:
        assert await unacknowledged_notices(session, room.id) == []


async def test_create_notice_fans_out_in_bulk(bot: BotHarness, clock: FakeClock) -> None:
    """The service function the benchmark uses: one call, one row per room, unique keys."""
    async with bot.db.session() as session:
        admin = (await session.execute(select(User).where(User.telegram_id == ADMIN))
                 ).scalar_one()
        notice = await create_notice(
            session, NoticeDraft(NoticeKind.situation, Severity.info, "测试", {"all": True}),
            actor=admin, now=clock(), policy=NoticePolicy())
        await send_notice(session, notice, now=clock(), policy=NoticePolicy())
        keys = list((await session.execute(select(OutboxMessage.dedup_key).where(
            OutboxMessage.kind == "notice"))).scalars())
    assert len(keys) == len(set(keys)) == 3


async def test_the_migration_matches_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return [c for c in compare_metadata(context, Base.metadata) if "notice" in repr(c)]

    async with db.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_enqueue_many_inserts_once_per_key_and_supersedes_older_edits(
    db: Database, directory: Directory
) -> None:
    from storage.outbox import enqueue_many

    rows = [{"chat_id": -100 - i, "kind": "notice", "dedup_key": f"k{i}",
             "payload": {"text": str(i)}} for i in range(3)]
    async with db.session() as session:
        assert await enqueue_many(session, rows, now=T0) == 3
        assert await enqueue_many(session, [*rows, {**rows[0], "dedup_key": "k9"}],
                                  now=T0) == 1
        edit = {"chat_id": -100, "kind": "notice_edit", "method": "editMessageText",
                "reply_to_key": "k0", "payload": {"text": "a"}}
        await enqueue_many(session, [{**edit, "dedup_key": "k0:e1"}], now=T0, supersede=True)
        await enqueue_many(session, [{**edit, "dedup_key": "k0:e2"}], now=T0, supersede=True)
        states = dict((await session.execute(select(
            OutboxMessage.dedup_key, OutboxMessage.last_error).where(
            OutboxMessage.reply_to_key == "k0"))).all())
    assert states == {"k0:e1": "superseded", "k0:e2": None}


async def test_two_members_pressing_at_once_make_one_acknowledgement(bot: BotHarness) -> None:
    import asyncio

    await broadcast(bot)
    [card] = bot.emulator.calls_for(SICHUAN_ROOM, ["sendMessage"])
    before = len(bot.emulator.calls)
    await asyncio.gather(bot.press(DUTY, card, "收到"), bot.press(202, card, "收到"))
    alerts = Sent(bot.emulator.calls[before:]).alerts  # 202 reads Traditional characters
    assert len(alerts) == 2
    assert sum(a.startswith(("✅ 已确认收到 TB", "✅ 已確認收到 TB")) for a in alerts) == 1
    assert sum(a.startswith("已由") for a in alerts) == 1
    assert sum(1 for d in await deliveries(bot.db) if d.acknowledged_at) == 1


async def test_withdrawing_a_scheduled_notice_means_it_never_goes(
    bot: BotHarness, clock: FakeClock
) -> None:
    sent = await bot.send(ADMIN, "/notice 工作通知 一般 四川 明天下午开会")
    sent = await bot.press(ADMIN, sent, "定时发送")
    sent = await bot.send(ADMIN, "1h")
    await bot.press(ADMIN, sent, "发送")
    sent = await bot.send(ADMIN, "/notices TB-2026-000001")
    assert "预定发送" in sent.text
    prompt = await bot.press(ADMIN, sent, "撤回")
    kept = await bot.press(ADMIN, prompt, "取消")
    assert "未撤回" in kept.text
    assert (await notices(bot.db))[0].status is NoticeStatus.scheduled
    await bot.press(ADMIN, await bot.press(ADMIN, sent, "撤回"), "确认撤回")
    assert (await notices(bot.db))[0].status is NoticeStatus.withdrawn
    clock.advance(hours=2)
    assert in_chat(await bot.run_due(), SICHUAN_ROOM) == []


# --------------------------------------------------------------------------- dead confirmations


async def test_a_cancelled_withdrawal_confirmation_is_dead(bot: BotHarness) -> None:
    await broadcast(bot)
    view = await bot.send(ADMIN, "/notices TB-2026-000001")
    prompt = await bot.press(ADMIN, view, "撤回")
    await bot.press(ADMIN, prompt, "取消")
    late = await bot.press(ADMIN, prompt, "确认撤回")
    assert late.alerts == ["您已取消「撤回通报」，这个按钮不再起作用，什么也没有改变。"]
    assert (await notices(bot.db))[0].status is NoticeStatus.sent
    delivered = await bot.deliver()
    assert in_chat(delivered, SICHUAN_ROOM) == in_chat(delivered, YUNNAN_ROOM) == []
    # A new confirmation works, once; its button pressed again acts no more.
    prompt = await bot.press(ADMIN, view, "撤回")
    assert "已撤回" in (await bot.press(ADMIN, prompt, "确认撤回")).text
    again = await bot.press(ADMIN, prompt, "确认撤回")
    assert again.alerts == ["这个按钮已经用过（撤回通报），不会再执行一次。"]


async def test_a_superseded_correction_prompt_cannot_cancel_the_current_one(
    bot: BotHarness
) -> None:
    await broadcast(bot)
    view = await bot.send(ADMIN, "/notices TB-2026-000001")
    first = await bot.press(ADMIN, view, "更正")
    await bot.press(ADMIN, view, "更正")
    late = await bot.press(ADMIN, first, "取消")
    assert late.alerts == ["这个确认已被更新的一条取代（更正通报），请使用最新的那条消息。"]
    sent = await bot.send(ADMIN, "今晚至明晨有暴雨，请加强备勤并上报险情")
    assert "第2版" in sent.text
    assert (await notices(bot.db))[0].revision == 2


async def test_a_cancelled_draft_cannot_send_the_next_one(bot: BotHarness) -> None:
    first = await bot.send(ADMIN, "/notice 预警 紧急 四川 第一份草稿")
    await bot.press(ADMIN, first, "取消")
    await bot.send(ADMIN, "/notice 预警 紧急 云南 第二份草稿")
    late = await bot.press(ADMIN, first, "发送")
    assert late.alerts == ["您已取消「发送通报」，这个按钮不再起作用，什么也没有改变。"]
    assert await notices(bot.db) == []
    # The second draft is still there, and its own cancel button is the one that works.
    late = await bot.press(ADMIN, first, "取消")
    assert late.alerts == ["您已取消「发送通报」，这个按钮不再起作用，什么也没有改变。"]
    sent = await bot.send(ADMIN, "/cancel")
    assert "已取消" in sent.text


async def test_a_cancelled_scheduled_send_stays_unsent(bot: BotHarness, clock: FakeClock) -> None:
    sent = await bot.send(ADMIN, "/notice 工作通知 一般 四川 明天下午开会")
    sent = await bot.press(ADMIN, sent, "定时发送")
    preview = await bot.send(ADMIN, "1h")
    assert "请核对通报" in preview.text
    await bot.press(ADMIN, preview, "取消")
    await bot.send(ADMIN, "/notice 工作通知 一般 云南 请报送值班表")
    late = await bot.press(ADMIN, preview, "发送")
    assert "您已取消「发送通报」" in late.alerts[0]
    late = await bot.press(ADMIN, preview, "定时发送")
    assert "您已取消「发送通报」" in late.alerts[0]
    assert await notices(bot.db) == []
    clock.advance(hours=2)
    assert in_chat(await bot.run_due(), SICHUAN_ROOM) == []


async def test_text_at_the_preview_is_not_a_lookup(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN, "/notice 预警 紧急 四川 今晚有大风")
    assert "请核对通报" in sent.text
    sent = await bot.send(ADMIN, "四川 刑侦")
    assert sent.text.startswith("这一步是发送前的核对，不接收文字。")
    assert "请核对通报" in sent.text and "联络员" not in sent.text
    assert "TB-2026-000001" in (await bot.press(ADMIN, sent, "发送")).text


async def test_a_quoted_reply_to_a_prompt_is_still_the_answer(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN, "/notice 预警 紧急 四川")
    [prompt] = sent.messages
    assert "通报正文" in prompt.params["text"]
    sent = await bot.feed(bot.emulator.make_message_update(
        ADMIN, ADMIN, "今晚有大风，请加强备勤", reply_to=prompt.message_ref))
    assert "请核对通报" in sent.text and "今晚有大风" in sent.text
