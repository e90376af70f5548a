"""Creating requests through the emulator, on both databases: the guided flow and the
one-shot form, bad input at every step (nothing stored), a restart mid-conversation."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from core import requests as rules
from core.enums import RequestStatus
from storage.db import Database
from storage.models import AssistanceRequest
from storage.models import OutboxMessage
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def people(emulator: BotApiEmulator) -> None:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [201, 202])})


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as harness:
        yield harness


async def stored(db: Database) -> list[AssistanceRequest]:
    async with db.session() as session:
        return list((await session.execute(
            select(AssistanceRequest).order_by(AssistanceRequest.id))).scalars())


async def count(db: Database, model: type) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


REQUESTER = 101


async def guided_until_subject(bot: BotHarness) -> Sent:
    sent = await bot.send(REQUESTER, "/request")
    assert "发起协作请求" in sent.text
    sent = await bot.press(REQUESTER, sent, "四川")
    assert "已选择：四川省公安厅" in sent.text
    sent = await bot.press(REQUESTER, sent, "下一步")
    assert "协作机制" in sent.text
    sent = await bot.press(REQUESTER, sent, "治安管控互动")
    assert "紧急程度" in sent.text
    sent = await bot.press(REQUESTER, sent, "特急")
    assert "主题" in sent.text
    return sent


async def test_guided_flow_stores_first_then_confirms_and_routes(
    bot: BotHarness, db: Database
) -> None:
    await guided_until_subject(bot)
    sent = await bot.send(REQUESTER, "协查一支遗失猎枪的去向")
    assert "详细说明" in sent.text
    sent = await bot.send(REQUESTER, "11月30日在昆明遗失，疑被带往成都方向。\n联系人：杨丽华")
    assert "附件" in sent.text
    sent = await bot.feed(file_message(bot.emulator, REQUESTER, photo="AgACAgIAAxk-photo-0001"))
    assert "已添加附件 1 件" in sent.text
    sent = await bot.feed(file_message(bot.emulator, REQUESTER, document="BQACAgIAAxk-doc-0001"))
    assert "已添加附件 2 件" in sent.text
    sent = await bot.press(REQUESTER, await _last_prompt(bot), "完成")
    assert "答复期限" in sent.text and "Asia/Shanghai" in sent.text
    sent = await bot.send(REQUESTER, "明天18:00")
    assert "请核对协作请求" in sent.text
    assert "四川省公安厅" in sent.text and "🔴特急" in sent.text
    assert "2026-12-02 18:00" in sent.text and "15分钟" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0
    sent = await bot.press(REQUESTER, sent, "提交")
    [request] = await stored(bot.db)
    assert request.number in sent.text and "已提交" in sent.text
    photo, document = request.attachments
    assert photo == {"type": "photo", "file_id": "AgACAgIAAxk-photo-0001"}
    assert (document["type"], document["file_id"]) == ("document", "BQACAgIAAxk-doc-0001")
    assert request.reply_due_at == T0 + timedelta(days=1, hours=9)  # 18:00 Beijing
    delivered = await bot.deliver()
    room = [c for c in delivered.messages if c.chat_id == SICHUAN_ROOM]
    assert room[0].params["text"].startswith("<b>🔴特急</b>")
    assert [c.method for c in room] == ["sendMessage", "sendPhoto", "sendDocument"]
    labels = [label for label, _ in delivered.buttons()]
    assert labels == ["✅ 接收", "⛔ 拒绝", "↪️ 转办", "🏁 完成"]


def file_message(emulator: BotApiEmulator, user_id: int, **file: str) -> dict[str, object]:
    """A photo or document message by file id, whichever keywords the emulator takes."""
    accepted = inspect.signature(emulator.make_message_update).parameters
    (kind, file_id), = file.items()
    key = kind if kind in accepted else f"{kind}_file_id"
    return emulator.make_message_update(user_id, user_id, **{key: file_id})


async def _last_prompt(bot: BotHarness) -> object:
    for call in reversed(bot.emulator.calls):
        if call.method == "sendMessage" and (call.params.get("reply_markup") or {}).get(
                "inline_keyboard"):
            return call
    raise AssertionError("no prompt with buttons")


async def test_one_shot_asks_only_for_what_is_missing(bot: BotHarness) -> None:
    sent = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查涉枪线索")
    assert "请核对协作请求" in sent.text and "协查涉枪线索" in sent.text
    sent = await bot.press(REQUESTER, sent, "提交")
    [request] = await stored(bot.db)
    assert (request.urgency.value, request.subject, request.status) == (
        "flash", "协查涉枪线索", RequestStatus.open)
    assert request.mechanism_id is not None and request.reply_due_at is None
    # Several units, space-separated; the subject may start with a unit's name.
    sent = await bot.send(REQUESTER, "/request 四川 重庆 特急 信息互享 四川籍人员核查")
    assert "四川省公安厅、重庆市公安局" in sent.text and "四川籍人员核查" in sent.text
    assert "情报信息互享" in sent.text
    await bot.press(REQUESTER, sent, "取消")
    # Urgency and mechanism in the other order; no subject: asked for it.
    sent = await bot.send(REQUESTER, "/request 川 加急 管控互动")
    assert "主题" in sent.text and "请核对" not in sent.text
    sent = await bot.send(REQUESTER, "查询车辆轨迹")
    assert "请核对协作请求" in sent.text and "🟠加急" in sent.text


async def test_one_shot_with_an_unknown_unit_asks_again_and_stores_nothing(
    bot: BotHarness,
) -> None:
    sent = await bot.send(REQUESTER, "/request 云男 治安管控互动 特急 协查")
    assert "没有找到单位「云男」" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0
    sent = await bot.send(REQUESTER, "重庆")
    assert "已选择：重庆市公安局" in sent.text
    sent = await bot.press(REQUESTER, sent, "下一步")
    assert "请核对协作请求" in sent.text  # mechanism, urgency and subject were understood


@pytest.mark.parametrize(
    ("step_input", "expected"),
    [
        ("长" * (rules.SUBJECT_MAX + 1), "主题过长"),
    ],
)
async def test_bad_subject_is_refused_and_asked_again(
    bot: BotHarness, step_input: str, expected: str
) -> None:
    await guided_until_subject(bot)
    sent = await bot.send(REQUESTER, step_input)
    assert expected in sent.text
    sent = await bot.send(REQUESTER, "正常主题")
    assert "详细说明" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0


async def test_bad_input_at_every_step_changes_nothing(bot: BotHarness) -> None:
    sent = await bot.send(REQUESTER, "/request")
    sent = await bot.send(REQUESTER, "火星")
    assert "没有找到单位「火星」" in sent.text
    sent = await bot.send(REQUESTER, "云南")
    assert "不能向本单位" in sent.text
    sent = await bot.send(REQUESTER, "省")  # several units contain it: pick one
    assert "对应多个单位" in sent.text
    assert [label for label, _ in sent.buttons()][:3] == [
        "云南省公安厅", "四川省公安厅", "甘肃省公安厅"]
    sent = await bot.press(REQUESTER, await _last_prompt(bot), "下一步")
    assert sent.alerts == ["请先选择至少一个目标单位。"]
    sent = await bot.send(REQUESTER, "四川、重庆")
    assert "四川省公安厅、重庆市公安局" in sent.text
    sent = await bot.press(REQUESTER, sent, "下一步")
    sent = await bot.send(REQUESTER, "不存在的机制")
    assert "没有找到协作机制" in sent.text
    sent = await bot.send(REQUESTER, "信息互享")
    assert "紧急程度" in sent.text
    sent = await bot.send(REQUESTER, "很急")
    assert "无法识别紧急程度" in sent.text
    sent = await bot.send(REQUESTER, "平急")
    assert "主题" in sent.text
    sent = await bot.send(REQUESTER, "\u3000 ")  # ideographic space only: empty
    assert "主题不能为空" in sent.text
    sent = await bot.feed(file_message(bot.emulator, REQUESTER, photo="AgACAgIAAxk-p-0002"))
    assert "请发送文字" in sent.text
    sent = await bot.send(REQUESTER, "交换近期涉枪情报")
    sent = await bot.send(REQUESTER, "长" * (rules.DETAILS_MAX + 1))
    assert "说明过长" in sent.text
    sent = await bot.press(REQUESTER, await _last_prompt(bot), "跳过")
    sent = await bot.send(REQUESTER, "不是文件")
    assert "请发送照片或文件" in sent.text
    sent = await bot.press(REQUESTER, await _last_prompt(bot), "完成")
    for bad, message in (("下下周五", "无法识别时间"), ("2020-01-01 09:00", "已过"),
                         ("2030-01-01 09:00", "太远"), ("2026-02-30 09:00", "无法识别时间")):
        sent = await bot.send(REQUESTER, bad)
        assert message in sent.text, bad
    sent = await bot.send(REQUESTER, "2h")
    assert "请核对协作请求" in sent.text and "2026-12-01 11:00" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0
    sent = await bot.press(REQUESTER, sent, "提交")
    assert [r.to_unit_id for r in await stored(bot.db)] == [2, 3]
    assert "重庆市公安局尚未登记值班室" in sent.text


async def test_cancel_at_any_step_stores_nothing(bot: BotHarness) -> None:
    sent = await guided_until_subject(bot)
    sent = await bot.press(REQUESTER, sent, "取消")
    assert "已取消" in sent.text
    sent = await bot.send(REQUESTER, "一个主题")
    assert "详细说明" not in sent.text
    await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查")
    sent = await bot.send(REQUESTER, "/cancel")
    assert "已取消" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0
    assert await count(bot.db, OutboxMessage) == 0


async def test_a_restart_in_the_middle_of_the_conversation_loses_nothing(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        await guided_until_subject(bot)
        await bot.send(REQUESTER, "协查一支遗失猎枪的去向")
    async with BotHarness(emulator, database_url, now=clock) as bot:
        sent = await bot.press(REQUESTER, await _last_prompt(bot), "跳过")
        assert "附件" in sent.text
        sent = await bot.press(REQUESTER, await _last_prompt(bot), "完成")
        sent = await bot.press(REQUESTER, await _last_prompt(bot), "不设期限")
        assert "请核对协作请求" in sent.text and "协查一支遗失猎枪的去向" in sent.text
        sent = await bot.press(REQUESTER, sent, "提交")
        [request] = await stored(bot.db)
        assert request.subject == "协查一支遗失猎枪的去向"
        assert request.number in sent.text


async def test_an_abandoned_flow_does_not_take_later_messages(
    bot: BotHarness, clock: FakeClock
) -> None:
    await bot.send(REQUESTER, "/request")
    clock.advance(hours=7)
    sent = await bot.send(REQUESTER, "四川")
    assert "已选择" not in sent.text
    sent = await bot.send(REQUESTER, "四川")
    assert "已选择" not in sent.text  # the flow is over, not waiting any more


async def test_group_and_unregistered_users_cannot_start(bot: BotHarness) -> None:
    sent = await bot.send(201, "/request", chat_id=SICHUAN_ROOM)
    assert "私聊" in sent.text
    bot.emulator.add_user(777, "陌生人")
    sent = await bot.send(777, "/request")
    assert "尚未登记" in sent.text
    sent = await bot.send(901, "/request")  # the administrator has no unit
    assert "未绑定单位" in sent.text
    assert await count(bot.db, AssistanceRequest) == 0


async def test_a_cancelled_summary_cannot_submit_the_next_draft(bot: BotHarness) -> None:
    first = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 第一份草稿")
    assert "请核对" in first.text or "提交" in first.text
    await bot.press(REQUESTER, first, "取消")
    await bot.send(REQUESTER, "/request 重庆 治安管控互动 特急 第二份草稿")
    late = await bot.press(REQUESTER, first, "提交")
    assert late.alerts == ["您已取消「提交协作请求」，这个按钮不再起作用，什么也没有改变。"]
    late = await bot.press(REQUESTER, first, "取消")
    assert late.alerts == ["您已取消「提交协作请求」，这个按钮不再起作用，什么也没有改变。"]
    assert await count(bot.db, AssistanceRequest) == 0
    # The second draft is untouched: /cancel ends it, and then nothing is left to submit.
    assert "已取消" in (await bot.send(REQUESTER, "/cancel")).text
    assert await count(bot.db, AssistanceRequest) == 0


async def test_a_summary_replaced_by_a_new_request_says_so_and_submits_nothing(
    bot: BotHarness,
) -> None:
    """Not cancelled: replaced. Its buttons say the newer one is the one to use."""
    first = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 第一份草稿")
    second = await bot.send(REQUESTER, "/request 重庆 治安管控互动 特急 第二份草稿")
    replaced = "这个确认已被更新的一条取代（提交协作请求），请使用最新的那条消息。"
    assert (await bot.press(REQUESTER, first, "提交")).alerts == [replaced]
    assert (await bot.press(REQUESTER, first, "取消")).alerts == [replaced]
    assert await count(bot.db, AssistanceRequest) == 0
    assert "XZ-" in (await bot.press(REQUESTER, second, "提交")).text
    assert await count(bot.db, AssistanceRequest) == 1


async def test_an_old_steps_buttons_say_what_became_of_their_draft(
    bot: BotHarness, clock: FakeClock
) -> None:
    """A step's buttons once their draft is over change nothing and say why: cancelled,
    replaced by a newer draft (which they do not answer, though it waits at the same
    step), submitted, or left too long."""
    cancelled = await bot.send(REQUESTER, "/request")
    await bot.send(REQUESTER, "/cancel")
    late = await bot.press(REQUESTER, cancelled, "四川")
    assert late.alerts == ["您已取消「提交协作请求」，这个按钮不再起作用，什么也没有改变。"]
    assert not late.texts

    old = await bot.send(REQUESTER, "/request")
    new = await bot.send(REQUESTER, "/request")
    late = await bot.press(REQUESTER, old, "四川")
    assert late.alerts == ["这个确认已被更新的一条取代（提交协作请求），请使用最新的那条消息。"]
    assert not late.texts
    chosen = await bot.press(REQUESTER, new, "重庆")
    assert "已选择：重庆市公安局" in chosen.text and "四川" not in chosen.text

    mechanisms = await bot.press(REQUESTER, chosen, "下一步")
    sent = await bot.press(REQUESTER, mechanisms, "治安管控互动")
    sent = await bot.press(REQUESTER, sent, "特急")
    await bot.send(REQUESTER, "协查一支遗失猎枪的去向")
    await bot.press(REQUESTER, await _last_prompt(bot), "跳过")
    await bot.press(REQUESTER, await _last_prompt(bot), "完成")
    summary = await bot.press(REQUESTER, await _last_prompt(bot), "不设期限")
    assert "XZ-" in (await bot.press(REQUESTER, summary, "提交")).text
    late = await bot.press(REQUESTER, mechanisms, "治安管控互动")
    assert late.alerts == ["这份草稿已经提交（提交协作请求），这个按钮不再起作用。"]
    assert not late.texts and await count(bot.db, AssistanceRequest) == 1

    left = await bot.send(REQUESTER, "/request")
    clock.advance(hours=7)
    late = await bot.press(REQUESTER, left, "四川")
    assert late.alerts == ["此操作已失效，请重新发送 /request 发起。"] and not late.texts


async def test_text_at_the_review_step_is_not_a_lookup(bot: BotHarness) -> None:
    sent = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查涉枪线索")
    assert "请核对协作请求" in sent.text
    sent = await bot.send(REQUESTER, "四川 刑侦")
    assert sent.text.startswith("这一步是提交前的核对，不接收文字。")
    assert "请核对协作请求" in sent.text and "联络员" not in sent.text
    # The summary shown again is the same draft: it submits, once.
    await bot.press(REQUESTER, sent, "提交")
    assert len(await stored(bot.db)) == 1


async def test_an_unknown_mechanism_word_is_refused_with_the_list(bot: BotHarness) -> None:
    sent = await bot.send(REQUESTER, "/request 四川 治安管控 特急 协查涉枪线索")
    assert ("没有找到协作机制「治安管控」，它不会被当作主题。可选的协作机制：情报信息互享、"
            "重大行动互援、执法办案互助、治安管控互动、警务保障互补。") in sent.text
    assert "协作机制" in sent.text and "请核对" not in sent.text
    sent = await bot.press(REQUESTER, sent, "治安管控互动")
    assert "请核对协作请求" in sent.text
    await bot.press(REQUESTER, sent, "提交")
    [request] = await stored(bot.db)
    assert request.subject == "协查涉枪线索"
    # A word before the urgency that names no mechanism at all is refused the same way.
    sent = await bot.send(REQUESTER, "/request 四川 联勤 加急 核查车辆")
    assert "没有找到协作机制「联勤」" in sent.text
    # Without a mechanism word the subject is the subject.
    sent = await bot.send(REQUESTER, "/request 四川 特急 协查涉枪线索")
    assert "没有找到协作机制" not in sent.text


async def test_the_short_number_of_requests_is_the_request(bot: BotHarness) -> None:
    sent = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查涉枪线索")
    await bot.press(REQUESTER, sent, "提交")
    listing = await bot.send(REQUESTER, "/requests")
    assert "000001" in [label for label, _ in listing.buttons()]
    by_button = await bot.press(REQUESTER, listing, "000001")
    for typed in ("/request 000001", "/request 1", "/request ０００００１"):
        shown = await bot.send(REQUESTER, typed)
        assert shown.text == by_button.text, typed
    assert "没有找到协作请求 XZ-2026-000002" in (await bot.send(REQUESTER, "/request 2")).text
