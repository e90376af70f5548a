"""A draft is stored once, however often it is submitted, on both databases: a request,
a notice, a meeting (/meeting new).

The end of a guided conversation reaches the database up to a second after what it
created (persistence flushes on a timer). These tests put the persisted conversation
back as it was before that flush, as a crash in between leaves it, start the bot again
and press the old confirmation: the existing numbers are given, nothing is stored or
sent again. Two submissions of one draft at once store it once too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy import select

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from core.enums import MeetingKind
from core.enums import NoticeKind
from core.enums import Severity
from core.enums import Urgency
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from core.request_checks import Draft
from core.request_checks import Policy
from services import requests as request_service
from services.notices import create_notice
from storage.access import user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.db import Database
from storage.db import submit_once
from storage.meetings import create_meeting
from storage.models import AssistanceRequest
from storage.models import ConversationState
from storage.models import Meeting
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import OutboxMessage
from storage.models import User
from tests import test_meetings as meetings
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import YUNNAN_ROOM
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

REQUESTER, ADMIN = 101, 901


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db, yunnan_room=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def people(emulator: BotApiEmulator) -> None:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [201, 202]),
                          YUNNAN_ROOM: ("云南省厅值班室", [101])})


Persisted = list[tuple[str, str, dict[str, Any]]]


async def persisted(bot: BotHarness) -> Persisted:
    """The conversations and user data as the database holds them after a flush."""
    await bot.application.update_persistence()
    async with bot.db.session() as session:
        rows = await session.execute(select(ConversationState.namespace, ConversationState.key,
                                            ConversationState.value))
        return [(namespace, key, value) for namespace, key, value in rows]


async def crash_before_the_flush(db: Database, before: Persisted) -> None:
    """What a kill right after the commit leaves: the flow's state as it was before."""
    async with db.session() as session:
        await session.execute(delete(ConversationState))
        session.add_all(ConversationState(namespace=namespace, key=key, value=value)
                        for namespace, key, value in before)


async def rows(db: Database, model: type) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(select(model).order_by(model.id))).scalars())


async def room_rows(db: Database, chat_ids: Sequence[int]) -> Counter[int]:
    """Outbox rows per duty room (each room is to get a thing once)."""
    return Counter(r.chat_id for r in await rows(db, OutboxMessage) if r.chat_id in chat_ids)


def sends(sent: Sent) -> list[ApiCall]:
    """New messages (an edit of the coordinator's live status is not one)."""
    return [c for c in sent.messages if c.method.startswith("send")]


def sent_to(emulator: BotApiEmulator, chat_ids: Sequence[int], marker: str) -> Counter[int]:
    """How many messages containing `marker` each chat got."""
    return Counter(c.chat_id for c in emulator.calls
                   if c.method == "sendMessage" and c.ok and c.chat_id in chat_ids
                   and marker in (c.params.get("text") or ""))


