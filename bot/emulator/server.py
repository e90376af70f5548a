"""A local Telegram Bot API for tests, benchmarks and the offline console.

The bot talks to it through PTB's real HTTP stack (`base_url`). Every call is checked
against the Bot API 10.0 specification (unknown method: 404; missing or unknown
parameter: 400 with Telegram's envelope), recorded, and answered with an object of the
declared type. Tests inject updates (messages, button presses, inline queries) and
faults (429 with retry_after, 5xx, stalls, dropped connections), and can switch on
Telegram's rate limits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.emulator.spec import Method, Spec, decode, load_spec

BOT_ID = 7000000001
SEND_METHODS = {"sendmessage", "sendphoto", "senddocument", "copymessage", "sendmediagroup",
                "sendvideo", "sendaudio", "sendvoice", "sendanimation", "sendsticker",
                "sendlocation", "sendcontact", "sendpoll"}
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of "
                "the message")


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    chat_id: int | None
    at: float
    ok: bool = True
    result: Any = None
    error: str | None = None
    error_code: int | None = None
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def message_ref(self) -> tuple[int, int]:
        """(chat_id, message_id) of the message this call produced or edited."""
        if isinstance(self.result, dict) and "message_id" in self.result:
            return self.result["chat"]["id"], self.result["message_id"]
        return int(self.params["chat_id"]), int(self.params["message_id"])


@dataclass
class Fault:
    kind: str
    remaining: int
    methods: frozenset[str] | None
    chat_id: int | None
    retry_after: int

    def matches(self, method: str, chat_id: int | None) -> bool:
        return (self.methods is None or method in self.methods) and (
            self.chat_id is None or self.chat_id == chat_id)


class Faults:
    """Queued faults (deterministic) and random ones (reproducible with a seed)."""

    KINDS = ("429", "500", "502", "timeout", "drop", "403_blocked", "400_chat_not_found")

    def __init__(self) -> None:
        self.queued: list[Fault] = []
        self.rate = 0.0
        self.random_kinds: tuple[str, ...] = ()
        self.random_methods: frozenset[str] | None = None
        self.rng = random.Random(0)
        self.stall_seconds = 5.0
        self.injected: defaultdict[str, int] = defaultdict(int)

    def fail_next(self, n: int = 1, kind: str = "500", *, methods: Iterable[str] | None = None,
                  chat_id: int | None = None, retry_after: int = 1) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        wanted = frozenset(m.lower() for m in methods) if methods else None
        self.queued.append(Fault(kind, n, wanted, chat_id, retry_after))

    def random(self, rate: float, kinds: Iterable[str] = ("429", "500", "timeout"), *,
               seed: int = 0, methods: Iterable[str] | None = None) -> None:
        self.rate, self.random_kinds = rate, tuple(kinds)
        self.random_methods = frozenset(m.lower() for m in methods) if methods else None
        self.rng = random.Random(seed)

    def clear(self) -> None:
        self.queued.clear()
        self.rate = 0.0

    def take(self, method: str, chat_id: int | None) -> Fault | None:
        for fault in self.queued:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.queued.remove(fault)
                self.injected[fault.kind] += 1
                return fault
        if self.rate and (self.random_methods is None or method in self.random_methods) \
                and self.rng.random() < self.rate:
            kind = self.rng.choice(self.random_kinds)
            self.injected[kind] += 1
            return Fault(kind, 0, None, None, self.rng.randint(1, 2))
        return None


class SlidingLimit:
    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.times: deque[float] = deque()

    def retry_after(self, now: float) -> int:
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0
        return max(1, int(self.times[0] + self.window - now + 0.999))

    def record(self, now: float) -> None:
        self.times.append(now)


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code,
                                "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class BotApiEmulator:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 bot_username: str = "liaison_desk_bot",
                 clock: Callable[[], float] = time.time) -> None:
        self.host, self.port = host, port
        self.bot_username = bot_username
        self.clock = clock
        self.spec: Spec = load_spec()
        self.faults = Faults()
        self.calls: list[ApiCall] = []
        self.tokens: set[str] = set()
        self.stats: defaultdict[str, int] = defaultdict(int)
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._order: defaultdict[int, list[int]] = defaultdict(list)
        self._message_ids: defaultdict[int, itertools.count[int]] = defaultdict(
            lambda: itertools.count(1))
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._updates: deque[dict[str, Any]] = deque()
        self._update_arrived = asyncio.Event()
        self._open_callbacks: set[str] = set()
        self._limits: dict[str, Any] | None = None
        self._global_limit: SlidingLimit | None = None
        self._chat_limits: dict[int, SlidingLimit] = {}
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> BotApiEmulator:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
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
        return {"id": BOT_ID, "is_bot": True, "first_name": "Liaison Desk",
                "username": self.bot_username}

    def add_user(self, user_id: int, first_name: str, last_name: str | None = None,
                 username: str | None = None, language_code: str | None = "zh-hans") -> None:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username),
                           ("language_code", language_code)):
            if value:
                user[key] = value
        self._users[user_id] = user
        self._chats[user_id] = {"id": user_id, "type": "private", "first_name": first_name,
                                **({"username": username} if username else {})}

    def add_group(self, chat_id: int, title: str, members: Iterable[int] = ()) -> None:
        self._chats[chat_id] = {"id": chat_id, "type": "supergroup", "title": title}
        for member in members:
            self._members.setdefault((chat_id, member), "member")

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        self._members[(chat_id, user_id)] = status

    def user(self, user_id: int) -> dict[str, Any]:
        if user_id not in self._users:
            self.add_user(user_id, f"User {user_id}")
        return self._users[user_id]

    def chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id not in self._chats:
            if chat_id > 0:
                self.user(chat_id)
            else:
                raise ApiError(400, "Bad Request: chat not found")
        return self._chats[chat_id]

    # ------------------------------------------------------------------ updates in

    def _entities(self, text: str) -> list[dict[str, Any]]:
        entities = []
        command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0,
                             "length": utf16_len(command.group(0))})
        for mention in re.finditer(r"@[A-Za-z0-9_]{5,}", text):
            if command and mention.start() < command.end():
                continue
            entities.append({"type": "mention", "offset": utf16_len(text[: mention.start()]),
                             "length": utf16_len(mention.group(0))})
        return entities

    def make_message_update(
        self, user_id: int, chat_id: int, text: str | None = None, *,
        reply_to: tuple[int, int] | None = None, photo_file_id: str | None = None,
        document_file_id: str | None = None, document_name: str = "file.pdf",
        edited: bool = False,
    ) -> dict[str, Any]:
        chat = self.chat(chat_id)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids[chat_id]),
            "date": int(self.clock()),
            "chat": chat,
            "from": self.user(user_id),
        }
        body_key = "caption" if (photo_file_id or document_file_id) else "text"
        if text is not None:
            message[body_key] = text
            entities = self._entities(text)
            if entities:
                message["caption_entities" if body_key == "caption" else "entities"] = entities
        if photo_file_id:
            message["photo"] = [{"file_id": photo_file_id, "file_unique_id": photo_file_id[-8:],
                                 "width": 1280, "height": 960}]
        if document_file_id:
            message["document"] = {"file_id": document_file_id,
                                   "file_unique_id": document_file_id[-8:],
                                   "file_name": document_name}
        if reply_to is not None and reply_to in self._messages:
            message["reply_to_message"] = self._messages[reply_to]
        if edited:
            message["edit_date"] = int(self.clock())
        return {"update_id": next(self._update_ids),
                "edited_message" if edited else "message": message}

    def make_callback_update(self, user_id: int, message_ref: tuple[int, int],
                             data: str) -> dict[str, Any]:
        chat_id, message_id = message_ref
        message = self._messages.get(message_ref) or {
            "message_id": message_id, "date": int(self.clock()), "chat": self.chat(chat_id),
            "from": self.bot_user, "text": ""}
        query_id = str(next(self._callback_ids))
        self._open_callbacks.add(query_id)
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": query_id, "from": self.user(user_id), "message": message,
            "chat_instance": str(chat_id), "data": data}}

    def make_inline_query_update(self, user_id: int, query: str,
                                 offset: str = "") -> dict[str, Any]:
        query_id = str(next(self._callback_ids))
        self._open_callbacks.add(query_id)
        return {"update_id": next(self._update_ids), "inline_query": {
            "id": query_id, "from": self.user(user_id), "query": query, "offset": offset,
            "chat_type": "private"}}

    def make_my_chat_member_update(self, chat_id: int, by_user_id: int, old_status: str,
                                   new_status: str) -> dict[str, Any]:
        def member(status: str) -> dict[str, Any]:
            return self.spec.fill(_member_type(status), {"status": status,
                                                         "user": self.bot_user})
        return {"update_id": next(self._update_ids), "my_chat_member": {
            "chat": self.chat(chat_id), "from": self.user(by_user_id),
            "date": int(self.clock()), "old_chat_member": member(old_status),
            "new_chat_member": member(new_status)}}

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        self._updates.append(update)
        self._update_arrived.set()
        return update

    def push_message(self, user_id: int, chat_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        return self.enqueue(self.make_message_update(user_id, chat_id, text, **kwargs))

    def push_callback(self, user_id: int, message_ref: tuple[int, int],
                      data: str) -> dict[str, Any]:
        return self.enqueue(self.make_callback_update(user_id, message_ref, data))

    async def deliver_webhook(self, update: dict[str, Any]) -> int:
        """POST an update to the registered webhook, as Telegram would; returns the status."""
        headers = {}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        async with aiohttp.ClientSession() as session, session.post(
            self.webhook["url"], json=update, headers=headers
        ) as response:
            return response.status

    # ------------------------------------------------------------------ what the bot did

    def calls_for(self, chat_id: int, methods: Iterable[str] | None = None) -> list[ApiCall]:
        wanted = set(methods) if methods else None
        return [c for c in self.calls if c.chat_id == chat_id
                and (wanted is None or c.method in wanted)]

    def messages_in(self, chat_id: int) -> list[dict[str, Any]]:
        """What the chat shows now: the bot's messages, edits applied, deletions removed."""
        return [self._messages[(chat_id, m)] for m in self._order[chat_id]
                if (chat_id, m) in self._messages]

    def sent_texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.messages_in(chat_id)]

    def clear_calls(self) -> None:
        self.calls.clear()

    async def wait_for_calls(self, n: int, method: str | None = None,
                             chat_id: int | None = None, within: float = 5.0) -> list[ApiCall]:
        deadline = time.monotonic() + within
        while True:
            found = [c for c in self.calls if (method is None or c.method == method)
                     and (chat_id is None or c.chat_id == chat_id)]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.01)

    def enforce_limits(self, global_per_second: int = 30, per_group_per_minute: int = 20,
                       per_private_per_second: int = 1) -> None:
        self._limits = {"group": (per_group_per_minute, 60.0),
                        "private": (per_private_per_second, 1.0)}
        self._global_limit = SlidingLimit(global_per_second, 1.0)
        self._chat_limits.clear()

    def lift_limits(self) -> None:
        self._limits, self._global_limit = None, None

    # ------------------------------------------------------------------ HTTP

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=b"emulated file " + request.match_info["path"].encode())

    async def _params(
        self, request: web.Request, method: Method
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, tuple[str, bytes]] = {}
        if request.method == "POST" and request.can_read_body:
            content_type = request.content_type
            if content_type == "application/json":
                raw.update(await request.json())
            elif content_type == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if part.filename:  # type: ignore[union-attr]
                        files[part.name] = (part.filename, await part.read())  # type: ignore
                    else:
                        raw[part.name] = await part.text()  # type: ignore[union-attr]
            else:
                raw.update(await request.post())
        params = {name: decode(method.fields.get(name), value) for name, value in raw.items()}
        for name, value in list(params.items()):
            # attach://name references a multipart file part.
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                params[name] = files[value[9:]]
        for name, (filename, _) in files.items():
            params.setdefault(name, (filename, b""))
        return params, files

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.tokens.add(request.match_info["token"])
        self.stats["requests"] += 1
        method = self.spec.method(request.match_info["method"])
        if method is None:
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)
        params, files = await self._params(request, method)
        chat_id = _chat_id(params)
        call = ApiCall(method.name, params, chat_id, self.clock(), files=files)
        try:
            self._validate(method, params)
            fault = self.faults.take(method.name.lower(), chat_id)
            if fault is not None:
                await self._inject(request, fault)
            self._check_limits(method.name.lower(), chat_id)
            call.result = self._dispatch(method, params, call)
            if method.name.lower() == "getupdates":
                call.result = await self._get_updates(params)
        except ApiError as error:
            call.ok, call.error, call.error_code = False, error.description, error.code
            if method.name.lower() != "getupdates":
                self.calls.append(call)
            return web.json_response(error.envelope(), status=error.code)
        except _Dropped:
            call.ok, call.error = False, "dropped"
            self.calls.append(call)
            raise
        if method.name.lower() != "getupdates":
            self.calls.append(call)
        return web.json_response({"ok": True, "result": call.result},
                                 dumps=lambda v: json.dumps(v, ensure_ascii=False))

    def _validate(self, method: Method, params: dict[str, Any]) -> None:
        for name in params:
            if name not in method.fields:
                raise ApiError(400, f"Bad Request: unknown parameter {name}")
        for field_ in method.fields.values():
            if field_.required and params.get(field_.name) in (None, ""):
                raise ApiError(400, f"Bad Request: parameter {field_.name} is required")

    async def _inject(self, request: web.Request, fault: Fault) -> None:
        kind = fault.kind
        if kind == "429":
            self.stats["rate_limited"] += 1
            raise ApiError(429, f"Too Many Requests: retry after {fault.retry_after}",
                           fault.retry_after)
        if kind in {"500", "502"}:
            raise ApiError(int(kind), "Internal Server Error" if kind == "500" else "Bad Gateway")
        if kind == "403_blocked":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if kind == "400_chat_not_found":
            raise ApiError(400, "Bad Request: chat not found")
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            raise _Dropped
        if kind == "timeout":
            # A slow answer: the call is applied after the stall, as Telegram may do.
            await asyncio.sleep(self.faults.stall_seconds)

    def _check_limits(self, method: str, chat_id: int | None) -> None:
        if self._limits is None or method not in SEND_METHODS or chat_id is None:
            return
        now = time.monotonic()
        kind = "group" if chat_id < 0 else "private"
        chat_limit = self._chat_limits.setdefault(chat_id, SlidingLimit(*self._limits[kind]))
        assert self._global_limit is not None
        wait = max(self._global_limit.retry_after(now), chat_limit.retry_after(now))
        if wait:
            self.stats["rate_limited"] += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        self._global_limit.record(now)
        chat_limit.record(now)

    # ------------------------------------------------------------------ methods

    def _dispatch(self, method: Method, params: dict[str, Any], call: ApiCall) -> Any:
        name = method.name
        handler = getattr(self, f"_m_{name}", None)
        if handler is not None:
            return handler(params, call)
        returns = method.returns[0]
        if returns == "Message":
            return self._new_message(params, call)
        if returns in {"Boolean", "True"}:
            return True
        return self.spec.default(returns)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        while self._updates and offset and self._updates[0]["update_id"] < offset:
            self._updates.popleft()
        if not self._updates and timeout > 0:
            self._update_arrived.clear()
            try:
                await asyncio.wait_for(self._update_arrived.wait(), timeout)
            except TimeoutError:
                return []
        return list(itertools.islice(self._updates, limit))

    def _m_getUpdates(self, params: dict[str, Any], call: ApiCall) -> Any:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        return []

    def _m_getMe(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self.spec.fill("User", {**self.bot_user, "can_join_groups": True,
                                       "can_read_all_group_messages": False,
                                       "supports_inline_queries": True})

    def _m_setWebhook(self, params: dict[str, Any], call: ApiCall) -> Any:
        self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
        return True

    def _m_deleteWebhook(self, params: dict[str, Any], call: ApiCall) -> Any:
        self.webhook = {}
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self.spec.fill("WebhookInfo", {"url": self.webhook.get("url", ""),
                                              "has_custom_certificate": False,
                                              "pending_update_count": len(self._updates)})

    def _new_message(self, params: dict[str, Any], call: ApiCall) -> dict[str, Any]:
        chat_id = call.chat_id
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self.chat(chat_id)
        message: dict[str, Any] = {"message_id": next(self._message_ids[chat_id]),
                                   "date": int(self.clock()), "chat": chat,
                                   "from": self.bot_user}
        for key in ("text", "caption", "reply_markup"):
            if params.get(key) is not None:
                message[key] = params[key]
        for kind in ("document", "photo", "video", "audio", "voice", "animation"):
            if kind in params:
                message.update(self._attachment(kind, params[kind]))
        self._messages[(chat_id, message["message_id"])] = message
        self._order[chat_id].append(message["message_id"])
        self.stats["sent"] += 1
        return message

    def _attachment(self, kind: str, value: Any) -> dict[str, Any]:
        file_id = value if isinstance(value, str) else f"EMU-FILE-{next(self._file_ids):06d}"
        name = value[0] if isinstance(value, tuple) else "file"
        unique = file_id[-12:]
        if kind == "photo":
            return {"photo": [{"file_id": file_id, "file_unique_id": unique,
                               "width": 1280, "height": 960}]}
        if kind == "document":
            return {"document": {"file_id": file_id, "file_unique_id": unique,
                                 "file_name": name}}
        return {kind: self.spec.fill(kind.capitalize(), {"file_id": file_id,
                                                          "file_unique_id": unique})}

    def _m_sendMediaGroup(self, params: dict[str, Any], call: ApiCall) -> Any:
        return [self._new_message({"caption": item.get("caption")}, call)
                for item in params.get("media", [])]

    def _editable(self, params: dict[str, Any]) -> dict[str, Any]:
        if "inline_message_id" in params:
            raise ApiError(400, "Bad Request: inline messages are not emulated")
        key = (int(params.get("chat_id", 0)), int(params.get("message_id", 0)))
        if key not in self._messages:
            raise ApiError(400, "Bad Request: message to edit not found")
        return self._messages[key]

    def _edit(self, params: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Telegram drops the inline keyboard of an edit that does not repeat it."""
        message = self._editable(params)
        new = {**message, **changes}
        if params.get("reply_markup"):
            new["reply_markup"] = params["reply_markup"]
        else:
            new.pop("reply_markup", None)
        if all(new.get(k) == message.get(k) for k in ("text", "caption", "reply_markup")):
            raise ApiError(400, NOT_MODIFIED)
        new["edit_date"] = int(self.clock())
        self._messages[(message["chat"]["id"], message["message_id"])] = new
        self.stats["edited"] += 1
        return new

    def _m_editMessageText(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self._edit(params, {"text": params["text"]})

    def _m_editMessageCaption(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self._edit(params, {"caption": params.get("caption")})

    def _m_editMessageReplyMarkup(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self._edit(params, {})

    def _m_deleteMessage(self, params: dict[str, Any], call: ApiCall) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self._messages.pop(key, None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any], call: ApiCall) -> Any:
        if params["callback_query_id"] not in self._open_callbacks:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired "
                                "or query ID is invalid")
        self._open_callbacks.discard(params["callback_query_id"])
        return True

    def _m_answerInlineQuery(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self._m_answerCallbackQuery({"callback_query_id": params["inline_query_id"]},
                                           call)

    def _scope_key(self, params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.get("language_code") or ""

    def _m_setMyCommands(self, params: dict[str, Any], call: ApiCall) -> Any:
        self.commands[self._scope_key(params)] = list(params["commands"])
        return True

    def _m_getMyCommands(self, params: dict[str, Any], call: ApiCall) -> Any:
        return self.commands.get(self._scope_key(params), [])

    def _m_deleteMyCommands(self, params: dict[str, Any], call: ApiCall) -> Any:
        self.commands.pop(self._scope_key(params), None)
        return True

    def commands_for(self, scope: dict[str, Any] | None = None,
                     language_code: str = "") -> list[dict[str, Any]]:
        return self._m_getMyCommands({"scope": scope, "language_code": language_code}, None)  # type: ignore[arg-type]

    def _m_getChat(self, params: dict[str, Any], call: ApiCall) -> Any:
        chat = dict(self.chat(int(params["chat_id"])))
        return self.spec.fill("ChatFullInfo", {**chat, "accent_color_id": 0,
                                               "max_reaction_count": 11})

    def _m_getChatMember(self, params: dict[str, Any], call: ApiCall) -> Any:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        self.chat(chat_id)
        status = "member" if chat_id == user_id else self._members.get((chat_id, user_id), "left")
        return self.spec.fill(_member_type(status), {"status": status,
                                                     "user": self.user(user_id)})

    def _m_getChatAdministrators(self, params: dict[str, Any], call: ApiCall) -> Any:
        chat_id = int(params["chat_id"])
        self.chat(chat_id)
        return [self.spec.fill(_member_type(status), {"status": status,
                                                      "user": self.user(user_id)})
                for (chat, user_id), status in self._members.items()
                if chat == chat_id and status in {"creator", "administrator"}]


class _Dropped(Exception):
    """The connection was closed without an answer."""


def _member_type(status: str) -> str:
    return {"creator": "ChatMemberOwner", "administrator": "ChatMemberAdministrator",
            "member": "ChatMemberMember", "restricted": "ChatMemberRestricted",
            "kicked": "ChatMemberBanned"}.get(status, "ChatMemberLeft")


def _chat_id(params: dict[str, Any]) -> int | None:
    value = params.get("chat_id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None
