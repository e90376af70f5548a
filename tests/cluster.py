"""Helpers for tests with several bot processes: real `python -m bot run` subprocesses
(webhook mode, each on its own port) against one in-process emulator, a round-robin
proxy standing in for nginx, and the data they work on (a notice, a reminder)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from aiohttp import web
from sqlalchemy import func
from sqlalchemy import select

from bot.emulator import BotApiEmulator
from core.enums import MeetingKind
from core.enums import NoticeKind
from core.enums import OutboxState
from core.enums import Role
from core.enums import Severity
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from services.notices import create_notice
from storage.db import Database
from storage.models import DutyRoom
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import OutboxMessage
from storage.models import Unit
from storage.models import User
from storage.models import utcnow
from tools.testing import TEST_TOKEN

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-token_for-tests"
FIRST_ROOM = -1003000000000
COORDINATOR = 910000011
REMINDER_OFFSET = timedelta(minutes=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def eventually(condition: Callable[[], Any], seconds: float = 20.0,
                     what: str = "condition") -> None:
    """Wait for `condition()` (sync or async) to be true; fail after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert loop.time() < deadline, f"{what}: not met within {seconds} s"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- data


async def all_sent(db: Database, count: int) -> bool:
    """Every room's notice message is out."""
    return await rows_in_state(db, OutboxState.sent, "notice") == count


def rooms(count: int) -> list[int]:
    return [FIRST_ROOM - i for i in range(count)]


async def broadcast(db: Database, chats: Sequence[int], key: str) -> None:
    """A notice (形势通报) from a coordinator to one duty room per chat, fanned out the
    way /notice does it: one outbox row per room, in one transaction."""
    async with db.session() as session:
        units = [Unit(code=f"{key}{i}", name=f"单位{key}{i}", short_name=f"单位{key}{i}")
                 for i in range(len(chats))]
        session.add_all(units)
        await session.flush()
        session.add_all([DutyRoom(unit_id=unit.id, chat_id=chat_id, title=f"值班室{chat_id}")
                         for unit, chat_id in zip(units, chats, strict=True)])
        coordinator = (await session.scalars(
            select(User).where(User.telegram_id == COORDINATOR))).one_or_none()
        if coordinator is None:  # the first broadcast of the test
            coordinator = User(telegram_id=COORDINATOR, full_name="秘书处王芳",
                               role=Role.coordinator, unit_id=units[0].id)
            session.add(coordinator)
            await session.flush()
        await create_notice(
            session, NoticeDraft(kind=NoticeKind.situation, severity=Severity.important,
                                 text=f"形势通报 {key}", audience={"all": True}),
            actor=coordinator, now=utcnow(), policy=NoticePolicy())


def broadcast_counts(emulator: BotApiEmulator, key: str) -> Counter[int]:
    """Messages of the broadcast each chat received."""
    return Counter(c.chat_id for c in emulator.calls
                   if c.ok and c.method == "sendMessage" and c.chat_id != COORDINATOR
                   and f"形势通报 {key}" in c.params.get("text", ""))


async def rows_in_state(db: Database, state: OutboxState, kind: str | None = None) -> int:
    async with db.session() as session:
        query = select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.state == state)
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        return (await session.execute(query)).scalar_one()


async def extra_attempts(db: Database) -> int:
    """Attempts counted on the rooms' notice rows beyond the one that sent each."""
    async with db.session() as session:
        return (await session.execute(
            select(func.coalesce(func.sum(OutboxMessage.attempts - 1), 0))
            .where(OutboxMessage.kind == "notice"))).scalar_one()


