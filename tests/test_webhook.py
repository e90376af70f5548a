"""Webhook mode: Telegram's secret token checked on every call, and several servers behind
one URL sharing the updates (here two Applications in this process; separate processes
are in tests/test_multiprocess.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import cast

import pytest
from aiohttp import ClientSession
from sqlalchemy import select
from telegram.ext import Application

from bot.app import build_application
from bot.config import BotMode
from bot.config import Settings
from bot.config import load_settings
from bot.emulator import BotApiEmulator
from bot.runner import StartRefused
from bot.runner import make_services
from bot.runner import serve
from bot.updates import OrderedUpdateProcessor
from storage.db import Database
from storage.models import HandledUpdate
from tests.cluster import SECRET
from tests.cluster import RoundRobinProxy
from tests.cluster import eventually
from tests.cluster import free_port
from tests.test_requests_support import PEOPLE
from tests.test_requests_support import make_directory
from tools.testing import MESSAGE_METHODS
from tools.testing import TEST_TOKEN
from tools.testing import Sent

ADMIN_ID = 910000001
USERS = range(930000001, 930000021)
REQUESTER = 101


def webhook_settings(emulator: BotApiEmulator, database_url: str, port: int,
                     public_url: str | None = None, secret: str | None = SECRET) -> Settings:
    return load_settings(
        _env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
        telegram_base_url=emulator.base_url, admin_ids=[ADMIN_ID], bot_mode="webhook",
        webhook_url=public_url or f"http://127.0.0.1:{port}/telegram",
        webhook_listen="127.0.0.1", webhook_port=port, webhook_secret=secret,
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Application]:
    """The production run path (`serve`) in webhook mode, until the block ends."""
    stop = asyncio.Event()
    application = build_application(settings, make_services(settings))
    running = asyncio.create_task(serve(application, settings, stop))
    try:
        await eventually(lambda: application.running or running.done(), 30, "the webhook server")
        assert not running.done(), running.exception()
        yield application
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_a_call_without_the_right_secret_is_refused_and_not_processed(
    emulator: BotApiEmulator, database_url: str
) -> None:
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    port = free_port()
    async with serving(webhook_settings(emulator, database_url, port)), ClientSession() as http:
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        assert emulator.webhook["secret_token"] == SECRET
        url = emulator.webhook["url"]
        update = emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                        {"X-Telegram-Bot-Api-Secret-Token": SECRET.upper()}):
            async with http.post(url, json=update, headers=headers) as answer:
                assert answer.status == 403
        # As Telegram sends it, with the secret: answered, and the refused copies were not.
        assert await emulator.deliver_webhook(
            emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")) == 200
        texts = await answered_after(emulator, ADMIN_ID, 1)
    assert len(texts) == 2 and "/invite" in texts[0], texts


async def test_webhook_mode_does_not_start_without_a_secret(
    emulator: BotApiEmulator, database_url: str
) -> None:
    settings = Settings(_env_file=None, bot_token=TEST_TOKEN,  # type: ignore[call-arg]
                        database_url=database_url, telegram_base_url=emulator.base_url,
                        bot_mode=BotMode.webhook, webhook_url="https://bot.example/telegram")
    application = build_application(settings, make_services(settings))
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        await serve(application, settings, asyncio.Event())
    assert not emulator.webhook


async def test_two_webhook_servers_behind_one_url_share_the_updates(
    emulator: BotApiEmulator, database_url: str
) -> None:
    for user in USERS:
        emulator.add_user(user, f"用户{user % 100}", language_code="en")
    ports = [free_port(), free_port()]
    async with RoundRobinProxy([f"http://127.0.0.1:{p}" for p in ports]) as proxy:
        first = webhook_settings(emulator, database_url, ports[0], proxy.url)
        second = webhook_settings(emulator, database_url, ports[1], proxy.url)
        async with serving(first) as one, serving(second) as two:
            assert emulator.webhook["url"] == proxy.url
            statuses = [await emulator.deliver_webhook(
                emulator.make_message_update(user, user, "/start")) for user in USERS]
            assert set(statuses) == {200}
            await eventually(lambda: all(emulator.calls_for(u, ["sendMessage"]) for u in USERS),
                             30, "an answer to every update")
            await eventually(lambda: handled(one, two), 30, "every update handled")
    # Each server got half of the updates; every update was answered exactly once.
    assert proxy.forwarded == {0: len(USERS) // 2, 1: len(USERS) // 2}
    assert all(len(emulator.calls_for(u, ["sendMessage"])) == 1 for u in USERS)


def handled(*servers: Application) -> bool:
    """No update held by or waiting in any of `servers`: once each update posted is seen
    answered (under way, then), every one is over, what it wrote back included."""
    return all(cast(OrderedUpdateProcessor, server.update_processor).waiting == 0
               for server in servers)


async def test_a_guided_conversation_continues_on_whichever_server_gets_the_next_step(
    emulator: BotApiEmulator, database_url: str, db: Database
) -> None:
    await make_directory(db)
    for telegram_id, name, _role, _unit, language in PEOPLE.values():
        emulator.add_user(telegram_id, name, language_code=language.lower())

    servers: list[Application] = []

    async def step(update: dict[str, object]) -> Sent:
        """Post `update`; what the bot sent for it, once the server that got it is done
        with it. That includes writing the conversation state back after the answer: a
        next step posted before then would reach the other server, which would read the
        state of the step before."""
        before = len(emulator.calls)
        assert await emulator.deliver_webhook(update) == 200
        await eventually(lambda: any(c.chat_id == REQUESTER and c.method in MESSAGE_METHODS
                                     for c in emulator.calls[before:]), 30, "an answer")
        await eventually(lambda: handled(*servers), 30, "the update handled")
        return Sent(emulator.calls[before:])

    async def press(sent: Sent, label: str) -> Sent:
        call = next(c for c in reversed(sent.messages) if label in str(c.params))
        data = next(d for text, d in Sent([call]).buttons() if label in text)
        return await step(emulator.make_callback_update(REQUESTER, call.message_ref, data))

    ports = [free_port(), free_port()]
    async with RoundRobinProxy([f"http://127.0.0.1:{p}" for p in ports]) as proxy:
        first = webhook_settings(emulator, database_url, ports[0], proxy.url)
        second = webhook_settings(emulator, database_url, ports[1], proxy.url)
        async with serving(first) as one, serving(second) as two:
            servers += [one, two]
            # Each step goes to the other server than the step before it.
            sent = await step(emulator.make_message_update(REQUESTER, REQUESTER, "/request"))
            assert "发起协作请求" in sent.text
            sent = await press(sent, "四川")
            assert "已选择：四川省公安厅" in sent.text
            sent = await press(sent, "下一步")
            assert "协作机制" in sent.text
            sent = await press(sent, "治安管控互动")
            assert "紧急程度" in sent.text
            sent = await press(sent, "特急")
            assert "主题" in sent.text
    assert proxy.forwarded == {0: 3, 1: 2}


UNKNOWN = "I do not know that command"


async def answered_after(emulator: BotApiEmulator, user: int, servers: int) -> list[str]:
    """Post a command the bot does not know through each of `servers` (in turn, behind a
    proxy), after the updates under test; the texts `user` got once every one is
    answered. A user's updates are handled in order, so whatever the earlier ones caused
    on a server came before its answer."""
    for _ in range(servers):
        assert await emulator.deliver_webhook(
            emulator.make_message_update(user, user, "/nosuch")) == 200

    def texts() -> list[str]:
        return [c.params.get("text", "") for c in emulator.calls_for(user, ["sendMessage"])]

    await eventually(lambda: sum(UNKNOWN in text for text in texts()) == servers, 30,
                     "the answers after the updates under test")
    return texts()


async def test_an_update_posted_three_times_is_answered_once(
    emulator: BotApiEmulator, database_url: str, db: Database
) -> None:
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    port = free_port()
    async with serving(webhook_settings(emulator, database_url, port)):
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        update = emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")
        assert [await emulator.deliver_webhook(update) for _ in range(3)] == [200, 200, 200]
        texts = await answered_after(emulator, ADMIN_ID, 1)
    assert sum("/invite" in text for text in texts) == 1, texts
    assert await handled_ids(db) == [update["update_id"], update["update_id"] + 1]


async def test_an_update_posted_to_two_servers_is_answered_once(
    emulator: BotApiEmulator, database_url: str, db: Database
) -> None:
    """Telegram posts the update again and the proxy sends the copy to the other server."""
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    ports = [free_port(), free_port()]
    async with RoundRobinProxy([f"http://127.0.0.1:{p}" for p in ports]) as proxy:
        first = webhook_settings(emulator, database_url, ports[0], proxy.url)
        second = webhook_settings(emulator, database_url, ports[1], proxy.url)
        async with serving(first), serving(second):
            update = emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")
            assert [await emulator.deliver_webhook(update) for _ in range(3)] == [200] * 3
            texts = await answered_after(emulator, ADMIN_ID, len(ports))
    assert proxy.forwarded == {0: 3, 1: 2}
    assert sum("/invite" in text for text in texts) == 1, texts


async def handled_ids(db: Database) -> list[int]:
    async with db.session() as session:
        return list((await session.execute(
            select(HandledUpdate.update_id).order_by(HandledUpdate.update_id))).scalars())


OLD = 900_000_000


async def test_update_ids_older_than_a_day_are_forgotten(
    emulator: BotApiEmulator, database_url: str, db: Database
) -> None:
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    now = datetime.now(UTC)
    async with db.session() as session:
        session.add_all([HandledUpdate(update_id=OLD, received_at=now - timedelta(days=2)),
                         HandledUpdate(update_id=OLD + 1, received_at=now - timedelta(hours=1))])
    port = free_port()
    async with serving(webhook_settings(emulator, database_url, port)):
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        update = emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")
        assert await emulator.deliver_webhook(update) == 200
        await emulator.wait_for_calls(1, method="sendMessage", chat_id=ADMIN_ID)
    assert await handled_ids(db) == [update["update_id"], OLD + 1]


async def exchange(port: int, head: str, body_chunks: list[bytes] = ()) -> str:  # type: ignore[assignment]
    """Send a raw request head (and maybe some of a body); the answer's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()


