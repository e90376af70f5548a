"""Acting on requests through the emulator, on both databases: accept, decline,
transfer, complete, withdraw; forged, foreign, stale and concurrent presses; viewing
and listing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from core.enums import RequestStatus
from storage import requests as store
from storage.db import Database
from storage.models import AssistanceRequest
from storage.models import AuditEntry
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent

REQUESTER, DUTY, DUTY2, CQ_LIAISON, COORDINATOR, OUTSIDER = 101, 201, 202, 301, 401, 501


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def people(emulator: BotApiEmulator) -> None:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [DUTY, DUTY2, OUTSIDER])})


@pytest.fixture
async def bot(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock
) -> AsyncIterator[BotHarness]:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as harness:
        yield harness


async def new_request(bot: BotHarness, target: str = "四川") -> ApiCall:
    """Submit a request in one go and deliver it; returns the message in the duty room
    (or the first private message when the unit has no room)."""
    sent = await bot.send(REQUESTER, f"/request {target} 治安管控互动 特急 协查涉枪线索")
    await bot.press(REQUESTER, sent, "提交")
    delivered = await bot.deliver()
    return next(c for c in delivered.messages if c.params.get("reply_markup"))


def in_chat(sent: Sent, chat_id: int) -> list[ApiCall]:
    return [c for c in sent.messages if c.chat_id == chat_id]


async def answer(bot: BotHarness, user_id: int, chat_id: int, prompt: ApiCall,
                 text: str) -> Sent:
    """Reply to the bot's ForceReply prompt, as Telegram delivers it in a group."""
    return await bot.feed(bot.emulator.make_message_update(
        user_id, chat_id, text, reply_to=prompt.message_ref))


def prompt_of(sent: Sent) -> ApiCall:
    found = [c for c in sent.messages if (c.params.get("reply_markup") or {}).get("force_reply")]
    assert found, sent.text
    return found[-1]


async def the_request(db: Database, number: str = "XZ-2026-000001") -> AssistanceRequest:
    async with db.session() as session:
        request = await store.load_request(session, number=number)
        assert request is not None
        return request


async def test_accept_edits_the_card_and_tells_the_requester(bot: BotHarness) -> None:
    card = await new_request(bot)
    assert card.chat_id == SICHUAN_ROOM and "XZ-2026-000001" in card.params["text"]
    sent = await bot.press(DUTY, card, "接收")
    assert sent.alerts == ["已接收 XZ-2026-000001。"]
    delivered = await bot.deliver()
    [edit] = [c for c in delivered.calls if c.method == "editMessageText"]
    assert edit.chat_id == SICHUAN_ROOM and edit.params["message_id"] == card.message_ref[1]
    assert "已接收（李静，12-01 09:00）" in edit.params["text"]
    assert [label for label, _ in Sent([edit]).buttons()] == ["↪️ 转办", "🏁 完成"]
    [notice] = in_chat(delivered, REQUESTER)
    assert "有新进展" in notice.params["text"] and "已接收" in notice.params["text"]
    request = await the_request(bot.db)
    assert request.status is RequestStatus.accepted
    assert [e.action for e in request.events] == ["created", "routed", "accept"]


async def test_decline_asks_for_a_reason_in_the_group(bot: BotHarness) -> None:
    card = await new_request(bot)
    sent = await bot.press(DUTY, card, "拒绝")
    prompt = prompt_of(sent)
    assert prompt.chat_id == SICHUAN_ROOM and "拒绝" in prompt.params["text"]
    assert 'tg://user?id=201' in prompt.params["text"]
    assert (await the_request(bot.db)).status is RequestStatus.open  # nothing yet
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "长" * 1001)
    assert "内容过长" in sent.text
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "非本单位管辖，请联系重庆")
    assert "已拒绝 XZ-2026-000001" in sent.text
    delivered = await bot.deliver()
    [edit] = [c for c in delivered.calls if c.method == "editMessageText"]
    assert "已拒绝" in edit.params["text"] and "理由：非本单位管辖" in edit.params["text"]
    assert "reply_markup" not in edit.params  # final: no buttons left
    [notice] = in_chat(delivered, REQUESTER)
    assert "非本单位管辖" in notice.params["text"]
    request = await the_request(bot.db)
    assert (request.status, request.events[-1].note) == (
        RequestStatus.declined, "非本单位管辖，请联系重庆")


