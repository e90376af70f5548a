"""A local Telegram Bot API for tests, benchmarks and the offline console.

The bot talks to it through PTB's real HTTP stack (`base_url`). Every call is checked
against the Bot API 10.0 specification (unknown method: 404; missing or unknown
parameter: 400 with Telegram's envelope), recorded, and answered with an object of the
declared type. Tests inject updates (messages, button presses, inline queries, the bot
added to or removed from a group) and faults (429 with retry_after, 5xx, stalls, dropped
connections), and can switch on Telegram's flood limits.

Per-call work is constant (dictionary lookups, no scans of what was recorded) so
benchmarks can push thousands of messages a second through it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.emulator.faults import Fault, Faults, Limits
from bot.emulator.spec import SCALARS, Kind, Method, Spec, decode, load_spec

BOT_ID = 7000000001
# The token the console and the tests give the bot for the emulator: shaped like a real
# one (this bot's id, a colon, 35 characters), so the log redaction tests mean something.
EMULATOR_TOKEN = f"{BOT_ID}:AAF-emulator-test-token-0123456789abc"
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
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of "
                "the message")
MAX_TEXT, MAX_CAPTION, MAX_CALLBACK_DATA = 4096, 1024, 64
# Compared by "message is not modified".
SHOWN = ("text", "entities", "caption", "caption_entities", "reply_markup")
# Not carried over by copyMessage / forwardMessage.
MESSAGE_META = frozenset({"message_id", "from", "chat", "date", "edit_date", "reply_markup",
                          "reply_to_message", "forward_origin", "media_group_id"})
BUTTON_ACTIONS = frozenset({"url", "callback_data", "web_app", "login_url",
                            "switch_inline_query", "switch_inline_query_current_chat",
                            "switch_inline_query_chosen_chat", "copy_text", "callback_game",
                            "pay"})
COMMAND = re.compile(r"[a-z0-9_]{1,32}")
LANGUAGE = re.compile(r"[a-z]{2}")
MEMBER_TYPES = {"creator": "ChatMemberOwner", "administrator": "ChatMemberAdministrator",
                "member": "ChatMemberMember", "restricted": "ChatMemberRestricted",
                "left": "ChatMemberLeft", "kicked": "ChatMemberBanned"}
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})


class ApiError(Exception):
    """An answer in Telegram's error envelope."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code,
                                "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass(slots=True)
class StoredFile:
    """A file Telegram knows: uploaded by the bot, sent by a user, or fetched from a URL."""

    file_id: str
    file_unique_id: str
    file_name: str | None
    mime_type: str | None
    content: bytes

    @property
    def file_size(self) -> int:
        return len(self.content)


@dataclass(slots=True)
class ApiCall:
    """One request, as the emulator understood and answered it."""

    method: str
    params: dict[str, Any]
    chat_id: int | None
    time: float
    token: str = ""
    ok: bool = True
    status: int = 200  # HTTP status answered; 0 when the connection was dropped
    result: Any = None
    error: str | None = None
    error_code: int | None = None
    fault: str | None = None  # the injected fault, if any
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # part -> name, content

    @property
    def message_ref(self) -> tuple[int, int]:
        """(chat_id, message_id) of the message this call produced or edited."""
        result = self.result[0] if isinstance(self.result, list) and self.result else self.result
        if isinstance(result, dict) and "message_id" in result:
            chat = result.get("chat")
            return (chat["id"] if chat else int(self.chat_id or 0)), result["message_id"]
        return int(self.chat_id or 0), int(self.params["message_id"])


class Stats(Counter[str]):
    """Counts by event — "requests", "sent", "edited", "rate_limited" (every 429 answered),
    "over_limit" (429s from enforced limits) — and accepted sends per chat."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_per_chat: Counter[int] = Counter()


def utf16_len(text: str) -> int:
    """Telegram measures offsets and lengths in UTF-16 code units."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


# ------------------------------------------------------------------ HTML parse mode

HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
ATTRIBUTE = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
HTML_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
             "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
             "del": "strikethrough", "span": "spoiler", "tg-spoiler": "spoiler",
             "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
             "tg-emoji": "custom_emoji", "tg-time": "date_time"}
NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _unescape(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in NAMED:
        return NAMED[name]
    return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))


def _entity_error(source: str, at: int, what: str) -> ApiError:
    offset = len(source[:at].encode())
    return ApiError(400, f"Bad Request: can't parse entities: {what} at byte offset {offset}")


