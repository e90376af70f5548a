"""The offline console: chat with the real bot in a terminal, against the Bot API emulator.

The bot runs exactly as in production (polling through PTB's HTTP stack, the outbox
worker, the scheduler) but its Telegram is the local emulator, populated with the
sample users and duty rooms. Type a message to send it as the current user in the
current chat; `:help` lists the console's own commands.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import TextIO

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.app import build_application
from bot.app import shutdown
from bot.app import startup
from bot.config import Settings
from bot.emulator import EMULATOR_TOKEN
from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from bot.emulator.records import utf16_len
from bot.runner import make_services
from bot.updates import OrderedUpdateProcessor
from handlers.common import TELEGRAM_TEXT_LIMIT
from storage import outbox_claims
from storage.db import Database
from storage.models import DutyRoom
from storage.models import User

QUIET_SECONDS = 0.4
MAX_WAIT_SECONDS = 8.0
SHOWN_BY_DEFAULT = 10

HELP = """console commands:
  :users            list the sample users          :user N     become user N
  :chats            list the chats                 :chat N     switch to chat N (0 = private)
  :show [N]         the last N (10) messages of this chat, as they are now, with their buttons
  :press N          press button N of the messages shown last
  :help             this list                      :quit       leave (or Ctrl-D, Ctrl-C)