async def test_only_a_reply_to_the_prompt_is_the_reason_and_only_for_a_while(
    bot: BotHarness, clock: FakeClock
) -> None:
    card = await new_request(bot)
    prompt = prompt_of(await bot.press(DUTY, card, "拒绝"))
    # Other talk in the room is not the answer.
    await bot.send(DUTY, "大家好，今晚谁值班？", chat_id=SICHUAN_ROOM)
    assert (await the_request(bot.db)).status is RequestStatus.open
    # An answer after half an hour is not taken either: the press has expired.
    clock.advance(minutes=31)
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "非本单位管辖")
    assert "已拒绝" not in sent.text
    assert (await the_request(bot.db)).status is RequestStatus.open
    prompt = prompt_of(await bot.press(DUTY, card, "拒绝"))
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "非本单位管辖")
    assert "已拒绝 XZ-2026-000001" in sent.text


async def test_a_restart_between_the_button_and_the_reason_loses_nothing(
    emulator: BotApiEmulator, database_url: str, directory: Directory, clock: FakeClock,
) -> None:
    people(emulator)
    async with BotHarness(emulator, database_url, now=clock) as bot:
        card = await new_request(bot)
        prompt = prompt_of(await bot.press(DUTY, card, "完成"))
    async with BotHarness(emulator, database_url, now=clock) as again:
        sent = await answer(again, DUTY, SICHUAN_ROOM, prompt, "已处理完毕")
        assert "已完成 XZ-2026-000001" in sent.text
        assert (await the_request(again.db)).result == "已处理完毕"


async def test_help_lists_the_request_commands(bot: BotHarness) -> None:
    officer = (await bot.send(REQUESTER, "/help")).text
    assert "/request" in officer and "/requests" in officer and "/export" in officer
    assert "/stats" not in officer
    assert "/stats" in (await bot.send(COORDINATOR, "/help")).text


async def test_transfer_to_another_unit(bot: BotHarness) -> None:
    card = await new_request(bot)
    prompt = prompt_of(await bot.press(DUTY, card, "转办"))
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "火星")
    assert "没有找到单位「火星」" in sent.text
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "云南")
    assert "不能转办给请求的发起单位" in sent.text
    sent = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "重庆")
    assert "已将 XZ-2026-000001 转办至 重庆市公安局（新编号 XZ-2026-000002）" in sent.text
    delivered = await bot.deliver()
    [edit] = [c for c in delivered.calls if c.method == "editMessageText"]
    assert "已转办至 重庆市公安局" in edit.params["text"] and "XZ-2026-000002" in edit.params[
        "text"]
    [liaison] = in_chat(delivered, CQ_LIAISON)
    assert "XZ-2026-000002" in liaison.params["text"] and "联络员" in liaison.params["text"]
    [notice] = in_chat(delivered, REQUESTER)
    assert "XZ-2026-000002" in notice.params["text"]
    # The liaison of 重庆 is a member: they accept from their private chat.
    sent = await bot.press(CQ_LIAISON, liaison, "接收")
    assert sent.alerts == ["已接收 XZ-2026-000002。"]
    assert any("已接收" in c.params.get("text", "") for c in sent.messages)  # their copy
    assert (await the_request(bot.db, "XZ-2026-000002")).status is RequestStatus.accepted


async def test_complete_after_accept_with_the_new_buttons(bot: BotHarness) -> None:
    card = await new_request(bot)
    await bot.press(DUTY, card, "接收")
    [edit] = [c for c in (await bot.deliver()).calls if c.method == "editMessageText"]
    prompt = prompt_of(await bot.press(DUTY2, edit, "完成"))
    sent = await answer(bot, DUTY2, SICHUAN_ROOM, prompt, "已查明：猎枪在成都被找到。")
    assert "已完成 XZ-2026-000001" in sent.text
    request = await the_request(bot.db)
    assert request.status is RequestStatus.completed
    assert request.result == "已查明：猎枪在成都被找到。"
    assert request.events[-1].actor.full_name == "王雅琴"


