"""Telegram's newer buttons through the real Application, on both databases: request,
notice and confirmation buttons coloured by what they do (also after the outbox stored
and sent them), copy buttons for the phone numbers on contact cards and duty lines, and
the default command menus per scope and language, as the emulator recorded them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from storage import outbox
from storage.db import Database
from tests.conftest import ADMIN_ID
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_OFFICER
from tests.conftest import SAMPLE_SICHUAN_ROOM
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import add_people
from tests.test_requests_support import make_directory
from tools.clock import FakeClock
from tools.testing import BotHarness
from tools.testing import Sent
from views.buttons import Button
from views.buttons import Style
from views.buttons import keyboard
from views.contacts import COPY_PHONES_MAX

REQUESTER, DUTY, ADMIN = 101, 201, 901  # of tests.test_requests_support
SAMPLE_ENGLISH = 910000011  # 孙浩然, officer in 江苏, English


def keys(call: ApiCall | Sent) -> list[dict[str, Any]]:
    """The inline buttons of a message as Telegram got them, row after row."""
    if isinstance(call, Sent):
        call = [c for c in call.messages if c.params.get("reply_markup")][-1]
    return [button for row in (call.params.get("reply_markup") or {}).get(
        "inline_keyboard", []) for button in row]


def styles(call: ApiCall | Sent) -> dict[str, str | None]:
    """Label → style of the buttons that send the bot something."""
    return {b["text"]: b.get("style") for b in keys(call) if "callback_data" in b}


def copies(call: ApiCall | Sent) -> list[tuple[str, str]]:
    """(label, text copied) of the copy buttons."""
    return [(b["text"], b["copy_text"]["text"]) for b in keys(call) if "copy_text" in b]


# --------------------------------------------------------------------------- colours


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


@pytest.fixture
async def desk_of_requests(emulator: BotApiEmulator, database_url: str,
                           directory: Directory) -> AsyncIterator[BotHarness]:
    add_people(emulator, {SICHUAN_ROOM: ("四川省厅值班室", [DUTY])})
    async with BotHarness(emulator, database_url, now=FakeClock(T0),
                          notice_status_edit_seconds=0) as harness:
        yield harness


async def test_request_buttons_are_coloured_by_what_they_do(
        desk_of_requests: BotHarness) -> None:
    bot = desk_of_requests
    summary = await bot.send(REQUESTER, "/request 四川 治安管控互动 特急 协查涉枪线索")
    assert styles(summary) == {"✅ 提交": "success", "✖️ 取消": None,
                               "✏️ 补充说明": None, "⏰ 答复期限": None}
    await bot.press(REQUESTER, summary, "提交")
    card = next(c for c in (await bot.deliver()).messages if c.chat_id == SICHUAN_ROOM)
    assert styles(card) == {"✅ 接收": "success", "⛔ 拒绝": "danger", "↪️ 转办": None,
                            "🏁 完成": "success"}
    # The card shows what Telegram kept, colours included.
    shown = bot.emulator.message(*card.message_ref)
    assert shown is not None and shown["reply_markup"] == card.params["reply_markup"]
    await bot.press(DUTY, card, "接收")
    # The card's edit went through the outbox (stored as JSON) and the delivery worker.
    [edit] = [c for c in (await bot.deliver()).calls if c.method == "editMessageText"]
    assert styles(edit) == {"↪️ 转办": None, "🏁 完成": "success"}
    # The requester's own view offers the withdrawal, in red.
    view = await bot.send(REQUESTER, "/request XZ-2026-000001")
    assert styles(view) == {"🚫 撤回": "danger"}


async def test_the_notice_is_sent_and_acknowledged_with_green_buttons(
        desk_of_requests: BotHarness) -> None:
    bot = desk_of_requests
    preview = await bot.send(ADMIN, "/notice 预警 紧急 全部 今晚至明晨有强降雨，请加强备勤")
    assert styles(preview)["📤 发送"] == "success"
    await bot.press(ADMIN, preview, "发送")
    [room_message] = [c for c in (await bot.deliver()).messages if c.chat_id == SICHUAN_ROOM]
    assert [(b["text"], b.get("style")) for b in keys(room_message)] == [("✅ 收到", "success")]


async def test_outbox_rows_keep_colours_and_copy_buttons(bot: BotHarness) -> None:
    """An outbox row's keyboard is stored as JSON and sent as it was built."""
    markup = keyboard([[Button("✅ 收到", "ntk:1:2:1", Style.success)],
                       [Button("📋 复制 值班室 028-5550-0100", copy="028-5550-0100")]])
    async with bot.db.session() as session:
        await outbox.enqueue(session, chat_id=ADMIN_ID, kind="test", text="通报",
                             payload={"reply_markup": markup}, dedup_key="buttons:1")
    [sent] = (await bot.deliver()).messages
    assert sent.ok and sent.params["reply_markup"] == markup
    shown = bot.emulator.message(*sent.message_ref)
    assert shown is not None and shown["reply_markup"] == markup


# --------------------------------------------------------------------------- copy buttons


