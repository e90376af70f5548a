"""The bot token never reaches the logs, even where httpx logs request URLs."""

from __future__ import annotations

import io
import logging

from bot.logs import REDACTED, RedactingFilter, setup_logging
from bot.testing import TEST_TOKEN, BotHarness

ADMIN_ID = 910000001


def test_filter_redacts_tokens_in_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = setup_logging("DEBUG", secrets=["s3cret-webhook"], stream=stream)
    log = logging.getLogger("test.redaction")
    try:
        log.info("GET https://api.telegram.org/bot%s/getMe", TEST_TOKEN)
        log.info("webhook secret is s3cret-webhook")
        try:
            raise RuntimeError(f"failed calling /bot{TEST_TOKEN}/sendMessage")
        except RuntimeError:
            log.exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert TEST_TOKEN not in output
    assert TEST_TOKEN.split(":")[1] not in output
    assert "s3cret-webhook" not in output
    assert output.count(REDACTED) >= 3


def test_json_lines_are_redacted_too() -> None:
    stream = io.StringIO()
    handler = setup_logging("INFO", fmt="json", stream=stream)
    try:
        logging.getLogger("test.json").warning("token %s", TEST_TOKEN)
    finally:
        logging.getLogger().removeHandler(handler)
    assert TEST_TOKEN not in stream.getvalue() and REDACTED in stream.getvalue()


async def test_bot_api_request_logs_of_a_running_bot_are_redacted(bot: BotHarness) -> None:
    stream = io.StringIO()
    handler = setup_logging("DEBUG", secrets=[TEST_TOKEN], stream=stream)
    try:
        await bot.send(ADMIN_ID, "/help")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    output = stream.getvalue()
    assert "HTTP Request: POST" in output and "sendMessage" in output  # bot/bot_api.py
    assert TEST_TOKEN not in output
    assert REDACTED in output


def test_a_record_without_secrets_is_left_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("text",), None)
    assert RedactingFilter([TEST_TOKEN]).filter(record)
    assert record.getMessage() == "plain text"