async def test_forged_foreign_and_stale_buttons_change_nothing(bot: BotHarness) -> None:
    card = await new_request(bot)
    request = await the_request(bot.db)
    for data, alert in (
        (f"rq:acc:{request.id + 50}:1", "没有找到对应的协作请求"),
        ("rq:acc:abc:1", "按钮无效"),
        (f"rq:acc:{request.id}:1:x", "按钮无效"),
        (f"rq:zap:{request.id}:1", "按钮无效"),
    ):
        sent = await bot.press_data(DUTY, card, data)
        assert any(alert in a for a in sent.alerts), (data, sent.alerts)
    sent = await bot.press(OUTSIDER, card, "接收")
    assert sent.alerts == ["此请求不属于您的单位，您无权处理。"]
    sent = await bot.press_data(DUTY, card, f"rq:acc:{request.id}:7")
    assert "已过期" in sent.alerts[0]
    unchanged = await the_request(bot.db)
    assert (unchanged.status, unchanged.version) == (RequestStatus.open, 1)
    async with bot.db.session() as session:
        refused = (await session.execute(select(AuditEntry).where(
            AuditEntry.action == "request.press_refused"))).scalars().all()
    assert len(refused) == 3  # the ones that parsed: unknown id, foreign, stale
    # After an accept, the old button says who was first.
    await bot.press(DUTY, card, "接收")
    sent = await bot.press(DUTY2, card, "接收")  # 王雅琴 reads Traditional Chinese
    assert sent.alerts == ["此請求已由 李静 於 12-01 09:00 處理，目前狀態：已接收。無需重複操作。"]


async def test_two_people_pressing_at_once_make_one_change(bot: BotHarness) -> None:
    card = await new_request(bot)
    before = len(bot.emulator.calls)
    await asyncio.gather(bot.press(DUTY, card, "接收"), bot.press(COORDINATOR, card, "接收"))
    alerts = sorted(c.params.get("text", "") for c in bot.emulator.calls[before:]
                    if c.method == "answerCallbackQuery")
    assert len(alerts) == 2
    # One accepted (李静, or the coordinator, who reads English); the other is told who.
    done = [a for a in alerts if a in ("已接收 XZ-2026-000001。", "Accepted XZ-2026-000001.")]
    told = [a for a in alerts if "当前状态：已接收" in a or "it is now: Accepted" in a]
    assert len(done) == len(told) == 1
    request = await the_request(bot.db)
    assert request.version == 2 and [e.action for e in request.events].count("accept") == 1


async def test_requester_views_and_withdraws(bot: BotHarness) -> None:
    await new_request(bot)
    sent = await bot.send(REQUESTER, "/request xz-2026-1")
    assert "XZ-2026-000001" in sent.text and "处理记录" in sent.text
    assert "杨丽华 发起" in sent.text and "已送达值班室" in sent.text
    assert [label for label, _ in sent.buttons()] == ["🚫 撤回"]
    prompt = prompt_of(await bot.press(REQUESTER, sent, "撤回"))
    sent = await answer(bot, REQUESTER, REQUESTER, prompt, "线索已核实，无需协助")
    assert "已撤回 XZ-2026-000001" in sent.text
    delivered = await bot.deliver()
    [edit] = [c for c in delivered.calls if c.method == "editMessageText"]
    assert edit.chat_id == SICHUAN_ROOM and "已撤回" in edit.params["text"]
    assert not in_chat(delivered, REQUESTER)  # the person acting is answered directly


async def test_only_the_two_units_and_coordinators_may_view(bot: BotHarness) -> None:
    await new_request(bot)
    sent = await bot.send(OUTSIDER, "/request XZ-2026-000001")
    assert "无权查看" in sent.text and "协查涉枪线索" not in sent.text
    sent = await bot.send(COORDINATOR, "/request XZ-2026-000001")
    assert "协查涉枪线索" in sent.text  # English reader: catalogue in English
    assert "History" in sent.text
    sent = await bot.send(DUTY, "/request XZ-2026-000001", chat_id=SICHUAN_ROOM)
    assert "协查涉枪线索" in sent.text and "接收" in next(b for b, _ in sent.buttons())
    sent = await bot.send(DUTY, "/request XZ-2026-000099")
    assert "没有找到协作请求 XZ-2026-000099" in sent.text