def parse_html(source: str, user: Callable[[int], dict[str, Any]]) -> tuple[
        str, list[dict[str, Any]]]:
    """Text and entities of an HTML-formatted text, with Telegram's strictness: only its
    tags, properly nested, and every literal "<" escaped."""
    parts: list[str] = []
    length = 0
    stack: list[tuple[str, dict[str, str], int]] = []
    entities: list[dict[str, Any]] = []
    position = 0
    while True:
        opening = source.find("<", position)
        chunk = source[position:] if opening < 0 else source[position:opening]
        if chunk:
            plain = HTML_ENTITY.sub(_unescape, chunk)
            parts.append(plain)
            length += utf16_len(plain)
        if opening < 0:
            break
        tag = TAG.match(source, opening)
        if tag is None:
            raise _entity_error(source, opening, "Unexpected character \"<\"")
        closing, name, rest = tag.group(1), tag.group(2).lower(), tag.group(3)
        if closing:
            if not stack:
                raise _entity_error(source, opening, f'Unexpected end tag "{name}"')
            open_name, attributes, start = stack.pop()
            if open_name != name:
                raise _entity_error(source, opening, f'Unmatched end tag, expected '
                                                     f'"</{open_name}>", found "</{name}>"')
            entity = _html_entity(open_name, attributes, start, length, stack, user)
            if entity is not None:
                entities.append(entity)
        else:
            attributes = {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or ""
                          for m in ATTRIBUTE.finditer(rest)}
            if name not in HTML_TAGS or (name == "span"
                                         and attributes.get("class") != "tg-spoiler"):
                raise _entity_error(source, opening, f'Unsupported start tag "{name}"')
            stack.append((name, attributes, length))
        position = tag.end()
    if stack:
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end tag "
                            f'corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(parts), entities


def _html_entity(name: str, attributes: dict[str, str], start: int, end: int,
                 stack: list[tuple[str, dict[str, str], int]],
                 user: Callable[[int], dict[str, Any]]) -> dict[str, Any] | None:
    if end == start:
        return None  # Telegram drops empty entities
    entity: dict[str, Any] = {"type": HTML_TAGS[name], "offset": start, "length": end - start}
    if name == "code" and stack and stack[-1][0] == "pre" and "class" in attributes:
        stack[-1][1]["language"] = attributes["class"].removeprefix("language-")
        return None  # the language of the enclosing pre block
    if name == "pre" and "language" in attributes:
        entity["language"] = attributes["language"]
    elif name == "a":
        href = attributes.get("href", "")
        if href.startswith("tg://user?id=") and href[13:].isdigit():
            entity.update(type="text_mention", user=user(int(href[13:])))
        elif href:
            entity["url"] = href
        else:
            return None
    elif name == "blockquote" and "expandable" in attributes:
        entity["type"] = "expandable_blockquote"
    elif name == "tg-emoji":
        entity["custom_emoji_id"] = attributes.get("emoji-id", "")
    elif name == "tg-time":
        entity["unix_time"] = int(attributes.get("unix", "0") or 0)
        if attributes.get("format"):
            entity["date_time_format"] = attributes["format"]
    return entity


# ------------------------------------------------------------------ entities in updates

USER_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w@])")
USER_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{4,32}(?!\w)")


def detect_entities(text: str) -> list[dict[str, Any]]:
    """The bot_command and mention entities Telegram adds to what a user types."""
    found = [(m, "bot_command") for m in USER_COMMAND.finditer(text)]
    taken = [(m.start(), m.end()) for m, _ in found]
    found += [(m, "mention") for m in USER_MENTION.finditer(text)
              if not any(a <= m.start() < b for a, b in taken)]
    entities = [{"type": kind, "offset": utf16_len(text[: m.start()]),
                 "length": utf16_len(m.group(0))} for m, kind in found]
    return sorted(entities, key=lambda e: e["offset"])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# ------------------------------------------------------------------ the emulator


