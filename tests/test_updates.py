"""Concurrent update processing: other people's updates run alongside, one person's and
one chat's in order, never more than the limit at once."""

from __future__ import annotations

import asyncio

from telegram import Chat
from telegram import Message
from telegram import Update
from telegram import User

from bot.app import build_application
from bot.config import Settings
from bot.updates import OrderedUpdateProcessor
from bot.updates import ordering_keys

GROUP = -100123


def update_from(user_id: int, chat_id: int | None = None, update_id: int = 1) -> Update:
    chat_id = user_id if chat_id is None else chat_id
    chat = Chat(chat_id, Chat.PRIVATE if chat_id == user_id else Chat.SUPERGROUP)
    user = User(user_id, f"u{user_id}", is_bot=False)
    message = Message(update_id, date=None, chat=chat, from_user=user, text="x")  # type: ignore[arg-type]
    return Update(update_id, message=message)


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.running = 0
        self.most = 0

    async def work(self, name: str, seconds: float) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.events.append(f"start {name}")
        await asyncio.sleep(seconds)
        self.events.append(f"end {name}")
        self.running -= 1


async def run_all(processor: OrderedUpdateProcessor,
                  jobs: list[tuple[Update, str, float]], recorder: Recorder) -> None:
    # As PTB does: one task per update, created in arrival order.
    tasks = [asyncio.create_task(processor.process_update(update, recorder.work(name, delay)))
             for update, name, delay in jobs]
    await asyncio.gather(*tasks)


async def test_one_persons_updates_run_in_order_while_others_go_ahead() -> None:
    processor, recorder = OrderedUpdateProcessor(8), Recorder()
    await run_all(processor, [
        (update_from(1, update_id=1), "a1", 0.05),
        (update_from(1, update_id=2), "a2", 0.0),
        (update_from(2, update_id=3), "b1", 0.0),
    ], recorder)
    events = recorder.events
    assert events.index("end b1") < events.index("end a1")  # b did not wait for a
    assert events.index("end a1") < events.index("start a2")  # a's second waited for its first
    assert processor.waiting == 0


async def test_a_group_chat_is_one_queue_and_a_person_is_one_queue_across_chats() -> None:
    processor, recorder = OrderedUpdateProcessor(8), Recorder()
    await run_all(processor, [
        (update_from(1, GROUP, 1), "a in group", 0.05),
        (update_from(2, GROUP, 2), "b in group", 0.0),
        (update_from(1, update_id=3), "a private", 0.0),
        (update_from(3, update_id=4), "c private", 0.0),
    ], recorder)
    events = recorder.events
    assert events.index("end a in group") < events.index("start b in group")
    assert events.index("end a in group") < events.index("start a private")
    assert events.index("end c private") < events.index("end a in group")


async def test_never_more_than_the_limit_at_once() -> None:
    processor, recorder = OrderedUpdateProcessor(3), Recorder()
    await run_all(processor, [(update_from(user, update_id=user), f"u{user}", 0.02)
                              for user in range(1, 11)], recorder)
    assert recorder.most == 3 and len(recorder.events) == 20


def test_keys_of_updates_without_user_or_chat() -> None:
    assert ordering_keys(object()) == []
    assert ordering_keys(Update(5)) == []
    assert ordering_keys(update_from(7, GROUP)) == [GROUP, 7]


def test_the_application_processes_updates_this_way() -> None:
    settings = Settings(_env_file=None, bot_token="1:test", update_concurrency=5,
                        database_url="sqlite+aiosqlite:///:memory:")
    application = build_application(settings)
    processor = application.update_processor
    assert isinstance(processor, OrderedUpdateProcessor) and processor.limit == 5