async def test_each_number_on_a_card_is_copied_in_one_tap(desk: BotHarness) -> None:
    sent = await desk.send(SAMPLE_ADMIN, "/contact 四川 刑侦")
    assert copies(sent) == [
        ("📋 复制 张伟 +86 100 0000 0148", "+86 100 0000 0148"),
        ("📋 复制 张伟 028-5550-0131", "028-5550-0131"),
        ("📋 复制 罗晓燕 +86 100 0000 0149", "+86 100 0000 0149"),
        ("📋 复制 罗晓燕 028-5550-0132", "028-5550-0132"),
        # The unit's duty line, once for both cards: who is on duty, the room.
        ("📋 复制 邓建平 +86 100 0000 0224", "+86 100 0000 0224"),
        ("📋 复制 四川省公安厅指挥中心值班室 028-5550-0100", "028-5550-0100"),
    ]
    assert all(number in sent.text for _, number in copies(sent))
    rows = sent.messages[-1].params["reply_markup"]["inline_keyboard"]
    assert all(len(row) == 1 for row in rows[:6])  # one a row: names and numbers whole
    assert "callback_data" in rows[6][0]  # the page's own buttons come after them


async def test_a_full_page_offers_its_cards_numbers_and_keeps_its_paging(
        desk: BotHarness) -> None:
    first = await desk.send(SAMPLE_ADMIN, "/contact 四川")
    offered = copies(first)
    assert len(offered) == COPY_PHONES_MAX  # five cards of two numbers each
    assert all(number in first.text for _, number in offered)
    assert "下一页 ▶" in styles(first)
    second = await desk.press(SAMPLE_ADMIN, first, "下一页")
    assert copies(second) and not set(copies(second)) & set(offered)


async def test_copy_buttons_speak_the_readers_language(desk: BotHarness) -> None:
    hant = await desk.send(SAMPLE_OFFICER, "/contact 四川 刑偵")
    assert copies(hant)[0] == ("📋 複製 张伟 +86 100 0000 0148", "+86 100 0000 0148")
    english = await desk.send(SAMPLE_ENGLISH, "/contact Sichuan CID")
    assert copies(english)[0] == ("📋 Copy 张伟: +86 100 0000 0148", "+86 100 0000 0148")


async def test_lookups_oncall_and_inline_cards_offer_their_numbers(desk: BotHarness) -> None:
    plain = await desk.send(SAMPLE_ADMIN, "四川 刑侦")
    assert copies(plain)[0] == ("📋 复制 张伟 +86 100 0000 0148", "+86 100 0000 0148")
    assert "👤 只看联系人" in styles(plain)  # the lookup's own buttons stay
    oncall = await desk.send(SAMPLE_ADMIN, "/oncall 四川", chat_id=SAMPLE_SICHUAN_ROOM)
    assert copies(oncall) == [
        ("📋 复制 邓建平 +86 100 0000 0224", "+86 100 0000 0224"),
        ("📋 复制 四川省公安厅指挥中心值班室 028-5550-0100", "028-5550-0100")]
    await desk.feed(desk.emulator.make_inline_query_update(SAMPLE_ADMIN, "四川 刑侦"))
    answer = desk.emulator.calls[-1]
    assert answer.method == "answerInlineQuery" and answer.ok
    card = next(r for r in answer.params["results"] if r["title"].startswith("张伟"))
    assert [b["copy_text"]["text"] for row in card["reply_markup"]["inline_keyboard"]
            for b in row][:2] == ["+86 100 0000 0148", "028-5550-0131"]


# --------------------------------------------------------------------------- command menus


async def test_default_menus_per_scope_and_language(desk: BotHarness) -> None:
    emulator = desk.emulator

    def names(scope: str, language: str = "") -> set[str]:
        return {c["command"] for c in emulator.commands_for({"type": scope}, language)}

    private, groups, admins = (names("all_private_chats"), names("all_group_chats"),
                               names("all_chat_administrators"))
    assert {"contact", "request", "lang", "export"} <= private
    assert not {"register_room", "notice", "invite"} & private
    assert {"contact", "oncall", "roster"} <= groups
    assert not {"lang", "export", "register_room", "missed"} & groups
    # A duty room's administrators register and run it: a coordinator's group menu.
    assert admins == groups | {"register_room", "missed"}
    for scope in ("all_private_chats", "all_group_chats", "all_chat_administrators"):
        assert names(scope, "en") == names(scope)
    contact = {language: next(c["description"] for c in emulator.commands_for(
        {"type": "all_chat_administrators"}, language) if c["command"] == "contact")
        for language in ("", "en")}
    assert contact == {"": "查询联络员（单位、警种、姓名或电话）",
                       "en": "Find a liaison (unit, branch, name or phone)"}
    menus = [c for c in emulator.calls if c.method == "setMyCommands"]
    assert len(menus) == 6 and all(c.ok for c in menus)
    # Telegram takes two-letter codes: no zh-hant menu for a whole scope.
    assert {c.params.get("language_code", "") for c in menus} == {"", "en"}


async def test_a_traditional_reader_gets_a_menu_of_their_own(desk: BotHarness) -> None:
    choose = await desk.send(SAMPLE_ADMIN, "/lang")
    await desk.press(SAMPLE_ADMIN, choose, "繁體中文")
    mine = desk.emulator.commands_for({"type": "chat", "chat_id": SAMPLE_ADMIN})
    contact = next(c for c in mine if c["command"] == "contact")
    assert contact["description"] == "查詢聯絡員（單位、警種、姓名或電話）"
    assert {"invite", "deactivate"} <= {c["command"] for c in mine}  # an administrator's