class BotApiEmulator:
    """The Bot API on 127.0.0.1, with the chats, messages and updates of a test."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 bot_username: str = "liaison_desk_bot", bot_id: int = BOT_ID,
                 bot_name: str = "Liaison Desk", clock: Callable[[], float] = time.time,
                 auto_users: bool = True) -> None:
        """`auto_users`: a private chat with a user never added is created on first use
        (Telegram would say "chat not found"; most tests do not care who the user is)."""
        self.host, self.port = host, port
        self.bot_username, self.bot_id, self.bot_name = bot_username, bot_id, bot_name
        self.clock = clock
        self.auto_users = auto_users
        self.spec: Spec = load_spec()
        self.faults = Faults()
        self.calls: list[ApiCall] = []
        self.tokens: set[str] = set()
        # Tokens answered 401 Unauthorized, as Telegram answers a revoked token.
        self.rejected_tokens: set[str] = set()
        self.stats = Stats()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.webhook: dict[str, Any] = {}
        self.polls_waiting = 0  # getUpdates calls waiting for an update (long polling)
        self._limits: Limits | None = None
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
        self._call_recorded = asyncio.Event()
        self._open_queries: set[str] = set()
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(4_380_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._media_groups = itertools.count(13_000_000_000_001)
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._message_fields = self.spec.fields("Message")
        self._send_methods = frozenset(
            key for key, m in self.spec.methods.items()
            if key.startswith(("send", "copy", "forward"))
            and m.returns[0] in {"Message", "Array of Message", "MessageId", "Array of MessageId"})
        # What counts toward the bot's overall rate (edits and button answers too, not
        # only sends); the per-chat limits count sends.
        self._rate_counted = self._send_methods | {
            key for key in self.spec.methods if key.startswith("editmessage")} | {
            "answercallbackquery", "answerinlinequery"}
        self._handlers: dict[str, Callable[[ApiCall], Any]] = {
            "getme": self._get_me, "getupdates": self._check_polling,
            "setwebhook": self._set_webhook, "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmediagroup": self._send_media_group, "copymessage": self._copy_message,
            "forwardmessage": self._forward_message,
            "editmessagetext": self._edit_text, "editmessagecaption": self._edit_caption,
            "editmessagereplymarkup": self._edit_reply_markup,
            "deletemessage": self._delete_message, "deletemessages": self._delete_messages,
            "answercallbackquery": self._answer_query, "answerinlinequery": self._answer_query,
            "setmycommands": self._set_commands, "getmycommands": self._get_commands,
            "deletemycommands": self._delete_commands,
            "setchatmenubutton": self._set_menu_button,
            "getchatmenubutton": self._get_menu_button,
            "getchat": self._get_chat, "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
            "getchatmembercount": self._get_chat_member_count, "getfile": self._get_file,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> BotApiEmulator:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Long polls and stalled answers end at once; then the server closes."""
        self._closing = True
        self._update_arrived.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

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
        if chat_id > 0:
            return "member" if user_id in (chat_id, self.bot_id) else "left"
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

    # ------------------------------------------------------------------ updates in

    def _known_chat(self, chat_id: int) -> dict[str, Any]:
        try:
            return self.chat(chat_id)
        except ApiError:
            raise LookupError(f"unknown chat {chat_id}: add_group() it first") from None

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] += 1
        return self._last_message_id[chat_id]

    def _update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"update_id": next(self._update_ids), kind: payload}

    def make_message_update(
        self, user_id: int, chat_id: int, text: str | None = None, *,
        reply_to: int | tuple[int, int] | None = None, photo: bytes | str | None = None,
        document: str | tuple[str, bytes] | None = None, edited: bool = False,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """A message from a user, as Telegram delivers it.

        `photo`/`document`: a file_id, or content (a document as (file name, content));
        `text` is then the caption. `reply_to`: a message id in this chat, or (chat_id,
        message_id). `edited`: an edited_message for `message_id` (default: the user's
        last message in the chat).
        """
        chat = self._known_chat(chat_id)
        if chat["type"] == "private" and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot write in the private chat of {chat_id}")
        sender = self.user(user_id)
        if chat_id < 0:
            self._members.setdefault((chat_id, user_id), "member")
        now = int(self.clock())
        if edited:
            message_id = message_id or self._last_from.get((chat_id, user_id))
            if message_id is None or (chat_id, message_id) not in self._messages:
                raise LookupError(f"no message {message_id} of user {user_id} in {chat_id}")
            date = self._messages[(chat_id, message_id)]["date"]
        else:
            message_id, date = self._next_message_id(chat_id), now
        message: dict[str, Any] = {"message_id": message_id, "from": sender, "chat": chat,
                                   "date": date}
        if edited:
            message["edit_date"] = now
        if reply_to is not None:
            key = reply_to if isinstance(reply_to, tuple) else (chat_id, reply_to)
            if key not in self._messages:
                raise LookupError(f"no message {key} to reply to")
            message["reply_to_message"] = self._quoted(self._messages[key])
        if photo is not None:
            file_id = photo if isinstance(photo, str) else self.add_file(photo, "photo.jpg",
                                                                         "image/jpeg")
            message["photo"] = [self._photo_size(self._user_file(file_id))]
        if document is not None:
            file_id = document if isinstance(document, str) else self.add_file(
                document[1], document[0])
            message["document"] = self._media("Document", self._user_file(file_id))
        if text is not None:
            key = "caption" if photo is not None or document is not None else "text"
            message[key] = text
            entities = detect_entities(text)
            if entities:
                message["caption_entities" if key == "caption" else "entities"] = entities
        self._messages[(chat_id, message_id)] = message
        self._last_from[(chat_id, user_id)] = message_id
        return self._update("edited_message" if edited else "message", message)

    def _user_file(self, file_id: str) -> StoredFile:
        if file_id not in self._files:
            self._files[file_id] = StoredFile(file_id, file_id[-16:], None, None, b"")
        return self._files[file_id]

    def make_callback_update(self, user_id: int, message_ref: tuple[int, int],
                             data: str) -> dict[str, Any]:
        """A button press on a message, with the message as it is now; `data` may be forged.

        A message that no longer exists arrives as an InaccessibleMessage (date 0).
        """
        chat_id, message_id = message_ref
        message = self._messages.get(message_ref) or {
            "chat": self._known_chat(chat_id), "message_id": message_id, "date": 0}
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return self._update("callback_query", {
            "id": query_id, "from": self.user(user_id), "message": message,
            "chat_instance": str(chat_id), "data": data})

    def expire_query(self, query_id: str) -> None:
        """The callback or inline query can no longer be answered, as when the bot answers
        after Telegram's ~15 s: answering it gets 400 "query is too old"."""
        self._open_queries.discard(query_id)

    def make_inline_query_update(self, user_id: int, query: str,
                                 offset: str = "") -> dict[str, Any]:
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return self._update("inline_query", {
            "id": query_id, "from": self.user(user_id), "query": query, "offset": offset,
            "chat_type": "sender"})

    def make_my_chat_member_update(self, chat_id: int, by_user_id: int,
                                   new_status: str = "member",
                                   old_status: str | None = None) -> dict[str, Any]:
        """The bot added to (new_status "member"/"administrator") or removed from ("left",
        "kicked") a group by a user; the bot's status in the group changes accordingly."""
        chat = self._known_chat(chat_id)
        old_status = old_status or self.member_status(chat_id, self.bot_id)
        self.set_member_status(chat_id, self.bot_id, new_status)

        def member(status: str) -> dict[str, Any]:
            return self.spec.fill(MEMBER_TYPES[status], {"status": status,
                                                         "user": self.bot_user})

        return self._update("my_chat_member", {
            "chat": chat, "from": self.user(by_user_id), "date": int(self.clock()),
            "old_chat_member": member(old_status), "new_chat_member": member(new_status)})

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; returns it."""
        self._updates.append(update)
        self._update_arrived.set()
        return update

    def push_message(self, user_id: int, chat_id: int, text: str | None = None,
                     **kwargs: Any) -> dict[str, Any]:
        return self.enqueue(self.make_message_update(user_id, chat_id, text, **kwargs))

    def push_callback(self, user_id: int, message_ref: tuple[int, int],
                      data: str) -> dict[str, Any]:
        return self.enqueue(self.make_callback_update(user_id, message_ref, data))

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    async def deliver_webhook(self, update: dict[str, Any]) -> int:
        """POST an update to the webhook set with setWebhook, as Telegram would (with the
        secret token header); returns the HTTP status the bot answered."""
        if not self.webhook.get("url"):
            raise RuntimeError("no webhook is set: the bot has not called setWebhook")
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = json.dumps(update, ensure_ascii=False).encode()
        async with self._session.post(self.webhook["url"], data=body,
                                      headers=headers) as response:
            return response.status

    # ------------------------------------------------------------------ what the bot did

    def calls_for(self, chat_id: int, methods: Iterable[str] | None = None) -> list[ApiCall]:
        wanted = {m.lower() for m in methods} if methods else None
        return [c for c in self.calls if c.chat_id == chat_id
                and (wanted is None or c.method.lower() in wanted)]

    def messages_in(self, chat_id: int) -> list[dict[str, Any]]:
        """What the chat shows now of the bot's messages: edits applied, deletions gone."""
        return [self._messages[(chat_id, m)] for m in self._bot_messages[chat_id]
                if (chat_id, m) in self._messages]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """A message (the bot's or a user's) as it is now."""
        return self._messages.get((chat_id, message_id))

    def sent_texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.messages_in(chat_id)]

    def commands_for(self, scope: dict[str, Any] | None = None,
                     language_code: str = "") -> list[dict[str, Any]]:
        """The command menu set for a scope (default: {"type": "default"}) and language."""
        return self.commands.get(_scope_key(scope, language_code), [])

    def clear_calls(self) -> None:
        self.calls.clear()

    async def wait_for_calls(
        self, n: int, method: str | None = None, chat_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ApiCall]:
        """The first `n` recorded calls matching; TimeoutError if they do not come."""
        wanted = method.lower() if method else None
        found: list[ApiCall] = []
        scanned = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if scanned > len(self.calls):  # cleared meanwhile
                found, scanned = [], 0
            for call in self.calls[scanned:]:
                if (wanted is None or call.method.lower() == wanted) and (
                        chat_id is None or call.chat_id == chat_id):
                    found.append(call)
            scanned = len(self.calls)
            if len(found) >= n:
                return found[:n]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(found)} of {n} calls (method={method}, "
                                   f"chat_id={chat_id}) after {timeout}s")
            self._call_recorded.clear()
            try:
                await asyncio.wait_for(self._call_recorded.wait(), remaining)
            except TimeoutError:
                continue

    def enforce_limits(self, global_per_second: int = 30, per_group_per_minute: int = 20,
                       per_private_per_second: int = 1) -> None:
        """Answer calls over Telegram's flood limits with 429 (off by default): sends,
        edits and button answers count toward `global_per_second`, sends also toward
        their chat's limit."""
        self._limits = Limits(global_per_second, per_group_per_minute, per_private_per_second)

    def lift_limits(self) -> None:
        self._limits = None

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(body, ensure_ascii=False).encode(), status=status,
                            content_type="application/json")

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._json(ApiError(404, "Not Found").envelope(), 404)

    async def _download(self, request: web.Request) -> web.Response:
        """Files as getFile's file_path names them: files/<file_id>/<name>."""
        parts = request.match_info["path"].split("/")
        stored = self._files.get(parts[1]) if len(parts) > 1 else None
        if stored is None:
            return await self._not_found(request)
        return web.Response(body=stored.content,
                            content_type=stored.mime_type or "application/octet-stream")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        self.tokens.add(token)
        self.stats["requests"] += 1
        name = request.match_info["method"]
        key = name.lower()
        method = self.spec.methods.get(key)
        call = ApiCall(method.name if method else name, {}, None, self.clock(), token)
        try:
            if token in self.rejected_tokens:
                raise ApiError(401, "Unauthorized")
            if method is None:
                raise ApiError(404, "Not Found")
            call.params, call.files = await self._read(request, method)
            call.chat_id = self._target(call.params)
            fault = self.faults.take(key, call.chat_id)
            if fault is not None:
                call.fault = fault.kind
                if fault.kind == "drop":
                    return self._drop(request, call)
                if fault.kind == "timeout":
                    await self._stall(request)
                else:
                    raise _fault_error(fault)
            if self._limits is not None and key in self._rate_counted:
                self._check_limits(call, per_chat=key in self._send_methods)
            handler = self._handlers.get(key)
            result = handler(call) if handler else self._generic(method, call)
            if key == "getupdates":
                result = await self._get_updates(call)
        except ApiError as error:
            call.ok, call.status = False, error.code
            call.error_code, call.error = error.code, error.description
            if error.code == 429:
                self.stats["rate_limited"] += 1
            self._record(call)
            return self._json(error.envelope(), error.code)
        call.result = result
        if key != "getupdates" or result:  # empty long polls are idle noise
            self._record(call)
        return self._json({"ok": True, "result": result})

    def _record(self, call: ApiCall) -> None:
        self.calls.append(call)
        self._call_recorded.set()

    def _drop(self, request: web.Request, call: ApiCall) -> web.Response:
        """Close the connection without an answer; nothing is applied."""
        call.ok, call.status, call.error = False, 0, "connection dropped"
        self._record(call)
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    async def _stall(self, request: web.Request) -> None:
        """Hold the answer for `faults.stall_seconds`, or until the client hangs up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.faults.stall_seconds
        while not self._closing and (remaining := end - loop.time()) > 0:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(min(0.05, remaining))

    async def _read(self, request: web.Request, method: Method) -> tuple[
            dict[str, Any], dict[str, tuple[str, bytes]]]:
        """Parameters from the query string and a form, multipart or JSON body, decoded by
        their declared types; uploaded files become StoredFiles."""
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        uploads: dict[str, StoredFile] = {}
        if request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise ApiError(400, "Bad Request: can't parse JSON body") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "Bad Request: the JSON body must be an object")
                raw.update(body)
            else:
                for name, value in (await request.post()).items():
                    if isinstance(value, web.FileField):
                        content = value.file.read()
                        files[name] = (value.filename, content)
                        uploads[name] = self._files[self.add_file(
                            content, value.filename, value.content_type)]
                    else:
                        raw[name] = value
        params: dict[str, Any] = {}
        for name, value in raw.items():
            field_ = method.fields.get(name)
            if field_ is None:
                raise ApiError(400, f"Bad Request: unknown parameter {name}")
            try:
                params[name] = decode(field_, value)
            except ValueError:
                raise ApiError(400, f"Bad Request: can't parse {name}") from None
            if field_.kind is Kind.JSON:
                problems = self.spec.problems(field_.types, params[name], name, strict=False)
                if problems:
                    raise ApiError(400, f"Bad Request: invalid {name}: {problems[0]}")
        for name, upload in uploads.items():
            field_ = method.fields.get(name)
            if field_ is not None and field_.kind is Kind.FILE:
                params[name] = upload
        if uploads:
            params = {name: _attach(value, uploads) for name, value in params.items()}
        for name in method.required:
            if name not in params:
                raise ApiError(400, f"Bad Request: parameter {name} is required")
        return params, files

    def _target(self, params: dict[str, Any]) -> int | None:
        """The chat the call is about; every chat it names must exist."""
        if "from_chat_id" in params:
            self._resolve(params["from_chat_id"])
        return self._resolve(params["chat_id"]) if "chat_id" in params else None

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

    def _check_limits(self, call: ApiCall, *, per_chat: bool) -> None:
        """Flood limits run on real time, not `clock`: clients wait them out with sleeps."""
        assert self._limits is not None
        weight = len(call.params.get("media") or ()) or 1
        wait = self._limits.retry_after(call.chat_id if per_chat else None, time.monotonic(),
                                        weight)
        if wait:
            self.stats["over_limit"] += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)

    # ------------------------------------------------------------------ sending

    def _generic(self, method: Method, call: ApiCall) -> Any:
        """A plausible result of the declared type for methods without their own behaviour."""
        returns = method.returns
        if returns[0] == "Message":
            if "Boolean" in returns:  # edits of media, live locations, checklists
                message = self._editable(call)
                return True if message is None else message
            return self._send(call, self._content(method, call.params))
        if returns[0] == "Boolean":
            return True
        return self.spec.default(returns[0])

    def _send(self, call: ApiCall, body: dict[str, Any], chat_id: int | None = None
              ) -> dict[str, Any]:
        """Store and return a new message of the bot in the call's chat."""
        chat_id = call.chat_id if chat_id is None else chat_id
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self.chat(chat_id)
        status = self.member_status(chat_id, self.bot_id)
        if status in {"left", "kicked"}:
            verb = "kicked from" if status == "kicked" else "not a member of"
            raise ApiError(403, f"Forbidden: bot is {verb} the {chat['type']} chat")
        params = call.params
        message: dict[str, Any] = {"message_id": 0, "from": self.bot_user, "chat": chat,
                                   "date": int(self.clock())}
        reply = params.get("reply_parameters")
        if reply:
            target = self._messages.get((self._resolve(reply.get("chat_id", chat_id)),
                                         reply["message_id"]))
            if target is not None:
                message["reply_to_message"] = self._quoted(target)
            elif not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        message.update(body)
        message.update(self._markup(params))
        message["message_id"] = self._next_message_id(chat_id)
        self._messages[(chat_id, message["message_id"])] = message
        self._bot_messages[chat_id].append(message["message_id"])
        self.stats["sent"] += 1
        self.stats.sent_per_chat[chat_id] += 1
        return message

    @staticmethod
    def _quoted(message: dict[str, Any]) -> dict[str, Any]:
        """A replied-to message, which Telegram sends without its own reply_to_message."""
        return {k: v for k, v in message.items() if k != "reply_to_message"}

    def _text(self, params: dict[str, Any], key: str) -> dict[str, Any]:
        """`text` or `caption` with its entities, parsed as Telegram parses it."""
        value = params.get(key)
        if value is None:
            return {}
        entities_key = "entities" if key == "text" else "caption_entities"
        if str(params.get("parse_mode") or "").lower() == "html":
            text, entities = parse_html(value, self.user)
        else:  # Markdown modes are passed through unparsed
            text, entities = value, params.get(entities_key) or []
        if not text.strip():
            if key == "text":
                raise ApiError(400, "Bad Request: message text is empty")
            return {}
        if utf16_len(text) > (MAX_TEXT if key == "text" else MAX_CAPTION):
            raise ApiError(400, "Bad Request: message is too long" if key == "text"
                           else "Bad Request: message caption is too long")
        return {key: text, entities_key: entities} if entities else {key: text}

    def _markup(self, params: dict[str, Any]) -> dict[str, Any]:
        """The inline keyboard a message shows; other keyboards are not part of it."""
        markup = params.get("reply_markup")
        if not isinstance(markup, dict) or not markup.get("inline_keyboard"):
            return {}
        for row in markup["inline_keyboard"]:
            for button in row:
                actions = BUTTON_ACTIONS.intersection(button)
                if len(actions) != 1:
                    raise ApiError(400, "Bad Request: can't parse inline keyboard button: "
                                        "Text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return {"reply_markup": markup}

    def _content(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        """Text, caption and the sent object (document, photo, location…) of a send call."""
        body = {**self._text(params, "text"), **self._text(params, "caption")}
        key = _snake(method.name[4:]) if method.name.startswith("send") else ""
        types = self._message_fields.get(key)
        if types is None:
            return body
        type_name = types[0]
        value = params.get(key)
        if type_name == "Array of PhotoSize":
            body[key] = [self._photo_size(self._file_for(value))]
        elif "file_id" in self.spec.fields(type_name):
            body[key] = self._media(type_name, self._file_for(value))
        else:
            scalars = {n: params[n] for n, t in self.spec.fields(type_name).items()
                       if n in params and t[0] in SCALARS}
            body[key] = self.spec.fill(type_name, scalars)
        return body

    def _file_for(self, value: Any) -> StoredFile:
        """An upload, a known file_id, or a URL Telegram fetches."""
        if isinstance(value, StoredFile):
            return value
        if isinstance(value, str):
            if value in self._files:
                return self._files[value]
            if value.startswith(("http://", "https://")):
                return self._files[self.add_file(b"", value.rsplit("/", 1)[-1] or None)]
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

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

    def _send_media_group(self, call: ApiCall) -> list[dict[str, Any]]:
        group = str(next(self._media_groups))
        bodies = []
        for item in call.params["media"]:
            kind = item["type"]
            stored = self._file_for(item["media"])
            types = self._message_fields.get(kind, ("Document",))
            media = ([self._photo_size(stored)] if kind == "photo"
                     else self._media(types[0], stored))
            bodies.append({kind: media, "media_group_id": group, **self._text(item, "caption")})
        return [self._send(call, body) for body in bodies]

    def _source(self, call: ApiCall, verb: str) -> dict[str, Any]:
        source = self._messages.get((self._resolve(call.params["from_chat_id"]),
                                     call.params["message_id"]))
        if source is None:
            raise ApiError(400, f"Bad Request: message to {verb} not found")
        return source

    def _copy_message(self, call: ApiCall) -> dict[str, Any]:
        body = _content_of(self._source(call, "copy"))
        if "caption" in call.params:
            body.pop("caption", None)
            body.pop("caption_entities", None)
            body.update(self._text(call.params, "caption"))
        return {"message_id": self._send(call, body)["message_id"]}

    def _forward_message(self, call: ApiCall) -> dict[str, Any]:
        source = self._source(call, "forward")
        body = _content_of(source)
        body["forward_origin"] = {"type": "user", "date": source["date"],
                                  "sender_user": source["from"]}
        return self._send(call, body)

    # ------------------------------------------------------------------ editing

    def _editable(self, call: ApiCall) -> dict[str, Any] | None:
        """The bot's message an edit is about; None for inline messages (not kept)."""
        params = call.params
        if "inline_message_id" in params:
            return None
        if call.chat_id is None or "message_id" not in params:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        message = self._messages.get((call.chat_id, params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _edit(self, call: ApiCall, changes: dict[str, Any],
              replaced: tuple[str, ...] = ()) -> dict[str, Any] | bool:
        """Apply an edit; an edit that does not repeat the inline keyboard removes it."""
        message = self._editable(call)
        if message is None:
            return True
        new = {k: v for k, v in message.items() if k not in replaced and k != "reply_markup"}
        new.update(changes)
        new.update(self._markup(call.params))
        if all(new.get(k) == message.get(k) for k in SHOWN):
            raise ApiError(400, NOT_MODIFIED)
        new["edit_date"] = int(self.clock())
        self._messages[(new["chat"]["id"], new["message_id"])] = new
        self.stats["edited"] += 1
        return new

    def _edit_text(self, call: ApiCall) -> dict[str, Any] | bool:
        message = self._editable(call)
        if message is not None and "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._edit(call, self._text(call.params, "text"),
                          ("text", "entities", "link_preview_options"))

    def _edit_caption(self, call: ApiCall) -> dict[str, Any] | bool:
        message = self._editable(call)
        if message is not None and "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._edit(call, self._text(call.params, "caption"),
                          ("caption", "caption_entities"))

    def _edit_reply_markup(self, call: ApiCall) -> dict[str, Any] | bool:
        return self._edit(call, {})

    def _delete_message(self, call: ApiCall) -> bool:
        if self._messages.pop((call.chat_id, call.params["message_id"]), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _delete_messages(self, call: ApiCall) -> bool:
        for message_id in call.params["message_ids"]:
            self._messages.pop((call.chat_id, message_id), None)
        return True

    # ------------------------------------------------------------------ the rest

    def _get_me(self, call: ApiCall) -> dict[str, Any]:
        return self.spec.fill("User", {**self.bot_user, "can_join_groups": True,
                                       "can_read_all_group_messages": False,
                                       "supports_inline_queries": True})

    def _check_polling(self, call: ApiCall) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                "active; use deleteWebhook to delete the webhook first")
        return []

    async def _get_updates(self, call: ApiCall) -> list[dict[str, Any]]:
        """Long polling: confirm updates before `offset`, answer as soon as any are there."""
        params = call.params
        offset, timeout = params.get("offset", 0), params.get("timeout", 0)
        limit = min(max(params.get("limit", 100), 1), 100)
        if "allowed_updates" in params:
            self._allowed = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED
        updates = self._updates
        if offset > 0:
            while updates and updates[0]["update_id"] < offset:
                updates.popleft()
        elif offset < 0:
            while len(updates) > -offset:
                updates.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ready = list(itertools.islice(
                (u for u in updates if u["update_id"] >= offset and _kind(u) in self._allowed),
                limit))
            remaining = deadline - loop.time()
            if ready or self._closing or remaining <= 0:
                return ready
            self._update_arrived.clear()
            self.polls_waiting += 1
            try:
                await asyncio.wait_for(self._update_arrived.wait(), remaining)
            except TimeoutError:
                return []
            finally:
                self.polls_waiting -= 1

    def _set_webhook(self, call: ApiCall) -> bool:
        params = call.params
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if "allowed_updates" in params:
            self._allowed = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED
        self.webhook = {k: params[k] for k in ("url", "secret_token", "max_connections")
                        if k in params} if params["url"] else {}
        return True

    def _delete_webhook(self, call: ApiCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {}
        return True

    def _get_webhook_info(self, call: ApiCall) -> dict[str, Any]:
        info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}
        if "max_connections" in self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
        return info

    def _answer_query(self, call: ApiCall) -> bool:
        query_id = call.params.get("callback_query_id") or call.params.get("inline_query_id")
        if query_id not in self._open_queries:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired "
                                "or query ID is invalid")
        self._open_queries.discard(query_id)
        return True

    def _set_commands(self, call: ApiCall) -> bool:
        language = call.params.get("language_code", "")
        if language and not LANGUAGE.fullmatch(language):
            raise ApiError(400, "Bad Request: LANGUAGE_CODE_INVALID")
        commands = call.params["commands"]
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not COMMAND.fullmatch(command["command"]):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command["description"]) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = _scope_key(call.params.get("scope"), language)
        self.commands[key] = [{"command": c["command"], "description": c["description"]}
                              for c in commands]
        return True

    def _get_commands(self, call: ApiCall) -> list[dict[str, Any]]:
        return self.commands_for(call.params.get("scope"), call.params.get("language_code", ""))

    def _delete_commands(self, call: ApiCall) -> bool:
        self.commands.pop(_scope_key(call.params.get("scope"),
                                     call.params.get("language_code", "")), None)
        return True

    def _set_menu_button(self, call: ApiCall) -> bool:
        button = call.params.get("menu_button") or {"type": "default"}
        self.menu_buttons[call.chat_id] = button
        return True

    def _get_menu_button(self, call: ApiCall) -> dict[str, Any]:
        return self.menu_buttons.get(call.chat_id, {"type": "default"})

    def _get_chat(self, call: ApiCall) -> dict[str, Any]:
        assert call.chat_id is not None
        return self.spec.fill("ChatFullInfo", {**self.chat(call.chat_id),
                                               "accent_color_id": 0,
                                               "max_reaction_count": 11})

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        status = self.member_status(chat_id, user_id)
        return self.spec.fill(MEMBER_TYPES[status], {"status": status,
                                                     "user": self.user(user_id)})

    def _get_chat_member(self, call: ApiCall) -> dict[str, Any]:
        assert call.chat_id is not None
        return self._member(call.chat_id, call.params["user_id"])

    def _get_chat_administrators(self, call: ApiCall) -> list[dict[str, Any]]:
        chat_id = call.chat_id
        assert chat_id is not None
        if chat_id > 0:
            return []
        admins = [user for (chat, user), status in self._members.items()
                  if chat == chat_id and status in {"creator", "administrator"}]
        admins.sort(key=lambda user: self._members[(chat_id, user)] != "creator")
        return [self._member(chat_id, user) for user in admins]

    def _get_chat_member_count(self, call: ApiCall) -> int:
        if call.chat_id is None or call.chat_id > 0:
            return 2
        return sum(1 for (chat, _), status in self._members.items()
                   if chat == call.chat_id and status in PRESENT)

    def _get_file(self, call: ApiCall) -> dict[str, Any]:
        stored = self._files.get(call.params["file_id"])
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size,
                "file_path": f"files/{stored.file_id}/{stored.file_name or 'file'}"}


