"""The Bot API emulator behaves like Telegram for PTB: checked against the Bot API 10.0 spec,
driven through PTB's real HTTP stack (httpx, and the bot's aiohttp backend where a Bot is
used) and, where it matters, a real Application."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from telegram import Bot
from telegram import BotCommand
from telegram import BotCommandScopeAllChatAdministrators
from telegram import BotCommandScopeAllGroupChats
from telegram import BotCommandScopeChat
from telegram import CopyTextButton
from telegram import InlineKeyboardButton
from telegram import InlineKeyboardMarkup
from telegram import InlineQueryResultArticle
from telegram import InputMediaPhoto
from telegram import InputTextMessageContent
from telegram import MenuButtonCommands
from telegram import Update
from telegram.constants import ChatAction
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.error import Conflict
from telegram.error import Forbidden
from telegram.error import NetworkError
from telegram.error import RetryAfter
from telegram.error import TimedOut
from telegram.ext import Application
from telegram.ext import ApplicationBuilder
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import ContextTypes
from telegram.ext import InlineQueryHandler
from telegram.request import BaseRequest
from telegram.request import HTTPXRequest

from bot.bot_api import AiohttpRequest
from bot.emulator import BotApiEmulator
from bot.emulator import load_spec
from tests.cluster import eventually

pytestmark = pytest.mark.asyncio

TOKEN = "123:TEST"
USER, OTHER = 5001, 5002
GROUP = -1001000000001
Context = ContextTypes.DEFAULT_TYPE


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator() as emulator:
        emulator.add_user(USER, "李明", username="liming")
        emulator.add_user(OTHER, "John", language_code="en")
        emulator.add_group(GROUP, "四川省厅指挥中心值班室", members=[USER, OTHER])
        yield emulator


def request_of(backend: str, **timeouts: float) -> BaseRequest:
    """PTB's default networking (httpx) or the bot's own (aiohttp, bot/bot_api.py)."""
    return HTTPXRequest(**timeouts) if backend == "httpx" else AiohttpRequest(**timeouts)


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def bot(emu: BotApiEmulator, backend: str) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=emu.base_url, base_file_url=emu.base_file_url,
                   request=request_of(backend)) as tg:
        yield tg


def application(emu: BotApiEmulator) -> Application:
    return (ApplicationBuilder().token(TOKEN).base_url(emu.base_url)
            .base_file_url(emu.base_file_url).build())


async def raw(emu: BotApiEmulator, method: str, *, http: str = "POST",
              **params: Any) -> httpx.Response:
    """A call without PTB, form-encoded the way PTB encodes it."""
    form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    async with httpx.AsyncClient() as client:
        if http == "GET":
            return await client.get(f"{emu.base_url}{TOKEN}/{method}", params=form)
        return await client.post(f"{emu.base_url}{TOKEN}/{method}", data=form)


def seconds(error: RetryAfter) -> float:
    """retry_after is an int or a timedelta, depending on PTB_TIMEDELTA."""
    value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else value


def keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row]
                                 for row in rows])


# --------------------------------------------------------------------------- spec


async def test_unknown_method_is_404_and_method_names_ignore_case(emu: BotApiEmulator) -> None:
    response = await raw(emu, "sendTelepathy", chat_id=USER)
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert (await raw(emu, "SENDMESSAGE", chat_id=USER, text="x")).json()["ok"]
    assert emu.calls[-1].method == "sendMessage"


async def test_missing_unknown_and_malformed_parameters_are_400(emu: BotApiEmulator) -> None:
    missing = await raw(emu, "sendMessage", chat_id=USER)
    assert missing.status_code == 400
    assert missing.json() == {"ok": False, "error_code": 400,
                              "description": "Bad Request: parameter text is required"}
    unknown = (await raw(emu, "sendMessage", chat_id=USER, text="x", colour="red")).json()
    assert unknown["description"] == "Bad Request: unknown parameter colour"
    bad_markup = await raw(emu, "sendMessage", chat_id=USER, text="x",
                           reply_markup={"inline_keyboard": [[{"callback_data": "a"}]]})
    assert bad_markup.status_code == 400 and "reply_markup" in bad_markup.json()["description"]
    not_a_number = await raw(emu, "deleteMessage", chat_id=USER, message_id="first")
    assert not_a_number.status_code == 400
    assert emu.sent_texts(USER) == []


async def test_parameters_are_decoded_by_their_declared_types(emu: BotApiEmulator) -> None:
    # A String stays a string even when it looks like JSON; chat_id is an integer.
    await raw(emu, "sendMessage", chat_id=str(USER), text="123")
    await raw(emu, "sendMessage", http="GET", chat_id=str(USER), text="true",
              disable_notification=True)
    async with httpx.AsyncClient() as client:  # a JSON body, as some clients send
        await client.post(f"{emu.base_url}{TOKEN}/sendMessage",
                          json={"chat_id": USER, "text": "null", "protect_content": True})
    calls = emu.calls_for(USER, ["sendMessage"])
    assert [c.params["text"] for c in calls] == ["123", "true", "null"]
    assert calls[1].params["disable_notification"] is True
    assert all(c.params["chat_id"] == USER and c.ok for c in calls)
    assert emu.sent_texts(USER) == ["123", "true", "null"]


async def test_unknown_chats_are_not_found(emu: BotApiEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-42, "nobody")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_chat_action(-42, ChatAction.TYPING)
    strict = BotApiEmulator(auto_users=False)
    async with strict, Bot(TOKEN, base_url=strict.base_url) as other:
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await other.send_message(999, "never started the bot")


async def test_results_have_their_declared_types(emu: BotApiEmulator, bot: Bot) -> None:
    """Every method the bot uses answers an object with all required fields of its type,
    and no field the type does not declare."""
    emu.set_member_status(GROUP, OTHER, "administrator")
    emu.set_member_status(GROUP, 5003, "creator")
    await bot.get_me()
    sent = await bot.send_message(GROUP, "<b>协作请求</b> 第 1 号", parse_mode=ParseMode.HTML,
                                  reply_markup=keyboard([("接收", "a:1")]))
    await bot.edit_message_text("协作请求（已接收）", chat_id=GROUP, message_id=sent.message_id,
                                reply_markup=keyboard([("完成", "d:1")]))
    await bot.edit_message_reply_markup(GROUP, sent.message_id)
    photo = await bot.send_photo(USER, photo=b"\x89PNG fake", caption="现场照片")
    await bot.edit_message_caption(USER, photo.message_id, caption="现场照片（更新）")
    document = await bot.send_document(USER, document=b"a,b\n1,2\n", filename="requests.csv")
    await bot.send_media_group(GROUP, [InputMediaPhoto(b"one"), InputMediaPhoto(b"two")])
    await bot.copy_message(GROUP, USER, document.message_id)
    await bot.forward_message(GROUP, USER, photo.message_id)
    await bot.send_chat_action(GROUP, ChatAction.TYPING)
    await bot.get_chat(GROUP)
    await bot.get_chat(USER)
    for user_id in (USER, OTHER, 5003, 5999):
        await bot.get_chat_member(GROUP, user_id)
    await bot.get_chat_administrators(GROUP)
    await bot.get_chat_member_count(GROUP)
    await bot.set_my_commands([BotCommand("help", "帮助")], language_code="en")
    await bot.get_my_commands(language_code="en")
    await bot.delete_my_commands()
    await bot.set_chat_menu_button(USER, MenuButtonCommands())
    await bot.get_chat_menu_button(USER)
    await bot.get_webhook_info()
    await bot.get_file(document.document.file_id)
    await bot.delete_message(GROUP, sent.message_id)
    await bot.send_location(USER, 30.66, 104.06)
    await bot.send_poll(USER, "今晚值班？", ["是", "否"])
    await bot.log_out()
    await bot.close()
    spec = load_spec()
    assert len({c.method for c in emu.calls}) == 27
    for call in emu.calls:
        assert call.ok, (call.method, call.error)
        returns = spec.method(call.method).returns  # type: ignore[union-attr]
        assert spec.problems(returns, call.result) == [], call.method


async def test_every_method_of_the_spec_answers_like_telegram(emu: BotApiEmulator) -> None:
    """Called with just its required parameters, each of the spec's methods either answers
    its declared type or a Telegram error — never a crash."""
    spec = load_spec()
    samples = {"chat_id": USER, "from_chat_id": USER, "user_id": OTHER, "message_id": 1,
               "url": "https://example.org/hook"}
    await raw(emu, "sendMessage", chat_id=USER, text="first")
    async with httpx.AsyncClient() as client:
        for key, method in spec.methods.items():
            if key in {"getupdates", "logout", "close"}:
                continue
            params = {name: samples.get(name, spec.default(method.fields[name].types[0]))
                      for name in method.required}
            response = await client.post(f"{emu.base_url}{TOKEN}/{method.name}", json=params)
            body = response.json()
            assert response.status_code in {200, 400, 403, 409}, (method.name, body)
            if body["ok"]:
                assert spec.problems(method.returns, body["result"]) == [], method.name
            else:
                assert body["description"].startswith(("Bad Request: ", "Forbidden: ",
                                                       "Conflict: ")), method.name


async def test_button_styles_and_copy_buttons_are_kept_on_the_message(
        emu: BotApiEmulator, bot: Bot) -> None:
    markup = InlineKeyboardMarkup([
        [InlineKeyboardButton("接收", callback_data="a:1", style="success"),
         InlineKeyboardButton("拒绝", callback_data="d:1", style="danger")],
        [InlineKeyboardButton("📋 张伟 +86 100 0000 0148",
                              copy_text=CopyTextButton("+86 100 0000 0148"))],
    ])
    sent = await bot.send_message(GROUP, "协作请求", reply_markup=markup)
    shown = emu.message(GROUP, sent.message_id)
    assert shown is not None
    [[accept, decline], [copy]] = shown["reply_markup"]["inline_keyboard"]
    assert (accept["style"], decline["style"]) == ("success", "danger")
    assert copy["copy_text"] == {"text": "+86 100 0000 0148"}
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[1][0].copy_text == CopyTextButton("+86 100 0000 0148")


@pytest.mark.parametrize(("button", "problem"), [
    ({"text": "接收", "callback_data": "a", "style": "green"},
     "style: must be one of danger, success, primary, not 'green'"),
    ({"text": "复制", "copy_text": {"text": "1" * 257}},
     "copy_text.text: 257 characters, not 1-256"),
    ({"text": "复制", "copy_text": {"text": ""}}, "copy_text.text: 0 characters, not 1-256"),
    ({"text": "复制", "copy_text": {}}, "copy_text.text: missing"),
    ({"text": "两用", "callback_data": "a", "copy_text": {"text": "1"}},
     "(has callback_data, copy_text)"),
    ({"text": "什么也不做"}, "(has none)"),
])
async def test_buttons_breaking_the_specs_rules_are_refused(
        emu: BotApiEmulator, button: dict[str, Any], problem: str) -> None:
    """The rules the spec states in prose (allowed values, lengths, one kind per button)
    are checked inside nested objects: keyboard → button → copy_text."""
    response = await raw(emu, "sendMessage", chat_id=USER, text="x",
                         reply_markup={"inline_keyboard": [[button]]})
    assert response.status_code == 400
    description = response.json()["description"]
    assert description.startswith("Bad Request: invalid reply_markup: "
                                  "reply_markup.inline_keyboard[0][0]")
    assert description.endswith(problem)
    assert emu.sent_texts(USER) == []


async def test_a_style_or_a_copy_button_refused_through_ptb(emu: BotApiEmulator,
                                                             bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"style: must be one of danger, success, primary"):
        await bot.send_message(USER, "x", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("b", callback_data="b", style="warning")]]))
    with pytest.raises(BadRequest, match=r"copy_text\.text: 300 characters"):
        await bot.send_message(USER, "x", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("b", copy_text=CopyTextButton("9" * 300))]]))
    with pytest.raises(BadRequest, match=r"exactly one of"):
        await bot.send_message(USER, "x", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("b", callback_data="b", copy_text=CopyTextButton("9"))]]))
    assert emu.sent_texts(USER) == []


async def test_the_rules_come_from_the_spec_text() -> None:
    spec = load_spec()
    assert spec.problems("BotCommandScope", {"type": "chat", "chat_id": 1}) == []
    assert [str(p) for p in spec.problems("BotCommandScope", {"type": "chat"})] == [
        "result: matches no subtype of BotCommandScope", "result.chat_id: missing"]
    assert spec.default("BotCommandScope") == {"type": "default"}
    assert spec.default("MenuButton") == {"type": "commands"}
    assert [p.rule for p in spec.problems(
        "InlineQueryResultsButton", {"text": "t", "web_app": {"url": "https://x.org"},
                                     "start_parameter": "s"})] == ["InlineQueryResultsButton"]


# --------------------------------------------------------------------------- the bot


async def test_a_command_fed_with_process_update_is_answered(emu: BotApiEmulator) -> None:
    app = application(emu)

    async def start(update: Update, context: Context) -> None:
        assert update.effective_user is not None and update.effective_message is not None
        await update.effective_message.reply_text(f"欢迎，{update.effective_user.first_name}")

    app.add_handler(CommandHandler("start", start))
    async with app:
        assert app.bot.username == "liaison_desk_bot" and app.bot.id == 7000000001
        for text in ("/start", "/start@liaison_desk_bot", "/start@other_bot"):
            update = emu.make_message_update(USER, USER if "@" not in text else GROUP, text)
            await app.process_update(Update.de_json(update, app.bot))
    assert emu.tokens == {TOKEN}
    assert emu.sent_texts(USER) == ["欢迎，李明"]
    assert emu.sent_texts(GROUP) == ["欢迎，李明"]  # not the one addressed to another bot
    mention = emu.make_message_update(USER, GROUP, "/start@liaison_desk_bot hi @liaison_desk_bot")
    assert mention["message"]["entities"] == [
        {"type": "bot_command", "offset": 0, "length": 23},
        {"type": "mention", "offset": 27, "length": 17}]


async def test_polling_receives_pushed_updates(emu: BotApiEmulator) -> None:
    app = application(emu)

    async def ping(update: Update, context: Context) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("pong")

    app.add_handler(CommandHandler("ping", ping))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        emu.push_message(USER, USER, "/ping")
        emu.push_message(OTHER, GROUP, "/ping")
        await emu.wait_for_calls(2, method="sendMessage")
        await app.updater.stop()
        await app.stop()
    assert emu.sent_texts(USER) == ["pong"] and emu.sent_texts(GROUP) == ["pong"]
    assert emu.pending_updates == 0  # confirmed with the last offset


async def test_get_updates_honours_offset_limit_and_timeout(emu: BotApiEmulator) -> None:
    first = emu.push_message(USER, USER, "a")["update_id"]
    emu.push_message(USER, USER, "b")
    emu.push_message(USER, USER, "c")
    batch = (await raw(emu, "getUpdates", limit=2)).json()["result"]
    assert [u["message"]["text"] for u in batch] == ["a", "b"]
    rest = (await raw(emu, "getUpdates", offset=first + 2)).json()["result"]
    assert [u["message"]["text"] for u in rest] == ["c"]
    started = time.monotonic()
    assert (await raw(emu, "getUpdates", offset=first + 3, timeout=1)).json()["result"] == []
    assert time.monotonic() - started >= 0.9
    waiting = asyncio.create_task(raw(emu, "getUpdates", offset=first + 3, timeout=10))
    # Pushed while the call waits (not before it arrives, which would answer at once).
    await eventually(lambda: emu.polls_waiting == 1, 10, "the long poll")
    emu.push_message(USER, USER, "d")
    started = time.monotonic()
    assert [u["message"]["text"] for u in (await waiting).json()["result"]] == ["d"]
    assert time.monotonic() - started < 1


async def test_callback_queries_carry_the_message_as_it_is_now(
        emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(GROUP, "是否接收？", reply_markup=keyboard([("接收", "ok")]))
    await bot.edit_message_text("是否接收？（第二次提醒）", chat_id=GROUP,
                                message_id=sent.message_id, reply_markup=keyboard([("接收", "ok")]))
    query = emu.make_callback_update(OTHER, (GROUP, sent.message_id), "ok")["callback_query"]
    assert query["message"]["text"] == "是否接收？（第二次提醒）"
    assert query["message"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ok"
    assert query["from"]["first_name"] == "John"
    assert await bot.answer_callback_query(query["id"], "已接收")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query["id"], "again")
    late = emu.make_callback_update(OTHER, (GROUP, sent.message_id), "ok")["callback_query"]
    emu.expire_query(late["id"])  # answered after Telegram's ~15 s
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(late["id"])
    forged = emu.make_callback_update(OTHER, (GROUP, sent.message_id), "admin:drop_all")
    assert forged["callback_query"]["data"] == "admin:drop_all"
    await bot.delete_message(GROUP, sent.message_id)
    gone = emu.make_callback_update(OTHER, (GROUP, sent.message_id), "ok")
    assert gone["callback_query"]["message"]["date"] == 0  # an InaccessibleMessage


async def test_a_button_press_through_the_application(emu: BotApiEmulator) -> None:
    app = application(emu)

    async def pressed(update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("好")
        await query.edit_message_text(f"已选择 {query.data}")

    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        sent = await app.bot.send_message(USER, "选择", reply_markup=keyboard([("是", "yes")]))
        emu.clear_calls()
        update = emu.make_callback_update(USER, (USER, sent.message_id), "yes")
        await app.process_update(Update.de_json(update, app.bot))
    assert [c.method for c in emu.calls] == ["answerCallbackQuery", "editMessageText"]
    [message] = emu.messages_in(USER)
    assert message["text"] == "已选择 yes" and "reply_markup" not in message
    assert "edit_date" in message


async def test_inline_queries_are_answered(emu: BotApiEmulator) -> None:
    app = application(emu)

    async def inline(update: Update, context: Context) -> None:
        assert update.inline_query is not None
        await update.inline_query.answer([InlineQueryResultArticle(
            "1", "四川省公安厅", InputTextMessageContent("四川省公安厅 值班电话"))], cache_time=5)

    app.add_handler(InlineQueryHandler(inline))
    async with app:
        update = emu.make_inline_query_update(USER, "四川")
        await app.process_update(Update.de_json(update, app.bot))
    [answer] = [c for c in emu.calls if c.method != "getMe"]
    assert answer.method == "answerInlineQuery" and answer.ok
    assert answer.params["results"][0]["title"] == "四川省公安厅"


async def test_edits_follow_telegram_rules(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(USER, "状态：待处理", reply_markup=keyboard([("处理", "h")]))
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("状态：待处理", chat_id=USER, message_id=sent.message_id,
                                    reply_markup=keyboard([("处理", "h")]))
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)no caption"):
        await bot.edit_message_caption(USER, sent.message_id, caption="x")
    # Without reply_markup, an edit removes the keyboard: that is a modification.
    await bot.edit_message_text("状态：待处理", chat_id=USER, message_id=sent.message_id)
    user_message = emu.make_message_update(USER, USER, "hello")["message"]
    with pytest.raises(BadRequest, match=r"(?i)can't be edited"):
        await bot.edit_message_text("x", chat_id=USER, message_id=user_message["message_id"])
    [shown] = emu.messages_in(USER)
    assert shown["text"] == "状态：待处理" and "reply_markup" not in shown
    assert [c.ok for c in emu.calls_for(USER, {"editMessageText"})] == [False, False, True, False]


async def test_html_is_parsed_and_checked_like_telegram(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(USER, "<b>值班</b> &lt;四川&gt; <a href='https://x.org'>链接</a>",
                                  parse_mode=ParseMode.HTML)
    assert sent.text == "值班 <四川> 链接"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 2), ("text_link", 8, 2)]
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(USER, "温度 < 5 度", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)Unsupported start tag"):
        await bot.send_message(USER, "第一行<br>第二行", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(USER, "长" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "x", reply_markup=keyboard([("b", "d" * 65)]))
    assert emu.sent_texts(USER) == ["值班 <四川> 链接"]


async def test_files_are_uploaded_and_downloadable(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_document(USER, document=b"a,b\n1,2\n", filename="requests.csv",
                                   caption="导出")
    assert sent.document is not None and sent.document.file_name == "requests.csv"
    assert sent.document.file_size == 8
    [call] = emu.calls_for(USER, {"sendDocument"})
    assert call.files["document"] == ("requests.csv", b"a,b\n1,2\n")
    assert call.params["document"].file_id == sent.document.file_id
    again = await bot.send_document(GROUP, sent.document.file_id)
    assert again.document is not None and again.document.file_id == sent.document.file_id
    incoming = emu.make_message_update(USER, USER, "名单", document=("roster.csv", b"x,y\n"))
    file_id = incoming["message"]["document"]["file_id"]
    telegram_file = await bot.get_file(file_id)
    assert await telegram_file.download_as_bytearray() == bytearray(b"x,y\n")
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_photo(USER, "no-such-file-id")


async def test_media_groups_copies_and_replies(emu: BotApiEmulator, bot: Bot) -> None:
    album = await bot.send_media_group(GROUP, [InputMediaPhoto(b"1", caption="现场"),
                                               InputMediaPhoto(b"2")])
    assert len({m.media_group_id for m in album}) == 1 and album[0].caption == "现场"
    question = emu.make_message_update(USER, USER, "请转交值班室")["message"]
    copied = await bot.copy_message(GROUP, USER, question["message_id"])
    reply = await bot.send_message(USER, "已转交", reply_to_message_id=question["message_id"])
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "请转交值班室"
    assert emu.message(GROUP, copied.message_id)["text"] == "请转交值班室"  # type: ignore[index]
    assert emu.sent_texts(GROUP) == ["现场", "", "请转交值班室"]
    assert [m["message_id"] for m in emu.messages_in(GROUP)] == [1, 2, 3]


async def test_members_and_the_bot_leaving_a_group(emu: BotApiEmulator, bot: Bot) -> None:
    emu.set_member_status(GROUP, OTHER, "administrator")
    assert (await bot.get_chat_member(GROUP, USER)).status == "member"
    assert (await bot.get_chat_member(GROUP, OTHER)).status == "administrator"
    assert (await bot.get_chat_member(GROUP, 777)).status == "left"
    assert [m.user.id for m in await bot.get_chat_administrators(GROUP)] == [OTHER]
    added = emu.make_my_chat_member_update(GROUP, OTHER, "administrator")
    update = Update.de_json(added, bot)
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "administrator"
    emu.make_my_chat_member_update(GROUP, OTHER, "kicked")
    with pytest.raises(Forbidden, match=r"(?i)kicked"):
        await bot.send_message(GROUP, "还在吗？")


async def test_commands_are_stored_per_scope_and_language(emu: BotApiEmulator, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("help", "帮助"), BotCommand("contact", "联络")])
    await bot.set_my_commands([BotCommand("help", "Help")], language_code="en")
    await bot.set_my_commands([BotCommand("room", "Duty room")],
                              scope=BotCommandScopeAllGroupChats(), language_code="en")
    assert [c.command for c in await bot.get_my_commands()] == ["help", "contact"]
    assert emu.commands_for(language_code="en") == [{"command": "help", "description": "Help"}]
    assert emu.commands_for({"type": "all_group_chats"}, "en")[0]["command"] == "room"
    assert emu.commands_for({"type": "all_group_chats"}) == []
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand("Help", "大写不行")])
    with pytest.raises(BadRequest, match=r"(?i)LANGUAGE_CODE_INVALID"):
        await bot.set_my_commands([BotCommand("help", "帮助")], language_code="zh-hans")
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_DESCRIPTION_INVALID"):
        await bot.set_my_commands([BotCommand("help", "长" * 257)])


async def test_menus_per_scope_and_an_unknown_scope(emu: BotApiEmulator, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("register_room", "登记值班室")],
                              scope=BotCommandScopeAllChatAdministrators())
    await bot.set_my_commands([BotCommand("help", "說明")], scope=BotCommandScopeChat(USER))
    assert emu.commands_for({"type": "all_chat_administrators"})[0]["command"] == \
        "register_room"
    assert emu.commands_for({"type": "chat", "chat_id": USER}) == [
        {"command": "help", "description": "說明"}]
    for scope in ({"type": "all_duty_rooms"}, {"type": "chat"}, {"chat_id": USER}):
        response = await raw(emu, "setMyCommands", commands=[{"command": "help",
                                                              "description": "帮助"}],
                             scope=scope)
        assert response.status_code == 400, scope
        assert response.json()["description"].startswith(
            "Bad Request: invalid scope: scope: matches no subtype of BotCommandScope")
    assert emu.commands_for({"type": "all_duty_rooms"}) == []


# --------------------------------------------------------------------------- faults


async def test_faults_surface_as_ptb_errors_and_deliver_nothing(
        emu: BotApiEmulator, bot: Bot) -> None:
    emu.faults.fail_next(1, "429", retry_after=7)
    with pytest.raises(RetryAfter) as retry:
        await bot.send_message(USER, "a")
    assert seconds(retry.value) == 7
    emu.faults.fail_next(1, "500")
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "b")
    emu.faults.fail_next(1, "502")
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "c")
    emu.faults.fail_next(1, "403_blocked", chat_id=USER)
    with pytest.raises(Forbidden, match=r"(?i)blocked by the user"):
        await bot.send_message(USER, "d")
    emu.faults.fail_next(1, "400_chat_not_found", methods=["sendMessage"])
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(USER, "e")
    emu.faults.fail_next(1, "drop")
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "f")
    await bot.send_message(USER, "delivered")
    assert emu.sent_texts(USER) == ["delivered"]
    assert [c.status for c in emu.calls_for(USER)] == [429, 500, 502, 403, 400, 0, 200]
    assert [c.fault for c in emu.calls_for(USER)][:6] == [
        "429", "500", "502", "403_blocked", "400_chat_not_found", "drop"]
    assert emu.stats["rate_limited"] == 1


async def test_a_stall_times_the_client_out_and_is_then_applied(emu: BotApiEmulator,
                                                                backend: str) -> None:
    emu.faults.stall_seconds = 0.6
    emu.faults.fail_next(1, "timeout", methods=["sendMessage"])
    async with Bot(TOKEN, base_url=emu.base_url,
                   request=request_of(backend, read_timeout=0.2)) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(USER, "slow")
    [call] = await emu.wait_for_calls(1, method="sendMessage", timeout=2)
    assert call.ok and call.fault == "timeout"
    assert emu.sent_texts(USER) == ["slow"]  # what a retry would duplicate


async def test_a_stall_shorter_than_the_timeout_is_only_slow(emu: BotApiEmulator,
                                                             backend: str) -> None:
    emu.faults.stall_seconds = 0.2
    emu.faults.fail_next(1, "timeout", methods=["sendMessage"])
    async with Bot(TOKEN, base_url=emu.base_url, request=request_of(backend)) as patient:
        started = asyncio.get_running_loop().time()
        await patient.send_message(USER, "slow")
        assert asyncio.get_running_loop().time() - started >= 0.2
    assert emu.sent_texts(USER) == ["slow"]


async def test_random_faults_are_reproducible(emu: BotApiEmulator) -> None:
    outcomes = []
    for _ in range(2):
        emu.faults.random(rate=0.3, kinds=["429", "500"], seed=42, methods={"sendMessage"})
        statuses = [(await raw(emu, "sendMessage", chat_id=USER, text=str(i))).status_code
                    for i in range(30)]
        outcomes.append(statuses)
    assert outcomes[0] == outcomes[1]
    assert {429, 500, 200} <= set(outcomes[0])
    assert emu.faults.injected["429"] + emu.faults.injected["500"] == 2 * sum(
        s != 200 for s in outcomes[0])


async def test_the_21st_message_to_a_group_in_a_minute_is_429(
        emu: BotApiEmulator, bot: Bot) -> None:
    emu.enforce_limits(global_per_second=100, per_group_per_minute=20, per_private_per_second=1)
    for n in range(20):
        await bot.send_message(GROUP, f"m{n}")
    with pytest.raises(RetryAfter) as retry:
        await bot.send_message(GROUP, "m20")
    assert 50 <= seconds(retry.value) <= 60
    await bot.send_message(USER, "p0")
    with pytest.raises(RetryAfter):
        await bot.send_message(USER, "p1")  # one a second in a private chat
    assert len(emu.sent_texts(GROUP)) == 20 and emu.sent_texts(USER) == ["p0"]
    assert emu.stats["rate_limited"] == emu.stats["over_limit"] == 2
    assert emu.stats.sent_per_chat == {GROUP: 20, USER: 1}
    last = emu.calls[-1]
    assert last.error_code == 429 and last.error == "Too Many Requests: retry after 1"


async def test_edits_and_button_answers_count_toward_the_overall_limit(
        emu: BotApiEmulator, bot: Bot) -> None:
    emu.enforce_limits(global_per_second=3, per_group_per_minute=20, per_private_per_second=1)
    message = await bot.send_message(GROUP, "m0")
    press = emu.make_callback_update(USER, (GROUP, message.message_id), "ok")
    await bot.answer_callback_query(press["callback_query"]["id"])
    await bot.edit_message_text("m1", chat_id=GROUP, message_id=message.message_id)
    with pytest.raises(RetryAfter):  # a fourth call in the second, though the chat has room
        await bot.edit_message_text("m2", chat_id=GROUP, message_id=message.message_id)
    assert emu.stats["over_limit"] == 1
    assert emu.stats.sent_per_chat == {GROUP: 1}


# --------------------------------------------------------------------------- webhook, time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_webhook_delivery_carries_the_secret(emu: BotApiEmulator) -> None:
    app = application(emu)

    async def start(update: Update, context: Context) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("webhook ok")

    app.add_handler(CommandHandler("start", start))
    port = free_port()
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_webhook(listen="127.0.0.1", port=port, url_path="hook",
                                        webhook_url=f"http://127.0.0.1:{port}/hook",
                                        secret_token="s3cret")
        assert emu.webhook["secret_token"] == "s3cret"
        with pytest.raises(Conflict, match=r"(?i)webhook is active"):
            await app.bot.get_updates()
        assert await emu.deliver_webhook(emu.make_message_update(USER, USER, "/start")) == 200
        await emu.wait_for_calls(1, method="sendMessage")
        emu.webhook["secret_token"] = "forged"
        assert await emu.deliver_webhook(emu.make_message_update(USER, USER, "/start")) == 403
        await app.updater.stop()
        await app.stop()
    assert emu.sent_texts(USER) == ["webhook ok"]


async def test_dates_come_from_the_clock_and_waits_time_out(emu: BotApiEmulator,
                                                            bot: Bot) -> None:
    emu.clock = lambda: 1_767_225_600.0  # 2026-01-01 00:00 UTC
    sent = await bot.send_message(USER, "新年")
    assert sent.date.timestamp() == 1_767_225_600
    assert emu.make_message_update(USER, USER, "好")["message"]["date"] == 1_767_225_600
    assert emu.calls[-1].time == 1_767_225_600.0
    with pytest.raises(TimeoutError):
        await emu.wait_for_calls(5, method="sendMessage", timeout=0.1)
