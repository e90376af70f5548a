"""Logging set-up: text or JSON lines, with secrets and phone numbers never written out.

What reaches a log line at DEBUG is broad: PTB logs every Bot API call with its
parameters and result (the token in URLs, the webhook secret in setWebhook, whole
contact cards with their phone numbers), httpx and our Bot API client log URLs, and
exceptions quote what they were handling. So redaction is a filter on the handlers,
which every logger's records pass through (PTB, httpx, aiohttp, apscheduler, ours),
not care at a few call sites: `RedactingFilter` replaces the configured secrets (the
bot token, the webhook secret, the database password), anything shaped like a bot
token, and phone-number-like sequences, in messages, tracebacks and stack traces.

Phone numbers are recognised by shape (`PHONE_PATTERN`), not by phonenumbers'
PhoneNumberMatcher: at "possible" leniency that takes Telegram ids, timestamps and IP
addresses for numbers, and at "valid" it misses unallocated ranges and takes request
numbers (XZ-2026-000001) for them. The shapes are those a directory holds and the
search index derives (digits only); ids, update ids, chat ids (-100…), timestamps and
dates do not have them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import TextIO

TOKEN_PATTERN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")
REDACTED = "[REDACTED]"
PHONE = "[PHONE]"
# Each alternative is a whole number: no digit right before or after it.
PHONE_PATTERN = re.compile(
    r"(?<!\d)(?:"
    r"\+\d(?:[ ().-]{0,2}\d){6,14}"  # international: +86 100 0000 0148, +86 (28) 5550-0131
    r"|\(?0\d{1,3}\)?[ -]?\d(?:[ -]?\d){5,11}"  # trunk 0: 028-5550-0131, 0931 55500100, 00861…
    r"|1\d{2}[ -]\d{4}[ -]?\d{4}|1[3-9]\d{9}"  # a mobile: 138 0000 1234, 13800001234
    r"|86\d{9,11}"  # digits only with the country code, as the search index keeps them
    r")(?!\d)"
)
# Below these levels the chattiest libraries only repeat what is logged elsewhere.
QUIET = {"apscheduler": logging.WARNING, "alembic": logging.WARNING,
         # one line per SQL statement, with every parameter
         "aiosqlite": logging.INFO}


class RedactingFilter(logging.Filter):
    """Redacts `secrets`, bot tokens and phone numbers from every record it sees."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # Longest first: a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return PHONE_PATTERN.sub(PHONE, TOKEN_PATTERN.sub(REDACTED, text))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key in ("update_id", "chat_id", "user_id", "outbox_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, ensure_ascii=False)


def guard_handlers(redacting: RedactingFilter) -> None:
    """Put the filter on every handler there is: the root's and any a library added to
    its own logger (which may not propagate to the root)."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(old)
            handler.addFilter(redacting)


def setup_logging(level: str = "INFO", *, fmt: str = "text",
                  secrets: Iterable[str | None] = (), stream: TextIO | None = None
                  ) -> logging.Handler:
    """One handler on the root logger, text or JSON lines; every handler redacts
    `secrets` (the bot token, the webhook secret…), bot tokens and phone numbers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    guard_handlers(RedactingFilter(secrets))
    # Request lines are noise at INFO; they stay available (redacted) at DEBUG.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for noisy, quiet_below in QUIET.items():
        logging.getLogger(noisy).setLevel(max(quiet_below, logging.getLevelName(level)))
    return handler
