"""Secrets never reach the logs: the bot token (even where httpx logs request URLs), the
webhook secret and the database password; nor do phone numbers, at any level, in text
or JSON, whichever library logs them."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from bot.config import load_settings
from bot.emulator import BotApiEmulator
from bot.logs import PHONE
from bot.logs import REDACTED
from bot.logs import RedactingFilter
from bot.logs import setup_logging
from core.normalize import normalize_phone
from storage.dataio.yamlio import load_yaml
from tests.cluster import SECRET
from tests.cluster import BotProcess
from tests.cluster import eventually
from tests.cluster import free_port
from tests.cluster import webhook_env
from tests.conftest import SAMPLE_ADMIN
from tools.testing import TEST_TOKEN
from tools.testing import BotHarness

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


# --------------------------------------------------------------------------- phone numbers


@pytest.mark.parametrize("text", [
    "📞 +86 100 0000 0148", "+86 (28) 5550-0131", "+8613800001234", "028-5550-0131",
    "值班室：0931-5550-0100）", "010 5550 0110", "(028) 55500131", "02855500131",
    "138 0000 1234", "13800001234", "keys '8610000000148 02855500131'", "\\n0991-5550-0135",
])
def test_phone_numbers_are_redacted(text: str) -> None:
    redacted = RedactingFilter().redact(text)
    assert PHONE in redacted
    assert not re.search(r"\d{3}", redacted.replace(PHONE, "")), redacted


@pytest.mark.parametrize("text", [
    "update 123456789 from user 910000001 in chat -1001000000103",
    "chat_id=-4012345678 message_id=42 query 4380000000000001 bot 7000000001",
    "date 1796483319, 1796483319123 ms, at 2026-11-25 03:00:00+00:00 (2026-12-05T15:08:38)",
    "XZ-2026-000001 and TB-2026-000123, rowkeys 4294967335 12884901888, 127.0.0.1:8443",
    "took 0.123456789 s; 1,234,567 rows; version 22.8; sha 9f0123abc",
    "{'update_id': 861234567, 'chat': {'id': -1009999999999}, 'date': 1700000000}",
])
def test_ids_times_and_numbers_are_left_alone(text: str) -> None:
    assert RedactingFilter([TEST_TOKEN]).redact(text) == text


def test_json_lines_keep_their_ids_and_lose_their_phones() -> None:
    stream = io.StringIO()
    handler = setup_logging("DEBUG", fmt="json", secrets=[SECRET], stream=stream)
    try:
        logging.getLogger("telegram.ext.ExtBot").debug(
            "Calling sendMessage with %s", {"chat_id": -1001000000103, "text": "📞 028-5550-0131",
                                            "secret_token": SECRET},
            extra={"update_id": 861234567, "chat_id": -1001000000103})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == ("Calling sendMessage with {'chat_id': -1001000000103, "
                                f"'text': '📞 {PHONE}', 'secret_token': '{REDACTED}'}}")
    assert (entry["update_id"], entry["chat_id"]) == (861234567, -1001000000103)


def test_a_library_logging_to_a_handler_of_its_own_is_redacted_too() -> None:
    own = io.StringIO()
    library = logging.getLogger("test.library")
    library.propagate = False
    library_handler = logging.StreamHandler(own)
    library.addHandler(library_handler)
    handler = setup_logging("INFO", secrets=[SECRET], stream=io.StringIO())
    try:
        library.warning("setWebhook secret_token=%s token=%s phone=%s", SECRET, TEST_TOKEN,
                        "+86 100 0000 0148")
    finally:
        library.removeHandler(library_handler)
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    assert own.getvalue() == f"setWebhook secret_token={REDACTED} token={REDACTED} phone={PHONE}\n"


def test_the_settings_name_what_the_logs_never_show() -> None:
    settings = load_settings(_env_file=None, bot_token=TEST_TOKEN, bot_mode="webhook",
                             webhook_url="https://desk.example/telegram", webhook_secret=SECRET,
                             database_url="postgresql://desk:pa%40ss-word@db:5432/desk")
    assert set(settings.log_secrets()) == {TEST_TOKEN, SECRET, "pa%40ss-word", "pa@ss-word"}


# --------------------------------------------------------------------------- a real run


def sample_phones() -> set[str]:
    """Every phone number of data/sample.yaml, as written and as digits."""
    found: set[str] = set()

    def walk(node: Any, phone: bool = False) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, "phone" in str(key))
        elif isinstance(node, list):
            for item in node:
                walk(item, phone)
        elif phone and isinstance(node, str):
            found.add(node)

    walk(load_yaml(Path("data/sample.yaml").read_text(encoding="utf-8")))
    return found


def forms(phone: str) -> set[str]:
    """How a phone number may be written into a log line."""
    national = str(phonenumbers.parse(phone, "CN").national_number)
    return {phone, normalize_phone(phone), national, "0" + national}


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_real_run_at_debug_logs_no_secret_no_token_and_no_phone(
    emulator: BotApiEmulator, database_url: str, fmt: str
) -> None:
    """`python -m bot run` in webhook mode at DEBUG on the sample data; lookups that show
    phone numbers; everything it logged, from every library, is checked."""
    emulator.add_user(SAMPLE_ADMIN, "周立新")
    port = free_port()
    env = webhook_env(emulator, database_url, f"http://127.0.0.1:{port}/telegram", port,
                      log_level="DEBUG", log_format=fmt, load_sample_data="true")
    lookups = ["四川刑侦", "/oncall", "/contact 陕西", "/contact 028-5550-0131"]
    async with BotProcess("bot", env) as bot:
        await eventually(lambda: emulator.webhook.get("url"), 30, "setWebhook")
        for text in lookups:
            assert await emulator.deliver_webhook(
                emulator.make_message_update(SAMPLE_ADMIN, SAMPLE_ADMIN, text)) == 200
        assert await emulator.deliver_webhook(
            emulator.make_inline_query_update(SAMPLE_ADMIN, "四川 刑侦")) == 200
        await eventually(lambda: len(emulator.calls_for(SAMPLE_ADMIN, ["sendMessage"]))
                         == len(lookups) and any(c.method == "answerInlineQuery"
                                                 for c in emulator.calls), 30, "the answers")
    output = bot.log
    answers = "\n".join(c.params.get("text", "") for c in emulator.calls_for(SAMPLE_ADMIN))
    # What the test is about reached the log: the calls and the cards with their numbers.
    assert "setWebhook" in output and "张伟" in output and "answerInlineQuery" in output
    assert "028-5550-0131" in answers and "+86 100 0000 0148" in answers
    assert SECRET not in output and "secret_token" in output
    assert TEST_TOKEN not in output and TEST_TOKEN.split(":")[1] not in output
    leaked = {phone for phone in sample_phones() if any(f in output for f in forms(phone))}
    assert not leaked, sorted(leaked)
    assert output.count(PHONE) >= 20
    assert str(SAMPLE_ADMIN) in output  # ids are not taken for phone numbers
    if fmt == "json":
        lines = [json.loads(line) for line in output.splitlines() if line.strip()]
        assert {"DEBUG", "INFO"} <= {line["level"] for line in lines}
