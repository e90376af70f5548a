"""What people read: texts, buttons and files from the catalogues, as the Bot API takes
them. No session and no Telegram call here: the caller queries, a handler or the outbox
sends."""

from __future__ import annotations

from typing import Any

# How the desk sends every message, outbox rows and replies alike: HTML, no link
# previews. PTB's own methods get the same from the Application's Defaults (bot/app.py).
HTML: dict[str, Any] = {"parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}


def html_message(text: str, markup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bot API parameters of a message: its text, HTML, and its buttons if any."""
    payload: dict[str, Any] = {"text": text, **HTML}
    if markup:
        payload["reply_markup"] = markup
    return payload
