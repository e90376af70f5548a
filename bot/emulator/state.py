"""The world of a test as Telegram holds it: the bot, users, chats and their members,
messages, files, queued updates and the bot's settings. The emulator's method families
(bot.emulator.updates, .messages, .lookups) build on it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import aiohttp

from bot.emulator.records import ApiError
from bot.emulator.records import Stats
from bot.emulator.records import StoredFile
from bot.emulator.spec import Spec
from bot.emulator.spec import load_spec

UPDATE_TYPES = ("message", "edited_message", "channel_post", "edited_channel_post",
                "business_connection", "business_message", "edited_business_message",
                "deleted_business_messages", "guest_message", "message_reaction",
                "message_reaction_count", "inline_query", "chosen_inline_result",
                "callback_query", "shipping_query", "pre_checkout_query",
                "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member",
                "chat_join_request", "chat_boost", "removed_chat_boost", "managed_bot")
# What getUpdates delivers until allowed_updates says otherwise (Telegram's default).
DEFAULT_ALLOWED = frozenset(UPDATE_TYPES) - {"chat_member", "message_reaction",
                                             "message_reaction_count"}
MEMBER_TYPES = {"creator": "ChatMemberOwner", "administrator": "ChatMemberAdministrator",
                "member": "ChatMemberMember", "restricted": "ChatMemberRestricted",
                "left": "ChatMemberLeft", "kicked": "ChatMemberBanned"}


class TelegramState:
    """What the emulated Telegram knows, and the chats and users a test adds to it."""

    def __init__(self, *, bot_username: str, bot_id: int, bot_name: str,
                 clock: Callable[[], float] = time.time, auto_users: bool = True) -> None:
        self.bot_username, self.bot_id, self.bot_name = bot_username, bot_id, bot_name
        self.clock = clock
        self.auto_users = auto_users
        self.spec: Spec = load_spec()
        self.stats = Stats()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.webhook: dict[str, Any] = {}
        self.polls_waiting = 0  # getUpdates calls waiting for an update (long polling)
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._usernames: dict[str, int] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._bot_messages: defaultdict[int, list[int]] = defaultdict(list)
        self._last_message_id: defaultdict[int, int] = defaultdict(int)
        self._last_from: dict[tuple[int, int], int] = {}
        self._files: dict[str, StoredFile] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._allowed = DEFAULT_ALLOWED
        self._update_arrived = asyncio.Event()
        self._open_queries: set[str] = set()
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(4_380_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._media_groups = itertools.count(13_000_000_000_001)
        self._closing = False  # set by stop(): long polls and stalled answers end at once
        self._session: aiohttp.ClientSession | None = None  # posts to the bot's webhook
        self._message_fields = self.spec.fields("Message")

    # ------------------------------------------------------------------ the cast

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_name,
                "username": self.bot_username}

    def add_user(self, user_id: int, first_name: str, last_name: str | None = None,
                 username: str | None = None,
                 language_code: str | None = "zh-hans") -> dict[str, Any]:
        """A user and their private chat with the bot."""
        if user_id <= 0:
            raise ValueError(f"user ids are positive, got {user_id}")
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value:
                user[key] = chat[key] = value
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        self._chats[user_id] = chat
        if username:
            self._usernames[username.lower()] = user_id
        return user

    def add_group(self, chat_id: int, title: str, members: Iterable[int] = (), *,
                  username: str | None = None, bot_status: str = "member") -> dict[str, Any]:
        """A supergroup the bot is in (as `bot_status`), with `members` as plain members."""
        if chat_id >= 0:
            raise ValueError(f"group chat ids are negative, got {chat_id}")
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
        if username:
            chat["username"] = username
            self._usernames[username.lower()] = chat_id
        self._chats[chat_id] = chat
        self._members[(chat_id, self.bot_id)] = bot_status
        for member in members:
            self._members.setdefault((chat_id, member), "member")
        return chat

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        """creator, administrator, member, restricted, left or kicked."""
        if status not in MEMBER_TYPES:
            raise ValueError(f"status must be one of {sorted(MEMBER_TYPES)}, got {status!r}")
        self._members[(chat_id, user_id)] = status

    def member_status(self, chat_id: int, user_id: int) -> str:
        if chat_id > 0:  # a private chat: its user, and the bot unless the user blocked it
            default = "member" if user_id in (chat_id, self.bot_id) else "left"
            return self._members.get((chat_id, user_id), default)
        return self._members.get((chat_id, user_id), "left")

    def user(self, user_id: int) -> dict[str, Any]:
        if user_id == self.bot_id:
            return self.bot_user
        if user_id not in self._users:
            self.add_user(user_id, f"User {user_id}")
        return self._users[user_id]

    def chat(self, chat_id: int) -> dict[str, Any]:
        """The chat as Telegram describes it; ApiError "chat not found" when unknown."""
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0 and self.auto_users:
                self.add_user(chat_id, f"User {chat_id}")
                return self._chats[chat_id]
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def add_file(self, content: bytes, file_name: str | None = None,
                 mime_type: str | None = None) -> str:
        """A file Telegram holds (say, one a user sent); returns its file_id."""
        number = next(self._file_ids)
        stored = StoredFile(f"EMU-FILE-{number:08d}", f"emu{number:08d}", file_name, mime_type,
                            content)
        self._files[stored.file_id] = stored
        return stored.file_id

    def file(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    # ------------------------------------------------------------------ messages

    def _known_chat(self, chat_id: int) -> dict[str, Any]:
        try:
            return self.chat(chat_id)
        except ApiError:
            raise LookupError(f"unknown chat {chat_id}: add_group() it first") from None

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] += 1
        return self._last_message_id[chat_id]

    def _resolve(self, value: Any) -> int:
        if isinstance(value, str):
            chat_id = self._usernames.get(value.removeprefix("@").lower())
            if chat_id is None:
                raise ApiError(400, "Bad Request: chat not found")
            return chat_id
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, "Bad Request: chat not found")
        self.chat(value)
        return value

    @staticmethod
    def _quoted(message: dict[str, Any]) -> dict[str, Any]:
        """A replied-to message, which Telegram sends without its own reply_to_message."""
        return {k: v for k, v in message.items() if k != "reply_to_message"}

    @staticmethod
    def _photo_size(stored: StoredFile) -> dict[str, Any]:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size, "width": 1280, "height": 960}

    def _media(self, type_name: str, stored: StoredFile) -> dict[str, Any]:
        declared = self.spec.fields(type_name)
        value: dict[str, Any] = {"file_id": stored.file_id,
                                 "file_unique_id": stored.file_unique_id}
        for name in ("file_name", "mime_type", "file_size"):
            if name in declared and getattr(stored, name) is not None:
                value[name] = getattr(stored, name)
        return self.spec.fill(type_name, value)

    def messages_in(self, chat_id: int) -> list[dict[str, Any]]:
        """What the chat shows now of the bot's messages: edits applied, deletions gone."""
        return [self._messages[(chat_id, m)] for m in self._bot_messages[chat_id]
                if (chat_id, m) in self._messages]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message (the bot's or a user's) as it is now."""
        return self._messages.get((chat_id, message_id))

    def sent_texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.messages_in(chat_id)]
