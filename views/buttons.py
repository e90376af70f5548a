"""Inline buttons as the Bot API takes them: a label and what pressing does (callback
data, or text copied to the clipboard), coloured by what it means (Bot API 9.4 `style`).

A keyboard is the Bot API's JSON as it is (`keyboard()`), for replies, edits and outbox
rows alike: outbox rows store it unchanged, so the colours and copy texts reach Telegram
from the database as they were built; and a reply builds no python-telegram-bot object
per button (on a page of contact cards, with their copy buttons, that took a fifth of a
lookup's time).
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


# A button of `keyboard`: (label, callback_data), or a Button (a colour, a copy button).
Key = tuple[str, str] | Button
# The Bot API's InlineKeyboardMarkup as JSON.
Markup = dict[str, Any]


def keyboard(rows: Iterable[Iterable[Key]]) -> Markup:
    """The Bot API's InlineKeyboardMarkup of rows of keys."""
    return {"inline_keyboard": [[_api(key) for key in row] for row in rows]}


def _api(key: Key) -> dict[str, Any]:
    if isinstance(key, Button):
        return key.api()
    label, data = key
    return {"text": label, "callback_data": data}
