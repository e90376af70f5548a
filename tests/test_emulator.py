"""The emulator answers like Telegram: checked against the Bot API spec, through PTB."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from telegram.ext import ApplicationBuilder, CommandHandler

from bot.emulator import BotApiEmulator, load_spec

TOKEN = "123456:TEST-emulator"
GROUP = -1001000000001


async def raw_call(emu: BotApiEmulator, method: str, **params: object) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"{emu.base_url}{TOKEN}/{method}", data=params)


async def test_unknown_method_is_404(emulator: BotApiEmulator) -> None:
    response = await raw_call(emulator, "sendTelepathy", chat_id=1)
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_missing_and_unknown_parameters_are_400(emulator: BotApiEmulator) -> None:
    missing = await raw_call(emulator, "sendMessage", chat_id=5)
    assert missing.status_code == 400
    assert missing.json()["description"] == "Bad Request: parameter text is required"
    unknown = await raw_call(emulator, "sendMessage", chat_id=5, text="x", colour="red")
    assert unknown.status_code == 400
    assert "unknown parameter colour" in unknown.json()["description"]
    assert (await raw_call(emulator, "SENDMESSAGE", chat_id=5, text="x")).json()["ok"]


async def test_every_result_has_its_declared_type(emulator: BotApiEmulator) -> None:
    emulator.add_group(GROUP, "值班室", members=[5])
    emulator.set_member_status(GROUP, 6, "administrator")
    bot = Bot(TOKEN, base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("接收", callback_data="a:1")]])
    async with bot:
        message = await bot.send_message(GROUP, "协作请求", reply_markup=markup)
        await bot.edit_message_text("协作请求（已接收）", chat_id=GROUP,
                                    message_id=message.message_id)
        await bot.send_document(5, document=b"a,b\n1,2\n", filename="requests.csv")
        await bot.get_chat(GROUP)
        await bot.get_chat_member(GROUP, 5)
        await bot.get_chat_member(GROUP, 6)
        await bot.get_chat_administrators(GROUP)
        await bot.set_my_commands([("help", "帮助")], language_code="en")
        await bot.get_my_commands(language_code="en")
        await bot.get_webhook_info()
    spec = load_spec()
    assert emulator.calls
    for call in emulator.calls:
        returns = spec.method(call.method).returns[0]  # type: ignore[union-attr]
        assert call.ok, (call.method, call.error)
        assert spec.problems(returns, call.result) == [], call.method
    assert emulator.commands_for(language_code="en") == [{"command": "help", "description": "帮助"}]
    document = emulator.calls_for(5, {"sendDocument"})[0]
    assert document.files["document"] == ("requests.csv", b"a,b\n1,2\n")


async def test_faults_surface_as_ptb_errors(emulator: BotApiEmulator) -> None:
    bot = Bot(TOKEN, base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    async with bot:
        emulator.faults.fail_next(1, "429", retry_after=7)
        with pytest.raises(RetryAfter) as retry:
            await bot.send_message(5, "x")
        assert "retry after 7" in str(retry.value).lower() or retry.value.retry_after == 7
        emulator.faults.fail_next(1, "500")
        with pytest.raises(NetworkError):
            await bot.send_message(5, "x")
        emulator.faults.fail_next(1, "403_blocked", chat_id=5)
        with pytest.raises(Forbidden):
            await bot.send_message(5, "x")
        emulator.faults.fail_next(1, "drop")
        with pytest.raises(NetworkError):
            await bot.send_message(5, "x")
        sent = await bot.send_message(5, "y")
        with pytest.raises(BadRequest, match=r"(?i)not modified"):
            await bot.edit_message_text("y", chat_id=5, message_id=sent.message_id)
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(-42, "nobody")
    # Failed calls delivered nothing: the chat shows exactly one message.
    assert emulator.sent_texts(5) == ["y"]


async def test_group_rate_limit_answers_429_on_the_21st_message(emulator: BotApiEmulator) -> None:
    emulator.add_group(GROUP, "值班室")
    emulator.enforce_limits()
    bot = Bot(TOKEN, base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    async with bot:
        for n in range(20):
            await bot.send_message(GROUP, f"m{n}")
        with pytest.raises(RetryAfter):
            await bot.send_message(GROUP, "m20")
    assert len(emulator.sent_texts(GROUP)) == 20
    assert emulator.stats["rate_limited"] == 1


async def test_polling_receives_pushed_updates(emulator: BotApiEmulator) -> None:
    emulator.add_user(5, "李明")
    application = ApplicationBuilder().token(TOKEN).base_url(emulator.base_url).build()

    async def echo(update: Update, _context: object) -> None:
        await update.effective_message.reply_text(f"收到 {update.effective_user.first_name}")

    application.add_handler(CommandHandler("ping", echo))
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)
        emulator.push_message(5, 5, "/ping")
        await emulator.wait_for_calls(1, method="sendMessage")
        await application.updater.stop()
        await application.stop()
    assert emulator.sent_texts(5) == ["收到 李明"]


async def test_callback_and_inline_answers(emulator: BotApiEmulator) -> None:
    bot = Bot(TOKEN, base_url=emulator.base_url, base_file_url=emulator.base_file_url)
    async with bot:
        sent = await bot.send_message(5, "选择", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("是", callback_data="yes")]]))
        update = emulator.make_callback_update(5, (5, sent.message_id), "yes")
        query = update["callback_query"]
        assert query["message"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "是"
        assert await bot.answer_callback_query(query["id"], "好")
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await bot.answer_callback_query(query["id"], "again")
        inline = emulator.make_inline_query_update(5, "四川")["inline_query"]
        assert await bot.answer_inline_query(inline["id"], [], cache_time=5, is_personal=True)


async def test_webhook_delivery_carries_the_secret(emulator: BotApiEmulator) -> None:
    received: list[tuple[str | None, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"),
                         await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        bot = Bot(TOKEN, base_url=emulator.base_url)
        async with bot:
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        update = emulator.make_message_update(5, 5, "/start")
        assert await emulator.deliver_webhook(update) == 200
    finally:
        await runner.cleanup()
    assert received == [("s3cret", update)]


async def test_stalled_answer_is_applied_after_the_stall(emulator: BotApiEmulator) -> None:
    emulator.faults.stall_seconds = 0.2
    emulator.faults.fail_next(1, "timeout", methods=["sendMessage"])
    bot = Bot(TOKEN, base_url=emulator.base_url)
    async with bot:
        started = asyncio.get_running_loop().time()
        await bot.send_message(5, "slow")
        assert asyncio.get_running_loop().time() - started >= 0.2
    assert emulator.sent_texts(5) == ["slow"]