async def test_lists_page_and_open_requests(bot: BotHarness) -> None:
    for index in range(10):
        sent = await bot.send(REQUESTER, f"/request 四川 治安管控互动 平急 线索{index}")
        await bot.press(REQUESTER, sent, "提交")
    sent = await bot.send(DUTY, "/requests")
    assert "共 10 件，第 1/2 页" in sent.text and "线索9" in sent.text and "线索0" not in sent.text
    sent = await bot.press(DUTY, sent, "下一页")
    assert "第 2/2 页" in sent.text and "线索0" in sent.text
    sent = await bot.press(DUTY, sent, "000001")
    assert "线索0" in sent.text and "处理记录" in sent.text
    sent = await bot.send(DUTY, "/requests 特急")
    assert "没有符合条件的协作请求" in sent.text
    sent = await bot.send(REQUESTER, "/requests 收")
    assert "没有符合条件" in sent.text
    sent = await bot.send(OUTSIDER, "/requests")
    assert "没有符合条件" in sent.text
    sent = await bot.send(DUTY, "/requests 火星")
    assert "没有找到单位「火星」" in sent.text


async def test_without_a_duty_room_the_liaison_is_told_and_coordinators_see_it_until_acted(
    bot: BotHarness,
) -> None:
    sent = await bot.send(REQUESTER, "/request 重庆 治安管控互动 特急 协查涉枪线索")
    done = await bot.press(REQUESTER, sent, "提交")
    # The requester is told at once, with the number of liaisons reached.
    assert "XZ-2026-000001" in done.text and "重庆市公安局尚未登记值班室" in done.text
    assert "联络员 1 人" in done.text
    delivered = await bot.deliver()
    # Only 刘洋 has a linked Telegram account (陈晨 has none): he alone is told, privately.
    assert {c.chat_id for c in delivered.messages} == {CQ_LIAISON}
    [liaison] = in_chat(delivered, CQ_LIAISON)
    assert "尚未登记值班室" in liaison.params["text"]
    assert "XZ-2026-000001" in liaison.params["text"]
    assert next(label for label, _ in Sent([liaison]).buttons()) == "✅ 接收"
    # Coordinators (this one reads English) see it as undelivered, the others do not.
    listing = await bot.send(COORDINATOR, "/requests undelivered")
    assert "XZ-2026-000001" in listing.text and "undelivered" in listing.text
    shown = await bot.send(COORDINATOR, "/request XZ-2026-000001")
    assert "Not delivered" in shown.text
    # Once the liaison acts it is no longer undelivered.
    pressed = await bot.press(CQ_LIAISON, liaison, "接收")
    assert pressed.alerts == ["已接收 XZ-2026-000001。"]
    listing = await bot.send(COORDINATOR, "/requests undelivered")
    assert "XZ-2026-000001" not in listing.text
    request = await the_request(bot.db)
    assert [e.action for e in request.events] == ["created", "undelivered", "accept"]
    assert request.events[-1].actor.full_name == "刘洋"


# --------------------------------------------------------------------------- dead prompts

CANCELLED_TEXT = "您已取消「{what}」，这个按钮不再起作用，什么也没有改变。"


async def test_a_cancelled_withdrawal_prompt_takes_no_reason(bot: BotHarness) -> None:
    await new_request(bot)
    sent = await bot.send(REQUESTER, "/request XZ-2026-000001")
    prompt = prompt_of(await bot.press(REQUESTER, sent, "撤回"))
    assert "已取消" in (await bot.send(REQUESTER, "/cancel")).text
    late = await answer(bot, REQUESTER, REQUESTER, prompt, "四川 刑侦")
    assert late.text == CANCELLED_TEXT.format(what="撤回协作请求")
    assert (await the_request(bot.db)).status is RequestStatus.open


async def test_a_cancelled_decline_prompt_takes_no_reason(bot: BotHarness) -> None:
    card = await new_request(bot)
    prompt = prompt_of(await bot.press(DUTY, card, "拒绝"))
    await bot.send(DUTY, "/cancel", chat_id=SICHUAN_ROOM)
    late = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "非本单位管辖")
    assert late.text == CANCELLED_TEXT.format(what="拒绝协作请求")
    assert (await the_request(bot.db)).status is RequestStatus.open


