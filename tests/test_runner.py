"""The production run path: `serve` polling the (emulated) Bot API until stopped, and
start-up while Telegram is unreachable or rejects the token."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import build_application
from bot.config import Settings
from bot.config import load_settings
from bot.emulator import BotApiEmulator
from bot.health import check_telegram
from bot.runner import StartRefused
from bot.runner import make_services
from bot.runner import serve
from core.enums import OutboxState
from storage import outbox
from storage.models import OutboxMessage
from tests.cluster import eventually
from tests.cluster import free_port
from tools.testing import TEST_TOKEN

ROOT = Path(__file__).resolve().parent.parent

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


def unreachable_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "Telegram unreachable" in r.getMessage()]


async def test_start_up_waits_for_telegram_with_the_database_side_running(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram not there yet (a closed port): one WARNING line per attempt, no traceback,
    no token; the scheduler leads and the outbox keeps its rows; then Telegram comes up
    and the bot connects, delivers what waited and answers."""
    port = free_port()
    settings = load_settings(
        _env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
        telegram_base_url=f"http://127.0.0.1:{port}/bot", admin_ids=[ADMIN_ID],
        telegram_retry_min_seconds=0.05, telegram_retry_max_seconds=0.2,
    )
    caplog.set_level(logging.INFO)
    stop = asyncio.Event()
    services = make_services(settings)
    application = build_application(settings, services)
    running = asyncio.create_task(serve(application, settings, stop))
    emulator = BotApiEmulator(port=port)
    try:
        await eventually(lambda: len(unreachable_lines(caplog)) >= 3 or running.done(), 30,
                         "three attempts")
        assert not running.done(), running.exception()
        lines = unreachable_lines(caplog)
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
        assert "attempt 1" in lines[0].getMessage() and "attempt 3" in lines[2].getMessage()
        assert "Cannot connect" in lines[0].getMessage()
        assert not any(TEST_TOKEN in r.getMessage() for r in caplog.records)
        # The database side runs meanwhile: the scheduler leads, and a message queued now
        # waits in the outbox without spending an attempt on the unreachable Telegram.
        assert services.leader is not None and services.leader.is_leader
        assert application.job_queue is not None and application.job_queue.scheduler.running
        async with services.db.session() as session:
            await outbox.enqueue(session, chat_id=ADMIN_ID, kind="test", text="等待发送",
                                 dedup_key="while-offline")
        services.wake_delivery()
        assert services.delivery is not None and not services.delivery.running
        async with services.db.session() as session:
            row = (await session.execute(select(OutboxMessage))).scalar_one()
            assert row.attempts == 0 and row.state == OutboxState.pending
        # Telegram comes up: the bot connects, delivers what waited and answers.
        emulator.add_user(ADMIN_ID, "周立新", language_code="en")
        await emulator.start()
        await emulator.wait_for_calls(1, method="sendMessage", chat_id=ADMIN_ID)
        assert emulator.sent_texts(ADMIN_ID) == ["等待发送"]
        emulator.push_message(ADMIN_ID, ADMIN_ID, "/help")
        replies = await emulator.wait_for_calls(2, method="sendMessage", chat_id=ADMIN_ID)
        assert "/invite" in replies[-1].params["text"]
        assert not running.done()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await emulator.stop()


async def test_a_stop_while_telegram_is_unreachable_ends_cleanly(database_url: str) -> None:
    settings = load_settings(
        _env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
        telegram_base_url=f"http://127.0.0.1:{free_port()}/bot",
        telegram_retry_min_seconds=30, telegram_retry_max_seconds=60,
    )
    stop = asyncio.Event()
    services = make_services(settings)
    running = asyncio.create_task(serve(build_application(settings, services), settings, stop))
    await eventually(lambda: services.leader is not None and services.leader.is_leader, 30,
                     "the scheduler")
    stop.set()
    await asyncio.wait_for(running, 10)  # not after the 30 s wait
    assert not services.leader.is_leader


async def test_a_rejected_token_stops_with_one_line(
    emulator: BotApiEmulator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.rejected_tokens.add(TEST_TOKEN)
    settings = load_settings(
        _env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
        telegram_base_url=emulator.base_url, telegram_retry_min_seconds=0.05,
    )
    caplog.set_level(logging.INFO)
    with pytest.raises(StartRefused, match="rejected BOT_TOKEN"):
        await asyncio.wait_for(
            serve(build_application(settings, make_services(settings)), settings,
                  asyncio.Event()), 30)
    assert [c.method for c in emulator.calls] == ["getMe"]  # no retry
    assert not unreachable_lines(caplog)


async def test_run_exits_2_with_one_line_when_the_token_is_rejected(
    emulator: BotApiEmulator, tmp_path: Path
) -> None:
    emulator.rejected_tokens.add(TEST_TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "DATABASE_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "BOT_TOKEN": TEST_TOKEN,
             "TELEGRAM_BASE_URL": emulator.base_url, "LOAD_SAMPLE_DATA": "false",
             "DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 120)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2, lines
    assert len(lines) == 1 and "rejected BOT_TOKEN" in lines[0], lines
    assert TEST_TOKEN not in lines[0]


async def test_check_tells_unreachable_from_rejected(emulator: BotApiEmulator) -> None:
    def settings(base_url: str) -> Settings:
        return load_settings(_env_file=None, bot_token=TEST_TOKEN, telegram_base_url=base_url)

    unreachable = await check_telegram(settings(f"http://127.0.0.1:{free_port()}/bot"))
    assert not unreachable.ok
    assert unreachable.detail.startswith("Telegram unreachable: ")
    assert "connect" in unreachable.detail.lower()  # the reason
    assert (await check_telegram(settings(emulator.base_url))).ok
    emulator.rejected_tokens.add(TEST_TOKEN)
    rejected = await check_telegram(settings(emulator.base_url))
    assert not rejected.ok and rejected.detail.startswith("token rejected")