async def test_a_request_pressed_again_after_a_crash_before_the_flush_is_stored_once(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock,
    db: Database,
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        summary = await bot.send(REQUESTER, "/request 四川、重庆 治安管控互动 特急 协查涉枪线索")
        assert "请核对协作请求" in summary.text
        before = await persisted(bot)
        sent = await bot.press(REQUESTER, summary, "提交")
        created = await rows(db, AssistanceRequest)
        assert len(created) == 2 and all(r.number in sent.text for r in created)
        await bot.deliver()
    rooms = [SICHUAN_ROOM]
    outbox = await room_rows(db, rooms)
    assert outbox == {SICHUAN_ROOM: 1}
    await crash_before_the_flush(db, before)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        again = await bot.press(REQUESTER, summary, "提交")
        numbers = "、".join(f"<code>{r.number}</code>" for r in created)
        assert again.texts == [f"该草稿已提交，编号 {numbers}；未重复登记，也未重复发送。"]
        assert [r.id for r in await rows(db, AssistanceRequest)] == [r.id for r in created]
        assert await room_rows(db, rooms) == outbox
        assert not sends(await bot.deliver())
        # The draft is over now: its buttons say so and store nothing.
        third = await bot.press(REQUESTER, summary, "提交")
        assert third.alerts == ["这个按钮已经用过（提交协作请求），不会再执行一次。"]
    assert sent_to(emulator, [SICHUAN_ROOM], "协查涉枪线索") == {SICHUAN_ROOM: 1}
    assert len(await rows(db, AssistanceRequest)) == 2


@pytest.mark.parametrize("scheduled", [False, True])
async def test_a_notice_pressed_again_after_a_crash_before_the_flush_goes_once(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock,
    db: Database, scheduled: bool,
) -> None:
    people(emulator)
    rooms = [SICHUAN_ROOM, YUNNAN_ROOM]
    async with BotHarness(emulator, database_url, now=clock,
                          notice_status_edit_seconds=0) as bot:
        preview = await bot.send(ADMIN, "/notice 预警 紧急 全部 今晚至明晨有强降雨")
        assert "请核对通报" in preview.text and "2 个值班室" in preview.text
        if scheduled:  # ⏰ 定时发送: a time, then the preview again
            await bot.press(ADMIN, preview, "定时")
            preview = await bot.send(ADMIN, "2h")
            assert "请核对通报" in preview.text
        before = await persisted(bot)
        sent = await bot.press(ADMIN, preview, "发送")
        assert "TB-2026-000001" in sent.text
        await bot.deliver()
    outbox = await room_rows(db, rooms)
    assert outbox == ({} if scheduled else {room: 1 for room in rooms})
    await crash_before_the_flush(db, before)
    async with BotHarness(emulator, database_url, now=clock,
                          notice_status_edit_seconds=0) as bot:
        again = await bot.press(ADMIN, preview, "发送")
        assert again.texts == ["该草稿已保存为通报 <code>TB-2026-000001</code>；"
                               "未重复保存，也未重复发送。"]
        assert [n.number for n in await rows(db, Notice)] == ["TB-2026-000001"]
        assert await room_rows(db, rooms) == outbox
        assert not sends(await bot.deliver())
        if scheduled:
            clock.advance(hours=2, minutes=1)
            await bot.run_due()
    assert len(await rows(db, NoticeDelivery)) == 2
    assert await room_rows(db, rooms) == {room: 1 for room in rooms}
    assert sent_to(emulator, rooms, "今晚至明晨有强降雨") == {room: 1 for room in rooms}


async def test_two_submissions_of_one_draft_at_once_store_it_once(
    db: Database, directory: Directory,
) -> None:
    """Two processes pressing the same confirmation: one stores, the other is told."""
    async with db.session() as session:
        requester, admin = [await user_by_telegram_id(session, telegram_id)
                            for telegram_id in (REQUESTER, ADMIN)]
    assert requester is not None and admin is not None
    request_draft = Draft(
        target_unit_ids=[directory.sichuan, directory.chongqing], mechanism_id=None,
        urgency=Urgency.urgent, subject="协查涉枪线索", submission_key="a" * 32)
    notice_draft = NoticeDraft(
        kind=NoticeKind.warning, severity=Severity.critical, text="今晚至明晨有强降雨",
        audience={"all": True}, submission_key="b" * 32)

    async def request(session: Any) -> list[str]:
        user = await session.get(User, requester.id)
        created = await request_service.create_requests(
            session, request_draft, actor=user, now=T0,
            policy=Policy(language="zh-Hans"))
        return [r.number for r in created.requests]

    async def notice(session: Any) -> list[str]:
        user = await session.get(User, admin.id)
        created = await create_notice(
            session, notice_draft, actor=user, now=T0,
            policy=NoticePolicy(language="zh-Hans"))
        return [created.number]

    for work, count in ((request, 2), (notice, 1)):
        outcomes = await asyncio.gather(submit_once(db, work), submit_once(db, work),
                                        return_exceptions=True)
        stored = [o for o in outcomes if isinstance(o, list)]
        told = [o for o in outcomes if isinstance(o, AlreadySubmitted)]
        assert len(stored) == len(told) == 1, outcomes
        assert told[0].numbers == stored[0] and len(stored[0]) == count
    assert len(await rows(db, AssistanceRequest)) == 2
    assert len(await rows(db, Notice)) == 1


@pytest.fixture
async def meeting_units(db: Database) -> dict[str, int]:
    return await meetings.seed(db)


def meeting_invitations(emulator: BotApiEmulator, title: str) -> Counter[int]:
    return sent_to(emulator, [meetings.GANSU_ROOM, meetings.QINGHAI_ROOM], title)


async def test_a_meeting_confirmed_again_after_a_crash_before_the_flush_is_created_once(
    emulator: BotApiEmulator, database_url: str, meeting_units: dict[str, int], db: Database,
) -> None:
    meetings.prepare(emulator)
    clock = FakeClock(meetings.T0)
    title = "第十五届联席会议"
    rooms = [meetings.GANSU_ROOM, meetings.QINGHAI_ROOM]
    async with BotHarness(emulator, database_url, now=clock) as bot:
        preview = await meetings.preview_of_a_new_meeting(bot, title)
        before = await persisted(bot)
        done = await bot.press(meetings.COORD_ID, preview, "确认")
        [meeting] = await rows(db, Meeting)
        assert f"已创建会议 #{meeting.id}" in done.text
        await bot.deliver()
    outbox = await room_rows(db, rooms)
    assert outbox == {room: 1 for room in rooms}
    await crash_before_the_flush(db, before)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        again = await bot.press(meetings.COORD_ID, preview, "确认")
        assert again.texts == [f"该草稿已创建为会议 #{meeting.id}「{title}」；"
                               "未重复创建，也未重复发送。"]
        assert [m.id for m in await rows(db, Meeting)] == [meeting.id]
        assert await room_rows(db, rooms) == outbox
        assert not sends(await bot.deliver())
        third = await bot.press(meetings.COORD_ID, preview, "确认")
        assert third.alerts == ["这个按钮已经用过（创建会议），不会再执行一次。"]
    assert meeting_invitations(emulator, title) == {room: 1 for room in rooms}
    assert meeting.submission_key is not None and len(meeting.submission_key) == 32


async def test_two_confirmations_of_one_meeting_draft_at_once_create_it_once(
    db: Database, meeting_units: dict[str, int],
) -> None:
    async def create(session: Any) -> int:
        meeting = await create_meeting(
            session, kind=MeetingKind.joint, title="联席会议", starts_at=meetings.START,
            ends_at=meetings.START + timedelta(hours=8), timezone="Asia/Shanghai",
            unit_ids=[meeting_units["gs"], meeting_units["qh"]], actor=None, offsets=[60],
            submission_key="c" * 32)
        return meeting.id

    outcomes = await asyncio.gather(submit_once(db, create), submit_once(db, create),
                                    return_exceptions=True)
    stored = [o for o in outcomes if isinstance(o, int)]
    told = [o for o in outcomes if isinstance(o, AlreadySubmitted)]
    assert len(stored) == len(told) == 1, outcomes
    assert told[0].numbers == [str(stored[0])]
    assert [m.id for m in await rows(db, Meeting)] == stored