def _fault_error(fault: Fault) -> ApiError:
    if fault.kind == "429":
        return ApiError(429, f"Too Many Requests: retry after {fault.retry_after}",
                        fault.retry_after)
    return {
        "500": ApiError(500, "Internal Server Error"),
        "502": ApiError(502, "Bad Gateway"),
        "403_blocked": ApiError(403, "Forbidden: bot was blocked by the user"),
        "400_chat_not_found": ApiError(400, "Bad Request: chat not found"),
    }[fault.kind]


def _attach(value: Any, uploads: dict[str, StoredFile]) -> Any:
    """Replace attach://<part> references (top level or inside media) by the upload."""
    if isinstance(value, str) and value.startswith("attach://"):
        if value[9:] not in uploads:
            raise ApiError(400, f"Bad Request: no file part {value[9:]} to attach")
        return uploads[value[9:]]
    if isinstance(value, list):
        return [_attach(v, uploads) for v in value]
    if isinstance(value, dict):
        return {k: _attach(v, uploads) for k, v in value.items()}
    return value


def _content_of(message: dict[str, Any]) -> dict[str, Any]:
    """What copyMessage and forwardMessage carry over: text, caption, media."""
    return {k: v for k, v in message.items() if k not in MESSAGE_META}


def _kind(update: dict[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")


def _scope_key(scope: dict[str, Any] | None, language_code: str | None) -> tuple[str, str]:
    return json.dumps(scope or {"type": "default"}, sort_keys=True), language_code or ""