anything else is sent as a message, e.g.  /help   四川 刑侦   /contact 云南 禁毒
(a message that starts with ":" is sent by doubling it: "::)" sends ":)")
in a duty room, :user N keeps you in the room as someone else (to press 收到, 接收, 确认)"""


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
class Button:
    """A button of a message shown: where it is and what pressing it sends."""

    message_ref: tuple[int, int]
    label: str
    data: str | None  # None: not the bot's (a link, an inline query, a copy button)
    copy: str | None = None  # what a copy button puts on the clipboard


@dataclass
class ConsoleState:
    people: list[Person]
    rooms: list[Room]
    user: Person
    chat_id: int
    seen: int = 0
    buttons: list[Button] = field(default_factory=list)


class Problem(Exception):
    """A console line that cannot be done, worded for the person at the terminal."""


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


def shown_messages(call: ApiCall) -> list[dict[str, Any]]:
    """The messages a call of the bot produced or changed, as the chat shows them."""
    results = call.result if isinstance(call.result, list) else [call.result]
    return [m for m in results if isinstance(m, dict) and "message_id" in m and "chat" in m]


def number(word: str, first: int, last: int, what: str) -> int:
    """A 1-based choice typed at the console, or Problem naming the allowed range."""
    if not (word.isascii() and word.isdigit() and len(word) <= 6 and first <= int(word) <= last):
        raise Problem(f"{word[:40]!r} is not one of the {what}: type a number from {first} "
                      f"to {last}")
    return int(word)


class Console:
    def __init__(self, emulator: BotApiEmulator, state: ConsoleState, out: TextIO,
                 busy: Callable[[], Awaitable[bool]] | None = None) -> None:
        """`busy`: whether the bot still has work (an update not handled yet, an outbox row
        due): the answer is shown once it has none, so that a slow moment does not cut
        it, and a notice is in the duty rooms when its sender is told it went out."""
        self.emulator = emulator
        self.state = state
        self.out = out
        self.busy = busy

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def chat_name(self, chat_id: int) -> str:
        if chat_id == self.state.user.telegram_id:
            return "private chat"
        for room in self.state.rooms:
            if room.chat_id == chat_id:
                return room.title
        for person in self.state.people:
            if person.telegram_id == chat_id:
                return f"private chat of {person.name}"
        return str(chat_id)

    def how_to_reach(self, chat_id: int) -> str:
        if chat_id == self.state.user.telegram_id:
            return ":chat 0"
        for n, room in enumerate(self.state.rooms, 1):
            if room.chat_id == chat_id:
                return f":chat {n}"
        for n, person in enumerate(self.state.people, 1):
            if person.telegram_id == chat_id:
                return f":user {n}"
        return ":chats"

    def in_room(self) -> bool:
        return self.state.chat_id != self.state.user.telegram_id

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
                if self.busy is None or not await self.busy():
                    return
                changed = loop.time()

    def show_new(self) -> None:
        """What the bot did since last time: here in full, elsewhere as a count."""
        calls = self.emulator.calls[self.state.seen :]
        self.state.seen = len(self.emulator.calls)
        here: list[tuple[dict[str, Any], bool]] = []
        elsewhere: dict[int, int] = {}
        for call in calls:
            if not call.ok:
                continue
            if call.method == "answerCallbackQuery" and call.params.get("text"):
                self.say(f"  (bot pop-up) {call.params['text']}")
            for message in shown_messages(call):
                chat_id = message["chat"]["id"]
                if chat_id == self.state.chat_id:
                    here.append((message, call.method.startswith("edit")))
                else:
                    elsewhere[chat_id] = elsewhere.get(chat_id, 0) + 1
        self.display(here)
        for chat_id, count in elsewhere.items():
            self.say(f"  ({count} new message(s) in {self.chat_name(chat_id)}; "
                     f"{self.how_to_reach(chat_id)} then :show)")

    def display(self, messages: list[tuple[dict[str, Any], bool]]) -> None:
        """Print messages; their buttons, numbered across all of them, become pressable."""
        if any(self.keyboard(m) for m, _ in messages):
            self.state.buttons = []
        for message, edited in messages:
            self.render(message, edited)

    @staticmethod
    def keyboard(message: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return (message.get("reply_markup") or {}).get("inline_keyboard") or []

    def render(self, message: dict[str, Any], edited: bool) -> None:
        text = message.get("text") or message.get("caption") or ""
        document = message.get("document")
        if document:
            text = f"[file {document.get('file_name', '')}] {text}"
        elif message.get("photo"):
            text = f"[picture] {text}"
        self.say("bot (edited):" if edited else "bot:")
        for line in text.splitlines() or [""]:
            self.say(f"  {line}")
        ref = (message["chat"]["id"], message["message_id"])
        for row in self.keyboard(message):
            labels = []
            for button in row:
                label = str(button.get("text", ""))
                self.state.buttons.append(Button(ref, label, button.get("callback_data"),
                                                 (button.get("copy_text") or {}).get("text")))
                labels.append(f"[{len(self.state.buttons)} {label}]")
            self.say("  " + " ".join(labels))

    async def handle(self, line: str) -> bool:
        """One line of input; False to leave. A line that cannot be done is explained."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith(":") and not line.startswith("::"):
                return await self.command(line[1:].split())
            await self.send(line[1:] if line.startswith("::") else line)
        except Problem as problem:
            self.say(f"  ({problem})")
        return True

    async def send(self, text: str) -> None:
        if utf16_len(text) > TELEGRAM_TEXT_LIMIT:
            raise Problem(f"Telegram takes at most {TELEGRAM_TEXT_LIMIT} characters in a "
                          f"message; this one has {len(text)}: nothing was sent")
        self.emulator.push_message(self.state.user.telegram_id, self.state.chat_id, text)
        await self.bot_answers()

    async def bot_answers(self) -> None:
        await self.wait_for_quiet()
        self.show_new()

    async def command(self, words: list[str]) -> bool:
        verb, args = (words[0].lower(), words[1:]) if words else ("help", [])
        if verb in {"q", "quit", "exit"}:
            return False
        action = {"users": self.list_users, "user": self.become, "chats": self.list_chats,
                  "chat": self.switch_chat, "show": self.show, "press": self.press,
                  "help": self.help}.get(verb)
        if action is None:
            raise Problem(f"no console command :{verb[:40]}; :help lists them")
        await action(args)
        return True

    async def help(self, _args: list[str]) -> None:
        self.say(HELP)

    async def list_users(self, _args: list[str]) -> None:
        for n, person in enumerate(self.state.people, 1):
            self.say(f"  {n:2}  {person.name}  {person.role}  {person.unit}  "
                     f"(id {person.telegram_id})")

    async def become(self, args: list[str]) -> None:
        if len(args) != 1:
            raise Problem("usage: :user N, N from :users")
        person = self.state.people[number(args[0], 1, len(self.state.people), "users") - 1]
        in_room = self.in_room()
        self.state.user = person
        if in_room:
            self.say(f"  you are now {person.name}, still in {self.chat_name(self.state.chat_id)}")
            return
        self.state.chat_id = person.telegram_id
        self.state.buttons = []
        self.say(f"  you are now {person.name}, in your private chat")

    async def list_chats(self, _args: list[str]) -> None:
        self.say("   0  private chat with the bot")
        for n, room in enumerate(self.state.rooms, 1):
            count = len(self.emulator.messages_in(room.chat_id))
            self.say(f"  {n:2}  {room.title}  ({room.chat_id}; {count} message(s) of the bot)")

    async def switch_chat(self, args: list[str]) -> None:
        if len(args) != 1:
            raise Problem("usage: :chat N, N from :chats (0 = your private chat)")
        n = number(args[0], 0, len(self.state.rooms), "chats")
        self.state.chat_id = self.state.rooms[n - 1].chat_id if n else \
            self.state.user.telegram_id
        self.state.buttons = []
        count = len(self.emulator.messages_in(self.state.chat_id))
        self.say(f"  now in {self.chat_name(self.state.chat_id)}"
                 + (f"; {count} message(s) of the bot here, :show shows them" if count else ""))

    async def show(self, args: list[str]) -> None:
        if len(args) > 1:
            raise Problem("usage: :show [N], the last N messages (10 if not given)")
        count = number(args[0], 1, 999, "counts of messages") if args else SHOWN_BY_DEFAULT
        messages = self.emulator.messages_in(self.state.chat_id)[-count:]
        if not messages:
            self.say(f"  (no message of the bot in {self.chat_name(self.state.chat_id)} yet)")
            return
        self.display([(m, "edit_date" in m) for m in messages])

    async def press(self, args: list[str]) -> None:
        if len(args) != 1:
            raise Problem("usage: :press N, N a button of the messages shown (:show)")
        if not self.state.buttons:
            raise Problem("no button to press: :show shows this chat's messages with theirs")
        button = self.state.buttons[number(args[0], 1, len(self.state.buttons), "buttons") - 1]
        if button.copy is not None:
            self.say(f"  (copied: {button.copy})")
            return
        if button.data is None:
            raise Problem(f"[{button.label}] opens a link, not a button of the bot: "
                          "the console cannot follow it")
        self.say(f"  (pressed {button.label})")
        self.emulator.push_callback(self.state.user.telegram_id, button.message_ref,
                                    button.data)
        await self.bot_answers()


