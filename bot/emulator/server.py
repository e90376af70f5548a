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
import json
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from bot.emulator.faults import Fault
from bot.emulator.faults import Faults
from bot.emulator.faults import Limits
from bot.emulator.lookups import Lookups
from bot.emulator.messages import Messages
from bot.emulator.records import BOT_ID
from bot.emulator.records import ApiCall
from bot.emulator.records import ApiError
from bot.emulator.records import StoredFile
from bot.emulator.spec import Kind
from bot.emulator.spec import Method
from bot.emulator.spec import Problem
from bot.emulator.spec import decode
from bot.emulator.updates import UpdatesIn

# How Telegram words some refusals of a rule the spec states ("Type.field" as in
# spec.Problem.rule); the others are told as the spec's check finds them.
REFUSALS = {"InlineKeyboardButton.callback_data": "BUTTON_DATA_INVALID",
            "BotCommand.command": "BOT_COMMAND_INVALID",
            "BotCommand.description": "BOT_COMMAND_DESCRIPTION_INVALID"}


class BotApiEmulator(UpdatesIn, Messages, Lookups):
    """The Bot API on 127.0.0.1, with the chats, messages and updates of a test.

    The HTTP front (routing, decoding, faults, limits, recording) lives here; the state it
    answers from in bot.emulator.state, the method families in .updates, .messages and
    .lookups.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 bot_username: str = "liaison_desk_bot", bot_id: int = BOT_ID,
                 bot_name: str = "Liaison Desk", clock: Callable[[], float] = time.time,
                 auto_users: bool = True) -> None:
        """`auto_users`: a private chat with a user never added is created on first use
        (Telegram would say "chat not found"; most tests do not care who the user is)."""
        super().__init__(bot_username=bot_username, bot_id=bot_id, bot_name=bot_name,
                         clock=clock, auto_users=auto_users)
        self.host, self.port = host, port
        self.faults = Faults()
        self.calls: list[ApiCall] = []
        self.tokens: set[str] = set()
        # Tokens answered 401 Unauthorized, as Telegram answers a revoked token.
        self.rejected_tokens: set[str] = set()
        self._limits: Limits | None = None
        self._call_recorded = asyncio.Event()
        self._runner: web.AppRunner | None = None
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

    # ------------------------------------------------------------------ what the bot did

    def calls_for(self, chat_id: int, methods: Iterable[str] | None = None) -> list[ApiCall]:
        wanted = {m.lower() for m in methods} if methods else None
        return [c for c in self.calls if c.chat_id == chat_id
                and (wanted is None or c.method.lower() in wanted)]

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
            problems = self.spec.parameter_problems(field_, params[name])
            if problems:
                raise ApiError(400, _refusal(name, problems))
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

    def _check_limits(self, call: ApiCall, *, per_chat: bool) -> None:
        """Flood limits run on real time, not `clock`: clients wait them out with sleeps."""
        assert self._limits is not None
        weight = len(call.params.get("media") or ()) or 1
        wait = self._limits.retry_after(call.chat_id if per_chat else None, time.monotonic(),
                                        weight)
        if wait:
            self.stats["over_limit"] += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)


def _refusal(name: str, problems: list[Problem]) -> str:
    """Telegram's word for the first problem with a rule it names, else the first."""
    named = next((REFUSALS[p.rule] for p in problems if p.rule in REFUSALS), None)
    return f"Bad Request: {named}" if named else f"Bad Request: invalid {name}: {problems[0]}"


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
