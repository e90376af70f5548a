"""The offline console: chat with the real bot in a terminal, against the Bot API emulator.

The bot runs exactly as in production (polling through PTB's HTTP stack, the outbox
worker, the scheduler) but its Telegram is the local emulator, populated with the
sample users and duty rooms. Type a message to send it as the current user in the
current chat; `:help` lists the console's own commands.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import TextIO

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.app import build_application, shutdown, startup
from bot.config import Settings
from bot.emulator import ApiCall, BotApiEmulator
from bot.runner import make_services
from bot.testing import MESSAGE_METHODS, TEST_TOKEN
from storage.db import Database
from storage.models import DutyRoom, User

QUIET_SECONDS = 0.4
MAX_WAIT_SECONDS = 8.0
TAG = re.compile(r"<[^>]+>")

HELP = """console commands:
  :users            list the sample users          :user N     become user N
  :chats            list the chats                 :chat N     switch to chat N (0 = private)
  :press N          press button N of the last message shown
  :show             show the current chat's messages again
  :help             this list                      :quit       leave (also Ctrl-D)
anything else is sent as a message, e.g.  /help   四川 刑侦   /contact 云南 禁毒"""


@dataclass
class Person:
    telegram_id: int
    name: str
    role: str
    unit: str


@dataclass
class Room:
    chat_id: int
    title: str


@dataclass
class ConsoleState:
    people: list[Person]
    rooms: list[Room]
    user: Person
    chat_id: int
    seen: int = 0
    buttons: list[tuple[ApiCall, str, str]] = field(default_factory=list)


def plain(text: str) -> str:
    """Telegram HTML as terminal text."""
    text = re.sub(r"<a href=\"tel:[^\"]*\">([^<]*)</a>", r"\1", text)
    return html.unescape(TAG.sub("", text))


async def load_cast(db: Database) -> tuple[list[Person], list[Room]]:
    async with db.session() as session:
        users = (
            await session.execute(
                select(User).options(selectinload(User.unit)).where(User.active.is_(True))
                .order_by(User.id)
            )
        ).scalars()
        people = [Person(u.telegram_id, u.full_name or str(u.telegram_id), u.role.value,
                         u.unit.short_name if u.unit else "")
                  for u in sorted(users, key=lambda u: -u.role.rank)]
        rooms = [
            Room(r.chat_id, r.title)
            for r in (
                await session.execute(
                    select(DutyRoom).where(DutyRoom.chat_id.is_not(None), DutyRoom.active.is_(True))
                    .order_by(DutyRoom.id)
                )
            ).scalars()
            if r.chat_id is not None
        ]
    return people, rooms


class Console:
    def __init__(self, emulator: BotApiEmulator, state: ConsoleState, out: TextIO) -> None:
        self.emulator = emulator
        self.state = state
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def chat_name(self, chat_id: int) -> str:
        if chat_id == self.state.user.telegram_id:
            return "private chat"
        for room in self.state.rooms:
            if room.chat_id == chat_id:
                return room.title
        return str(chat_id)

    def prompt(self) -> str:
        return f"[{self.state.user.name} @ {self.chat_name(self.state.chat_id)}] > "

    async def wait_for_quiet(self) -> None:
        """Until the bot has made no call for a moment: its answer is complete."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_WAIT_SECONDS
        count, changed = len(self.emulator.calls), loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if len(self.emulator.calls) != count:
                count, changed = len(self.emulator.calls), loop.time()
            elif loop.time() - changed >= QUIET_SECONDS:
                return

    def show_new(self) -> None:
        calls = self.emulator.calls[self.state.seen :]
        self.state.seen = len(self.emulator.calls)
        elsewhere: dict[int, int] = {}
        for call in calls:
            if not call.ok:
                continue
            if call.method == "answerCallbackQuery" and call.params.get("text"):
                self.say(f"  (bot pop-up) {plain(call.params['text'])}")
            if call.method not in MESSAGE_METHODS:
                continue
            if call.chat_id != self.state.chat_id:
                if call.chat_id is not None:
                    elsewhere[call.chat_id] = elsewhere.get(call.chat_id, 0) + 1
                continue
            self.render(call)
        for chat_id, count in elsewhere.items():
            self.say(f"  ({count} new message(s) in {self.chat_name(chat_id)}; :chats to switch)")

    def render(self, call: ApiCall) -> None:
        edited = call.method.startswith("edit")
        text = call.params.get("text") or call.params.get("caption") or ""
        if call.method == "sendDocument":
            text = f"[file] {text}"
        self.say("bot (edited):" if edited else "bot:")
        for line in plain(text).splitlines() or [""]:
            self.say(f"  {line}")
        rows = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
        if rows:
            self.state.buttons = []
            for row in rows:
                labels = []
                for button in row:
                    self.state.buttons.append((call, button.get("text", ""),
                                               button.get("callback_data", "")))
                    labels.append(f"[{len(self.state.buttons)} {button.get('text', '')}]")
                self.say("  " + " ".join(labels))

    async def handle(self, line: str) -> bool:
        """One line of input; False to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith(":"):
            return await self.command(line[1:].split())
        self.emulator.push_message(self.state.user.telegram_id, self.state.chat_id, line)
        await self.wait_for_quiet()
        self.show_new()
        return True

    async def command(self, words: list[str]) -> bool:
        verb, args = (words[0].lower(), words[1:]) if words else ("help", [])
        if verb in {"q", "quit", "exit"}:
            return False
        if verb == "users":
            for n, person in enumerate(self.state.people, 1):
                self.say(f"  {n:2}  {person.name}  {person.role}  {person.unit}  "
                         f"(id {person.telegram_id})")
        elif verb == "user" and args and args[0].isdigit() and \
                1 <= int(args[0]) <= len(self.state.people):
            self.state.user = self.state.people[int(args[0]) - 1]
            self.state.chat_id = self.state.user.telegram_id
            self.say(f"  you are now {self.state.user.name}, in your private chat")
        elif verb == "chats":
            self.say("   0  private chat with the bot")
            for n, room in enumerate(self.state.rooms, 1):
                self.say(f"  {n:2}  {room.title}  ({room.chat_id})")
        elif verb == "chat" and args and args[0].isdigit() and \
                0 <= int(args[0]) <= len(self.state.rooms):
            n = int(args[0])
            self.state.chat_id = self.state.rooms[n - 1].chat_id if n else \
                self.state.user.telegram_id
            self.say(f"  now in {self.chat_name(self.state.chat_id)}")
        elif verb == "show":
            for message in self.emulator.messages_in(self.state.chat_id)[-10:]:
                self.render(message)
        elif verb == "press" and args and args[0].isdigit() and \
                1 <= int(args[0]) <= len(self.state.buttons):
            call, label, data = self.state.buttons[int(args[0]) - 1]
            self.say(f"  (pressed {label})")
            self.emulator.push_callback(self.state.user.telegram_id, call.message_ref, data)
            await self.wait_for_quiet()
            self.show_new()
        else:
            self.say(HELP)
        return True


async def run_console(settings: Settings, *, stdin: TextIO = sys.stdin,
                      stdout: TextIO = sys.stdout) -> int:
    # The terminal is the user's chat window: only problems may interrupt it.
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    async with BotApiEmulator() as emulator:
        local = settings.model_copy(update={
            "bot_token": SecretStr(TEST_TOKEN),
            "telegram_base_url": emulator.base_url,
            "telegram_base_file_url": emulator.base_file_url,
        })
        svc = make_services(local)
        people, rooms = await load_cast(svc.db)
        if not people:
            print("the database has no users: import data/sample.yaml first "
                  "(python -m bot import data/sample.yaml)", file=sys.stderr)
            return 1
        for person in people:
            emulator.add_user(person.telegram_id, person.name)
        for room in rooms:
            emulator.add_group(room.chat_id, room.title,
                               members=[p.telegram_id for p in people])
        application = build_application(local, svc)
        state = ConsoleState(people, rooms, people[0], people[0].telegram_id)
        console = Console(emulator, state, stdout)
        async with application:
            await startup(application)
            await application.start()
            await application.updater.start_polling(poll_interval=0.0, timeout=1)  # type: ignore[union-attr]
            await console.wait_for_quiet()
            state.seen = len(emulator.calls)
            console.say("Liaison Desk offline console — the real bot against a local Telegram.")
            console.say(HELP)
            try:
                while True:
                    line = await asyncio.to_thread(_read_line, stdin, console.prompt(), stdout)
                    if line is None or not await console.handle(line):
                        break
            finally:
                await application.updater.stop()  # type: ignore[union-attr]
                await application.stop()
                await shutdown(application)
    return 0


def _read_line(stdin: TextIO, prompt: str, stdout: TextIO) -> str | None:
    stdout.write(prompt)
    stdout.flush()
    line = stdin.readline()
    return line if line else None

