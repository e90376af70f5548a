"""What the notice modules share: the states of the one conversation that holds both
the new-notice flow and the correction prompt, the prefixes of their buttons' data,
and how a typed word and a message's text are read."""

from __future__ import annotations

from datetime import timedelta

from telegram import Update

from bot.services import Services
from core import requests as rules
from core.notices import NoticePolicy

KIND, SEVERITY, AUDIENCE, TEXT, WHEN, CONFIRM, CORRECT = range(7)
CORRECTING = "notice_correct"  # the correction prompt (the draft: NEW_NOTICE.draft_key)
# Button data: the new-notice flow (and the ✖️ of a correction prompt), /notices.
NEW, MANAGE = "ntn", "ntm"
TOKEN = "[0-9a-f]{8}"  # the token a confirmation's buttons carry (handlers/common.py)
# A draft or correction prompt left alone this long is over.
DRAFT_TTL = timedelta(hours=6)


def policy(svc: Services) -> NoticePolicy:
    return NoticePolicy.from_settings(svc.settings)


def text_of(update: Update) -> str:
    """The message's text, or its photo's or document's caption."""
    message = update.effective_message
    return (message.text or message.caption or "") if message else ""


def folded_word(text: str) -> str:
    """A typed word as the word lists hold it (folded, stripped)."""
    return rules.fold(text).strip()
