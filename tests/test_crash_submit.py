"""A real bot process (`python -m bot run`, polling the emulator) killed with SIGKILL
right after a request or a notice commits, and 0.2 s later, before PTB's persistence
flushes (every second): the flow's end was stored with what it created, so the flow
is over when the bot starts again, and the old confirmation, pressed again, is used
up: one request per unit, one notice, each duty room gets each once. On both
databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.emulator import ApiCall, BotApiEmulator
from storage.db import Database
from storage.models import (
    AssistanceRequest,
    ConversationState,
    Notice,
    OutboxMessage,
    OutboxState,
)
from tests.cluster import BotProcess, eventually, free_port, webhook_env
from tests.test_requests_support import SICHUAN_ROOM, YUNNAN_ROOM, Directory, make_directory
from tests.test_submit_once import ADMIN, REQUESTER, people, sent_to

FAST = {"bot_mode": "polling", "delivery_poll_seconds": 0.2, "leader_retry_seconds": 1}


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db, yunnan_room=True)


@pytest.fixture
async def bot(emulator: BotApiEmulator, database_url: str, directory: Directory
              ) -> AsyncIterator[BotProcess]:
    people(emulator)
    env = webhook_env(emulator, database_url, "https://unused.example", free_port(), **FAST)
    process = BotProcess("bot", env)
    try:
        yield await process.start()
    finally:
        await process.kill()


async def count(db: Database, model: type) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def unsent(db: Database) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.state != OutboxState.sent)) or 0


async def prompt(emulator: BotApiEmulator, chat_id: int, marker: str) -> ApiCall:
    """The bot's latest message to `chat_id` containing `marker` (waited for)."""
    def found() -> list[ApiCall]:
        return [c for c in emulator.calls_for(chat_id, ["sendMessage"])
                if c.ok and marker in (c.params.get("text") or "")]
    await eventually(found, 30, f"{marker!r} in chat {chat_id}")
    return found()[-1]


def button(call: ApiCall, label: str) -> str:
    return next(b["callback_data"] for row in call.params["reply_markup"]["inline_keyboard"]
                for b in row if label in b["text"])


async def crash_after_commit(bot: BotProcess, db: Database, model: type, delay: float) -> None:
    """SIGKILL as soon as a `model` row is committed (seen within 50 ms, well inside
    the second before the flush), plus `delay`."""
    await eventually(lambda: count(db, model), 30, "the commit")
    await asyncio.sleep(delay)
    await bot.kill()


async def flow_state(db: Database, flow: str, user: int) -> tuple[list[Any], list[str]]:
    """What the database holds of `user` in `flow`: its conversation states, and the
    keys of its user data."""
    async with db.session() as session:
        states = (await session.execute(select(ConversationState.value).where(
            ConversationState.namespace == f"conv:{flow}",
            ConversationState.key.contains(str(user))))).scalars().all()
        data = await session.get(ConversationState, ("user", str(user)))
    return list(states), sorted((data.value if data else {}).keys())


async def press_again_after_restart(emulator: BotApiEmulator, bot: BotProcess, user: int,
                                    summary: ApiCall, data: str) -> list[ApiCall]:
    """Start the bot again, press the old button; what it answered the user."""
    await bot.start()
    before = len(emulator.calls)
    emulator.push_callback(user, summary.message_ref, data)
    await eventually(lambda: any(c.method == "answerCallbackQuery"
                                 for c in emulator.calls[before:]), 30, "an answer")
    await asyncio.sleep(0.3)  # a text that follows the answer
    return [c for c in emulator.calls[before:] if c.chat_id == user or
            c.method == "answerCallbackQuery"]


def said(calls: list[ApiCall]) -> str:
    return "\n".join(c.params.get("text") or "" for c in calls)


@pytest.mark.parametrize("delay", [0.0, 0.2])
async def test_killed_right_after_submitting_the_old_button_creates_nothing_more(
    emulator: BotApiEmulator, db: Database, bot: BotProcess, delay: float,
) -> None:
    # A request to two units (四川's duty room, 重庆 without one).
    emulator.push_message(REQUESTER, REQUESTER,
                          "/request 四川、重庆 治安管控互动 特急 协查涉枪线索")
    summary = await prompt(emulator, REQUESTER, "请核对协作请求")
    await asyncio.sleep(1.5)  # the summary's state is flushed: the crash comes after
    submit = button(summary, "提交")
    emulator.push_callback(REQUESTER, summary.message_ref, submit)
    await crash_after_commit(bot, db, AssistanceRequest, delay)
    # Stored with the requests: the flow is over, its draft gone.
    assert await flow_state(db, "requests_new", REQUESTER) == ([], ["confirmations"])
    answer = said(await press_again_after_restart(emulator, bot, REQUESTER, summary, submit))
    assert "这个按钮已经用过" in answer, answer
    assert await count(db, AssistanceRequest) == 2

    # A notice to every duty room.
    emulator.push_message(ADMIN, ADMIN, "/notice 预警 紧急 全部 今晚至明晨有强降雨")
    preview = await prompt(emulator, ADMIN, "请核对通报")
    await asyncio.sleep(1.5)
    send = button(preview, "发送")
    emulator.push_callback(ADMIN, preview.message_ref, send)
    await crash_after_commit(bot, db, Notice, delay)
    assert await flow_state(db, "notices_flow", ADMIN) == ([], ["confirmations"])
    answer = said(await press_again_after_restart(emulator, bot, ADMIN, preview, send))
    assert "这个按钮已经用过" in answer, answer
    await eventually(lambda: _all_sent(db), 30, "every outbox row sent")
    await asyncio.sleep(0.5)
    assert await count(db, AssistanceRequest) == 2
    assert await count(db, Notice) == 1
    assert sent_to(emulator, [SICHUAN_ROOM], "协查涉枪线索") == {SICHUAN_ROOM: 1}
    rooms = [SICHUAN_ROOM, YUNNAN_ROOM]
    assert sent_to(emulator, rooms, "今晚至明晨有强降雨") == {room: 1 for room in rooms}


async def _all_sent(db: Database) -> Any:
    return await unsent(db) == 0
