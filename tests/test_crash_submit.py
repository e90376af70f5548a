"""A real bot process (`python -m bot run`, polling the emulator) killed with SIGKILL
right after a request or a notice commits, and 0.2 s later, before PTB's persistence
flushes (every second): the flow's end was stored with what it created, so the flow
is over when the bot starts again, and the old confirmation, pressed again, is used
up: one request per unit, one notice, each duty room gets each once (but for a message
the killed process had in flight, which goes again after its lease). On both
databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select

from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from core.enums import OutboxState
from i18n import t
from storage.db import Database
from storage.models import AssistanceRequest
from storage.models import ConversationState
from storage.models import Notice
from storage.models import OutboxMessage
from tests.cluster import BotProcess
from tests.cluster import eventually
from tests.cluster import free_port
from tests.cluster import webhook_env
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import YUNNAN_ROOM
from tests.test_requests_support import Directory
from tests.test_requests_support import make_directory
from tests.test_submit_once import ADMIN
from tests.test_submit_once import REQUESTER
from tests.test_submit_once import people
from tests.test_submit_once import sent_to

# A row the killed process had claimed goes out after its lease: 9 s, not 60.
FAST = {"bot_mode": "polling", "delivery_poll_seconds": 0.2, "delivery_lease_seconds": 9,
        "leader_retry_seconds": 1}


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


async def crash_after_commit(bot: BotProcess, db: Database, model: type, delay: float) -> int:
    """SIGKILL as soon as a `model` row is committed (seen within 50 ms, well inside
    the second before the flush), plus `delay`. Returns how many outbox rows the worker
    had claimed by then: sent or not, it did not record it, so each may go out again
    after its lease (at least once, not exactly once, for a message in flight)."""
    await eventually(lambda: count(db, model), 30, "the commit")
    await asyncio.sleep(delay)
    await bot.kill()
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.state == OutboxState.sending)) or 0


async def flow_state(db: Database, flow: str, user: int) -> tuple[list[Any], list[str]]:
    """What the database holds of `user` in `flow`: its conversation states, and the
    keys of its user data."""
    async with db.session() as session:
        states = (await session.execute(select(ConversationState.value).where(
            ConversationState.namespace == f"conv:{flow}",
            ConversationState.key.contains(str(user))))).scalars().all()
        data = await session.get(ConversationState, ("user", str(user)))
    return list(states), sorted((data.value if data else {}).keys())


async def flushed(db: Database, flow: str, user: int) -> None:
    """Until PTB's persistence (every second) has stored the confirm step: the flow's
    state and the user's data with its draft."""
    async def stored() -> bool:
        states, data = await flow_state(db, flow, user)
        return bool(states) and bool(data)

    await eventually(stored, 30, f"{flow} stored")


async def press_again_after_restart(emulator: BotApiEmulator, bot: BotProcess, user: int,
                                    summary: ApiCall, data: str) -> list[ApiCall]:
    """Start the bot again, press the old button; all it answered the user for that: a
    command sent right after the press is answered once the press is handled (one
    person's updates are handled in order)."""
    await bot.start()
    before = len(emulator.calls)
    emulator.push_callback(user, summary.message_ref, data)
    emulator.push_message(user, user, "/nosuch")
    unknown = t("zh-Hans", "errors.unknown_command")

    def answered() -> int | None:
        """Where the answer to the command is among the calls since the press."""
        return next((i for i, c in enumerate(emulator.calls[before:])
                     if c.chat_id == user and unknown in (c.params.get("text") or "")), None)

    await eventually(lambda: answered() is not None, 30, "the answer to the next command")
    return [c for c in emulator.calls[before:before + (answered() or 0)]
            if c.chat_id == user or c.method == "answerCallbackQuery"]


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
    await flushed(db, "requests_new", REQUESTER)  # the crash comes after
    submit = button(summary, "提交")
    emulator.push_callback(REQUESTER, summary.message_ref, submit)
    in_flight = await crash_after_commit(bot, db, AssistanceRequest, delay)
    # Stored with the requests: the flow is over, its draft gone.
    assert await flow_state(db, "requests_new", REQUESTER) == ([], ["confirmations"])
    answer = said(await press_again_after_restart(emulator, bot, REQUESTER, summary, submit))
    assert "这个按钮已经用过" in answer, answer
    assert await count(db, AssistanceRequest) == 2

    # A notice to every duty room.
    emulator.push_message(ADMIN, ADMIN, "/notice 预警 紧急 全部 今晚至明晨有强降雨")
    preview = await prompt(emulator, ADMIN, "请核对通报")
    await flushed(db, "notices_flow", ADMIN)
    send = button(preview, "发送")
    emulator.push_callback(ADMIN, preview.message_ref, send)
    in_flight += await crash_after_commit(bot, db, Notice, delay)
    assert await flow_state(db, "notices_flow", ADMIN) == ([], ["confirmations"])
    answer = said(await press_again_after_restart(emulator, bot, ADMIN, preview, send))
    assert "这个按钮已经用过" in answer, answer
    await eventually(lambda: _all_sent(db), 30, "every outbox row sent")
    await bot.stop()  # whatever it still had to do, done: nothing more can come
    assert await count(db, AssistanceRequest) == 2
    assert await count(db, Notice) == 1
    # Each room got each once, but for what was in flight at a crash.
    request = sent_to(emulator, [SICHUAN_ROOM], "协查涉枪线索")
    rooms = [SICHUAN_ROOM, YUNNAN_ROOM]
    notice = sent_to(emulator, rooms, "今晚至明晨有强降雨")
    assert set(request) == {SICHUAN_ROOM} and set(notice) == set(rooms)
    assert sum(request.values()) + sum(notice.values()) - 3 <= in_flight, (request, notice)


async def _all_sent(db: Database) -> Any:
    return await unsent(db) == 0