async def seed_reminder(db: Database, chat_id: int, due: datetime) -> int:
    """A unit with a duty room and a meeting whose one-hour reminder is due at `due`."""
    async with db.session() as session:
        unit = Unit(code=f"u{-chat_id}", name=f"单位{-chat_id}", short_name=f"单位{-chat_id}",
                    timezone="Asia/Shanghai")
        session.add(unit)
        await session.flush()
        session.add(DutyRoom(unit_id=unit.id, chat_id=chat_id, title="值班室"))
        starts = due + REMINDER_OFFSET
        meeting = Meeting(kind=MeetingKind.regular, title="联席会议", starts_at=starts,
                          ends_at=starts + timedelta(hours=1), timezone="Asia/Shanghai",
                          reminder_offsets=[int(REMINDER_OFFSET.total_seconds() // 60)],
                          participants=[MeetingParticipant(unit_id=unit.id)])
        session.add(meeting)
        await session.flush()
        return meeting.id


def reminders_sent(emulator: BotApiEmulator, meeting_id: int) -> int:
    """Reminders about the meeting that reached Telegram (its RSVP button names it)."""
    marker = f"mtg:r:{meeting_id}:"
    return sum(
        1 for c in emulator.calls if c.ok and c.method == "sendMessage"
        and any(b.get("callback_data", "").startswith(marker)
                for row in (c.params.get("reply_markup") or {}).get("inline_keyboard", [])
                for b in row))


# --------------------------------------------------------------------------- processes


class RoundRobinProxy:
    """A reverse proxy: each request goes to the next backend (nginx in front of several
    webhook servers). With `delay`, each answer is held back that long after the backend
    gave it (a slow link between the bot and Telegram: the call has taken effect, the
    bot does not know yet). `cut()` cuts the link until `restore()`."""

    def __init__(self, backends: Sequence[str], *, delay: float = 0.0) -> None:
        self.backends = list(backends)
        self.delay = delay
        self._next = itertools.cycle(range(len(self.backends)))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/telegram"  # the public webhook URL
        self.forwarded: Counter[int] = Counter()
        self.unanswered = 0  # requests that met a cut link
        self._cut: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def cut(self, *, stall: bool = False) -> None:
        """Nothing gets through, nothing is answered: each request's connection is
        dropped at once (a refused or reset connection), or with `stall` held until the
        client gives up (a link that loses every packet: the client times out)."""
        self._cut = "stall" if stall else "drop"

    def restore(self) -> None:
        self._cut = None

    async def _no_answer(self, request: web.Request) -> web.Response:
        self.unanswered += 1
        while self._cut == "stall":  # until restored, or the client hangs up (no event)
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.05)
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    async def _forward(self, request: web.Request) -> web.Response:
        if self._cut is not None:
            return await self._no_answer(request)
        index = next(self._next)
        assert self._session is not None
        async with self._session.request(request.method, self.backends[index] + request.path_qs,
                                         data=await request.read(),
                                         headers=request.headers) as answer:
            self.forwarded[index] += 1
            body, status = await answer.read(), answer.status
            content_type = answer.headers.get("Content-Type")
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status, body=body, headers={"Content-Type": content_type}
                            if content_type else None)

    async def __aenter__(self) -> RoundRobinProxy:
        self._session = ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()


def webhook_env(emulator: BotApiEmulator, database_url: str, public_url: str, port: int,
                *, api_url: str | None = None, **extra: Any) -> dict[str, str]:
    """Settings for one bot process in webhook mode behind `public_url`, calling the
    emulator (or `api_url`, a proxy in front of it)."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
           if key in os.environ}
    env.update({
        "BOT_TOKEN": TEST_TOKEN, "DATABASE_URL": database_url,
        "TELEGRAM_BASE_URL": f"{api_url}/bot" if api_url else emulator.base_url,
        "TELEGRAM_BASE_FILE_URL": f"{api_url}/file/bot" if api_url else emulator.base_file_url,
        "BOT_MODE": "webhook", "WEBHOOK_URL": public_url, "WEBHOOK_LISTEN": "127.0.0.1",
        "WEBHOOK_PORT": str(port), "WEBHOOK_SECRET": SECRET, "LOAD_SAMPLE_DATA": "false",
        "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
    })
    env.update({key.upper(): str(value) for key, value in extra.items()})
    return env


class BotProcess:
    """`python -m bot run` in a subprocess; its log lines collected with their times."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.port = int(env["WEBHOOK_PORT"])
        self.lines: list[tuple[float, str]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> BotProcess:
        self.lines = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=PROJECT_ROOT, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read())
        await eventually(lambda: self.logged("is running") or self.exited, 60,
                         f"{self.name} to start")
        assert not self.exited, f"{self.name} exited:\n{self.log}"
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    @property
    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def logged(self, text: str) -> float | None:
        """When a line containing `text` was logged (monotonic), if it was."""
        return next((at for at, line in self.lines if text in line), None)

    def sent_count(self) -> int:
        """What its delivery worker reported sending when it stopped."""
        match = re.search(r"delivery worker \S+ stopped: (\d+) sent", self.log)
        assert match, f"{self.name} did not report its deliveries:\n{self.log}"
        return int(match.group(1))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.exited:
            return
        self.process.send_signal(sig)
        await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader

    async def kill(self) -> None:
        await self.stop(signal.SIGKILL)

    async def __aenter__(self) -> BotProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.stop()
