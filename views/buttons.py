"""Inline buttons as the Bot API takes them: a label and what pressing does (callback
data, or text copied to the clipboard), coloured by what it means (Bot API 9.4 `style`).

Replies build their keyboards from these through `handlers.common.keyboard`; outbox
rows store `markup()`'s dict as it is, so the colours and copy texts reach Telegram
from the database unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

COPY_TEXT_MAX = 256  # Telegram copies 1-256 characters


class Style(StrEnum):
    """A button's colour by its meaning, the same everywhere: a press that agrees
    (accept, confirm, complete, acknowledge) is green; one that refuses or undoes
    something that exists (decline, withdraw, cancel a meeting, deactivate) is red; the
    main neutral next step is blue. Everything else keeps the app's own style."""

    success = "success"
    danger = "danger"
    primary = "primary"


@dataclass(frozen=True)
class Button:
    """One inline button: pressing it sends `data` to the bot, or copies `copy`."""

    text: str
    data: str = ""
    style: Style | None = None
    copy: str = ""

    def __post_init__(self) -> None:
        if bool(self.data) == bool(self.copy):
            raise ValueError("a button either sends callback data or copies text")
        if self.copy and len(self.copy) > COPY_TEXT_MAX:
            raise ValueError(f"Telegram copies at most {COPY_TEXT_MAX} characters")

    def api(self) -> dict[str, Any]:
        """The Bot API's InlineKeyboardButton."""
        button: dict[str, Any] = {"text": self.text}
        if self.copy:
            button["copy_text"] = {"text": self.copy}
        else:
            button["callback_data"] = self.data
        if self.style is not None:
            button["style"] = self.style.value
        return button


def in_rows(buttons: Sequence[Button], width: int) -> list[list[Button]]:
    return [list(buttons[i:i + width]) for i in range(0, len(buttons), width)]


def markup(rows: Iterable[Iterable[Button]]) -> dict[str, Any]:
    """The Bot API's InlineKeyboardMarkup, as outbox payloads store it."""
    return {"inline_keyboard": [[button.api() for button in row] for row in rows]}
