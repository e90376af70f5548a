"""The Bot API over aiohttp: python-telegram-bot's networking backend, swapped.

PTB's default backend (httpx over httpcore and anyio) spends about 1.3 ms of CPU on
each call here, three times aiohttp's 0.4 ms (measured against the emulator, 30 calls
in flight): httpcore walks its whole pool, with two system calls per connection, every
time a request starts or ends. A desk answering every officer's lookup with one
sendMessage pays that on every update, so the bot talks to the Bot API through aiohttp
(already a dependency for webhooks) via PTB's documented `BaseRequest` interface.

Timeouts mean what they mean in PTB: `connect_timeout` to open a connection,
`pool_timeout` to wait for a free one, `read_timeout` for each read of the answer;
aiohttp has no separate write timeout, so `write_timeout` (and `media_write_timeout`
for uploads) bounds the whole call together with the read timeout.
"""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError
from telegram.error import TimedOut
from telegram.request import BaseRequest
from telegram.request import RequestData
from telegram.warnings import PTBUserWarning

log = logging.getLogger(__name__)


def quiet_typed_method_advice() -> None:
    """`do_api_request` suggests the typed method when one exists; the outbox (any
    method) and handlers' replies (no Message object wanted) use it on purpose."""
    warnings.filterwarnings("ignore", message=r"Please use 'Bot\.", category=PTBUserWarning)


class AiohttpRequest(BaseRequest):
    __slots__ = ("_connections", "_session", "_timeouts")

    def __init__(
        self,
        connections: int = 8,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._connections = connections
        self._timeouts = {"read": read_timeout, "write": write_timeout,
                          "media_write": media_write_timeout, "connect": connect_timeout,
                          "pool": pool_timeout}
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts["read"]

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                skip_auto_headers=("User-Agent",))

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _timeout(self, name: str, given: ODVInput[float]) -> float | None:
        return self._timeouts[name] if isinstance(given, DefaultValue) else given

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        headers = {"User-Agent": self.USER_AGENT}
        data: Any = None
        if files:
            assert request_data is not None
            data = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():
                data.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                data.add_field(name, content, filename=filename, content_type=mimetype)
        elif request_data is not None and request_data.parameters:
            # A JSON body, as Telegram accepts: no form encoding of every value.
            data = json.dumps(request_data.parameters, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        write = self._timeout("media_write" if files else "write", write_timeout)
        read = self._timeout("read", read_timeout)
        connect = self._timeout("connect", connect_timeout)
        pool = self._timeout("pool", pool_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None if write is None or read is None else write + read,
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect, sock_read=read)
        try:
            async with self._session.request(method, url, data=data, timeout=timeout,
                                             headers=headers) as answer:
                # The URL holds the token: bot/logs.py redacts it on every handler.
                log.debug("HTTP Request: %s %s %d", method, url, answer.status)
                return answer.status, await answer.read()
        except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors (and ClientErrors)
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{error.__class__.__name__}: {error}") from error
