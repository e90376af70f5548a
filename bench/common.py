"""What the end-to-end benchmarks (reminders, broadcast) share: a fresh database, duty
rooms to send to, and the emulator in a process of its own with the bot against it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import system_now
from storage.migrate import upgrade
from storage.models import DutyRoom
from storage.models import Unit
from tools.testing import BotHarness


@asynccontextmanager
async def fresh_database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A migrated empty database for one run (its URL), dropped after it on PostgreSQL
    (SQLite's file goes with `workdir`)."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / f'reminders-{time.time_ns()}.db'}"
        await upgrade(url)
        yield url
        return
    from tools.testing_db import create_postgres_database
    from tools.testing_db import drop_postgres_database

    name = f"bench_reminders_{os.getpid()}_{time.time_ns() % 100000}"
    url = await create_postgres_database(name)
    try:
        await upgrade(url)
        yield url
    finally:
        await drop_postgres_database(name)


async def add_duty_rooms(session: AsyncSession, rooms: int, *, code: str, name: str,
                         short_name: str, first_chat: int) -> list[Unit]:
    """`rooms` units (`name` and a number), each with a duty room; the rooms' chat ids
    count down from `first_chat`."""
    units = [Unit(code=f"{code}{i:05d}", name=f"{name}{i:05d}", short_name=f"{short_name}{i:05d}",
                  timezone="Asia/Shanghai") for i in range(rooms)]
    session.add_all(units)
    await session.flush()
    session.add_all([DutyRoom(unit_id=u.id, chat_id=first_chat - i, title=f"值班室{i:05d}")
                     for i, u in enumerate(units)])
    return units


@dataclass(frozen=True)
class Emulated:
    """The emulator in its own process: the pipe to it, and where it serves."""

    pipe: Connection
    base_url: str
    base_file_url: str


@asynccontextmanager
async def emulator_process(target: Callable[..., None], *args: Any) -> AsyncIterator[Emulated]:
    """The emulator in a spawned process, so the bot's CPU is measured apart:
    `target(pipe, *args)` sends its base URLs first. The process is ended however the run
    ends."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child, *args), daemon=True)
    process.start()
    try:
        base_url, file_url = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        yield Emulated(parent, base_url, file_url)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def bot_harness(emulated: Emulated, database_url: str, **settings: Any) -> BotHarness:
    """The bot against the emulator, on the system's clock, sending one message a second
    to a private chat (Telegram's limit, as in production)."""
    emulator: Any = emulated  # its URLs: all the harness needs when nothing is typed in it
    return BotHarness(emulator, database_url, now=system_now, private_per_second=1,
                      **settings)