async def run_console(settings: Settings, *, stdin: TextIO = sys.stdin,
                      stdout: TextIO = sys.stdout) -> int:
    # The terminal is the user's chat window: only problems may interrupt it.
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    if isinstance(stdin, io.TextIOWrapper):
        stdin.reconfigure(errors="replace")  # bytes that are not UTF-8 are still a line
    async with BotApiEmulator() as emulator:
        local = settings.model_copy(update={
            "bot_token": SecretStr(EMULATOR_TOKEN),
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

        processor = application.update_processor
        assert isinstance(processor, OrderedUpdateProcessor)

        async def busy() -> bool:
            # Rows the worker holds are not due any more, and may stay quiet a while
            # (a rate window, a slow answer): still part of the answer.
            if emulator.pending_updates or application.update_queue.qsize() or \
                    processor.waiting or (svc.delivery and svc.delivery.stats()["in_flight"]):
                return True
            async with svc.db.session() as session:
                return await outbox_claims.due_count(session, svc.now()) > 0

        console = Console(emulator, state, stdout, busy)
        async with application:
            await startup(application)
            await application.start()
            # bot/app.py always builds an Updater; PTB types it optional.
            await application.updater.start_polling(poll_interval=0.0, timeout=1)  # type: ignore[union-attr]
            await console.wait_for_quiet()
            state.seen = len(emulator.calls)
            console.say("Liaison Desk offline console — the real bot against a local Telegram.")
            console.say(HELP)
            lines = _lines(stdin)
            try:
                while True:
                    stdout.write(console.prompt())
                    stdout.flush()
                    line = await anext(lines, None)
                    if line is None or not await console.handle(line):
                        break
            finally:
                await application.updater.stop()  # type: ignore[union-attr]  # as above
                await application.stop()
                await shutdown(application)
    return 0


async def _lines(stdin: TextIO) -> AsyncIterator[str]:
    """The typed lines, read by a daemon thread: Ctrl-C then ends the console at once
    (a read in the default executor would be waited for at exit, until Enter)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = stdin.readline()
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:  # the console has closed
                return
            if not line:
                return

    threading.Thread(target=read, name="console-input", daemon=True).start()
    while line := await queue.get():
        yield line
