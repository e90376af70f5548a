"""What the emulator records and answers: Telegram's error envelope, the files it holds,
each call as it understood it, and the counters benchmarks read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

BOT_ID = 7000000001
# The token the console and the tests give the bot for the emulator: shaped like a real
# one (this bot's id, a colon, 35 characters), so the log redaction tests mean something.
EMULATOR_TOKEN = f"{BOT_ID}:AAF-emulator-test-token-0123456789abc"


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


class Stats(Counter[str]):
    """Counts by event — "requests", "sent", "edited", "rate_limited" (every 429 answered),
    "over_limit" (429s from enforced limits) — and accepted sends per chat."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_per_chat: Counter[int] = Counter()


def utf16_len(text: str) -> int:
    """Telegram measures offsets and lengths in UTF-16 code units."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2
