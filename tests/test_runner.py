"""The production run path: `serve` polling the (emulated) Bot API until stopped."""

from __future__ import annotations

import asyncio

from bot.app import build_application
from bot.config import load_settings
from bot.emulator import BotApiEmulator
from bot.runner import make_services, serve
from bot.testing import TEST_TOKEN

ADMIN_ID = 910000001


async def test_serve_polls_answers_and_stops(emulator: BotApiEmulator, database_url: str) -> None:
    settings = load_settings(
        _env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
        telegram_base_url=emulator.base_url, admin_ids=[ADMIN_ID],
    )
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    stop = asyncio.Event()
    application = build_application(settings, make_services(settings))
    running = asyncio.create_task(serve(application, settings, stop))
    try:
        emulator.push_message(ADMIN_ID, ADMIN_ID, "/help")
        replies = await emulator.wait_for_calls(1, method="sendMessage", chat_id=ADMIN_ID)
        assert replies and "/invite" in replies[0].params["text"]
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    # Default command menus were set for both menu languages and both chat kinds.
    private_en = emulator.commands_for({"type": "all_private_chats"}, "en")
    private_zh = emulator.commands_for({"type": "all_private_chats"})
    groups = emulator.commands_for({"type": "all_group_chats"})
    assert {"help", "lang"} <= {c["command"] for c in private_en}
    assert any(c["description"] == "查看可用功能" for c in private_zh)
    assert "lang" not in {c["command"] for c in groups}