async def test_a_replaced_complete_prompt_takes_no_result(bot: BotHarness) -> None:
    card = await new_request(bot)
    first = prompt_of(await bot.press(DUTY, card, "完成"))
    second = prompt_of(await bot.press(DUTY, card, "完成"))
    late = await answer(bot, DUTY, SICHUAN_ROOM, first, "已处理完毕")
    assert late.text == "这个确认已被更新的一条取代（完成协作请求），请使用最新的那条消息。"
    assert (await the_request(bot.db)).status is RequestStatus.open
    sent = await answer(bot, DUTY, SICHUAN_ROOM, second, "已处理完毕")
    assert "已完成 XZ-2026-000001" in sent.text
    again = await answer(bot, DUTY, SICHUAN_ROOM, second, "再说一次")
    assert again.text == "这个按钮已经用过（完成协作请求），不会再执行一次。"


async def test_a_cancelled_transfer_choice_moves_nothing(bot: BotHarness) -> None:
    card = await new_request(bot)
    prompt = prompt_of(await bot.press(DUTY, card, "转办"))
    choice = await answer(bot, DUTY, SICHUAN_ROOM, prompt, "公安")
    assert "重庆市公安局" in [label for label, _ in choice.buttons()]
    await bot.press(DUTY, choice, "取消")
    # A new transfer prompt is waiting: the old choice must not answer it.
    prompt_of(await bot.press(DUTY, card, "转办"))
    late = await bot.press(DUTY, choice, "重庆市公安局")
    assert late.alerts == [CANCELLED_TEXT.format(what="转办协作请求")]
    request = await the_request(bot.db)
    assert request.status is RequestStatus.open and request.transferred_to_id is None


# --------------------------------------------------------------------------- units without a room


async def test_withdrawing_a_request_to_a_unit_without_a_room_says_who_was_told(
    hant_desk: BotHarness,
) -> None:
    from tests.conftest import HANT_DUTY_OFFICER

    sent = await hant_desk.send(HANT_DUTY_OFFICER, "/request 河北 情報資訊互享 特急 協查涉槍線索")
    created = await hant_desk.press(HANT_DUTY_OFFICER, sent, "提交")
    number = next(word for word in created.text.replace("<code>", " ").replace(
        "</code>", " ").split() if word.startswith("XZ-"))
    shown = await hant_desk.send(HANT_DUTY_OFFICER, f"/request {number}")
    prompt = prompt_of(await hant_desk.press(HANT_DUTY_OFFICER, shown, "撤回"))
    done = await answer(hant_desk, HANT_DUTY_OFFICER, HANT_DUTY_OFFICER, prompt, "線索已核實")
    assert done.text == (f"已撤回 {number}；河北省公安廳沒有登記值班室，也沒有可通知的聯絡員，"
                         "對方未收到通知。")
    assert "值班室" in done.text and "已通知對方值班室" not in done.text


async def test_withdrawing_a_request_a_liaison_holds_updates_their_copy(bot: BotHarness) -> None:
    liaison = await new_request(bot, "重庆")
    assert liaison.chat_id == CQ_LIAISON
    shown = await bot.send(REQUESTER, "/request XZ-2026-000001")
    prompt = prompt_of(await bot.press(REQUESTER, shown, "撤回"))
    done = await answer(bot, REQUESTER, REQUESTER, prompt, "线索已核实")
    assert done.text == ("已撤回 XZ-2026-000001；重庆市公安局没有登记值班室，"
                         "已通知收到此请求的 1 名联络员。")
    [edit] = [c for c in (await bot.deliver()).calls if c.method == "editMessageText"]
    assert edit.chat_id == CQ_LIAISON and "已撤回" in edit.params["text"]
    assert "reply_markup" not in edit.params


async def test_other_replies_in_the_room_are_left_alone(bot: BotHarness) -> None:
    card = await new_request(bot)
    # A member who is not registered replies to the card: the bot says nothing.
    sent = await answer(bot, 999999, SICHUAN_ROOM, card, "收到")
    assert sent.messages == []
