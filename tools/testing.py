"""Drive the real Application against the Bot API emulator, update by update.

Used by the tests and the benchmarks (not shipped in the wheel):
`await bot.send(user, "/contact 四川")` feeds a real update through
`Application.process_update` and returns the Bot API calls the bot made while handling it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.app import build_application
from bot.app import shutdown
from bot.app import startup
from bot.config import Settings
from bot.config import load_settings
from bot.emulator import EMULATOR_TOKEN as TEST_TOKEN
from bot.emulator import ApiCall
from bot.emulator import BotApiEmulator
from bot.services import Services
from bot.services import system_now
from storage.db import Database


@dataclass
class Sent:
    """What the bot did while handling one update."""

    calls: list[ApiCall]

    @property
    def texts(self) -> list[str]:
        return [c.params.get("text") or c.params.get("caption") or "" for c in self.messages]

    @property
    def messages(self) -> list[ApiCall]:
        return [c for c in self.calls if c.method in MESSAGE_METHODS and c.ok]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback_data) of every inline button in what was sent or edited."""
        found: list[tuple[str, str]] = []
        for call in self.messages:
            markup = call.params.get("reply_markup") or {}
            for row in markup.get("inline_keyboard", []):
                found += [(b.get("text", ""), b.get("callback_data", "")) for b in row]
        return found

    @property
    def alerts(self) -> list[str]:
        return [c.params.get("text", "") for c in self.calls
                if c.method == "answerCallbackQuery" and c.params.get("text")]


# The emulator enforces no rate limits unless a test asks it to (and then sets
# DELIVERY_RATE to match): the bot's send budget at Telegram's 30 a second would only
# make tests that send quickly wait.
UNLIMITED_RATE = 1000

MESSAGE_METHODS = {"sendMessage", "editMessageText", "sendDocument", "sendPhoto",
                   "editMessageCaption", "editMessageReplyMarkup"}

# Telegram takes about one message a second in a private chat, and the delivery worker
# keeps to that; the emulator holds the bot to it only when a test asks it to
# (enforce_limits). Otherwise the pacing would only make a test that writes to one
# person twice wait a second (a third of the time of the tests through the harness), so
# the harness lifts it unless given `private_per_second`.
UNPACED = 1000


class BotHarness:
    def __init__(
        self,
        emulator: BotApiEmulator,
        database_url: str,
        *,
        now: Callable[[], datetime] = system_now,
        private_per_second: int = UNPACED,
        **settings: Any,
    ) -> None:
        self.emulator = emulator
        # The emulator's URLs unless `settings` name others (a proxy in front of it);
        # audit archives in a directory of the harness's own, never the working one.
        self._archives = tempfile.TemporaryDirectory(prefix="audit-archive-")
        defaults = {"telegram_base_url": emulator.base_url,
                    "telegram_base_file_url": emulator.base_file_url,
                    "delivery_rate": UNLIMITED_RATE, "audit_archive_dir": self._archives.name}
        self.settings: Settings = load_settings(
            _env_file=None,
            bot_token=TEST_TOKEN,
            database_url=database_url,
            **{**defaults, **settings},
        )
        self.services = Services(settings=self.settings, db=Database(database_url), now=now)
        self.application: Application = build_application(self.settings, self.services)
        assert self.services.delivery is not None
        self.services.delivery.settings.private_per_second = private_per_second

    @property
    def db(self) -> Database:
        return self.services.db

    async def __aenter__(self) -> BotHarness:
        await self.application.initialize()
        await startup(self.application, background=False)
        return self

    async def deliver(self, timeout: float = 30.0) -> Sent:  # noqa: ASYNC109
        """Send everything due in the outbox; returns the calls that made."""
        before = len(self.emulator.calls)
        assert self.services.delivery is not None
        await self.services.delivery.drain(timeout=timeout)
        return Sent(self.emulator.calls[before:])

    async def run_due(self, now: datetime | None = None) -> Sent:
        """Fire what the scheduler has due at `now` (default: the harness clock), deliver it."""
        assert self.services.scheduler is not None
        await self.services.scheduler.run_due(now)
        return await self.deliver()

    async def __aexit__(self, *exc: object) -> None:
        await shutdown(self.application)
        await self.application.shutdown()
        self._archives.cleanup()

    async def feed(self, update: dict[str, Any]) -> Sent:
        before = len(self.emulator.calls)
        await self.application.process_update(Update.de_json(update, self.application.bot))
        return Sent(self.emulator.calls[before:])

    async def send(self, user_id: int, text: str, *, chat_id: int | None = None) -> Sent:
        return await self.feed(
            self.emulator.make_message_update(user_id, chat_id or user_id, text)
        )

    async def press(self, user_id: int, sent: Sent | ApiCall, label: str) -> Sent:
        """Press the button whose label contains `label` (or whose data equals it); only
        buttons that send the bot something (not a copy button) are pressed."""
        call = sent if isinstance(sent, ApiCall) else _last_with_buttons(sent.messages)
        data = None
        for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if "callback_data" in button and (
                        label == button["callback_data"] or label in button.get("text", "")):
                    data = button["callback_data"]
                    break
            if data:
                break
        if data is None:
            raise AssertionError(f"no button {label!r} in {call.params.get('reply_markup')}")
        return await self.press_data(user_id, call, data)

    async def press_data(self, user_id: int, call: ApiCall, data: str) -> Sent:
        chat_id, message_id = call.message_ref
        return await self.feed(
            self.emulator.make_callback_update(user_id, (chat_id, message_id), data)
        )


def _last_with_buttons(calls: Sequence[ApiCall]) -> ApiCall:
    for call in reversed(calls):
        if (call.params.get("reply_markup") or {}).get("inline_keyboard"):
            return call
    raise AssertionError("the bot sent no inline buttons")