def request_head(port: int, secret: str, **headers: str) -> str:
    lines = ["POST /telegram HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"X-Telegram-Bot-Api-Secret-Token: {secret}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


async def test_the_secret_is_checked_and_big_bodies_refused_before_reading(
    emulator: BotApiEmulator, database_url: str
) -> None:
    """Only the head is sent: the server answers from it without waiting for the body."""
    emulator.add_user(ADMIN_ID, "周立新", language_code="en")
    port = free_port()
    huge = str(90 * 1024 * 1024)
    async with serving(webhook_settings(emulator, database_url, port)) as application:
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        # A wrong secret: 403 before any of the 90 MB is read.
        assert " 403 " in await exchange(port, request_head(port, "wrong", Content_Length=huge))
        # The right secret but over 1 MB announced: 413, not buffered.
        assert " 413 " in await exchange(port, request_head(port, SECRET, Content_Length=huge))
        assert " 413 " in await exchange(
            port, request_head(port, SECRET, Content_Length=str(1024 * 1024 + 1)))
        # Streamed (chunked) past 1 MB: 413 once the limit is passed.
        chunk = b"x" * 65536
        chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 17  # 1.06 MB
        assert " 413 " in await exchange(
            port, request_head(port, SECRET, Transfer_Encoding="chunked"), chunks)
        assert application.update_queue.qsize() == 0
        # A real update still gets through, and it is all that was answered.
        assert await emulator.deliver_webhook(
            emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")) == 200
        texts = await answered_after(emulator, ADMIN_ID, 1)
    assert len(texts) == 2 and "/invite" in texts[0], texts


async def test_polling_refuses_to_start_next_to_webhook_processes(
    emulator: BotApiEmulator, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    polling = load_settings(_env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
                            telegram_base_url=emulator.base_url)
    async with serving(webhook_settings(emulator, database_url, port)):
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        with pytest.raises(StartRefused, match="a webhook is set"):
            await asyncio.wait_for(serve(build_application(polling, make_services(polling)),
                                         polling, asyncio.Event()), 30)
        # The webhook processes keep their updates.
        assert emulator.webhook.get("url") == f"http://127.0.0.1:{port}/telegram"
        assert not [c for c in emulator.calls if c.method == "deleteWebhook"]
        assert await emulator.deliver_webhook(
            emulator.make_message_update(ADMIN_ID, ADMIN_ID, "/help")) == 200
        await emulator.wait_for_calls(1, method="sendMessage", chat_id=ADMIN_ID)


async def test_polling_takes_over_from_a_webhook_when_told_to(
    emulator: BotApiEmulator, database_url: str
) -> None:
    emulator.webhook = {"url": "https://desk.example/telegram", "secret_token": SECRET}
    settings = load_settings(_env_file=None, bot_token=TEST_TOKEN, database_url=database_url,
                             telegram_base_url=emulator.base_url, polling_deletes_webhook=True)
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(build_application(settings, make_services(settings)), settings, stop))
    try:
        await eventually(lambda: not emulator.webhook or running.done(), 30, "deleteWebhook")
        emulator.push_message(ADMIN_ID, ADMIN_ID, "/help")
        await emulator.wait_for_calls(1, method="sendMessage", chat_id=ADMIN_ID)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
