"""The three catalogues say the same things with the same placeholders."""

from __future__ import annotations

import string
from datetime import UTC
from datetime import datetime

import pytest

from i18n import LANGUAGES
from i18n import Translator
from i18n import catalogue
from i18n import language_from_telegram
from i18n import t
from i18n.formats import local_time


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_language_has_every_key() -> None:
    reference = set(catalogue("zh-Hans"))
    for language in LANGUAGES:
        missing = reference - set(catalogue(language))
        extra = set(catalogue(language)) - reference
        assert not missing and not extra, (language, sorted(missing), sorted(extra))


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_match_the_default_language(language: str) -> None:
    reference = catalogue("zh-Hans")
    for key, template in catalogue(language).items():
        assert placeholders(template) == placeholders(reference[key]), (language, key)


def test_unknown_language_falls_back_to_simplified_chinese() -> None:
    assert t("fr", "lang.name") == "简体中文"


@pytest.mark.parametrize(
    ("code", "language"),
    [("zh-hans", "zh-Hans"), ("zh-CN", "zh-Hans"), ("zh-TW", "zh-Hant"), ("zh-hk", "zh-Hant"),
     ("en-GB", "en"), ("de", "zh-Hans"), (None, "zh-Hans")],
)
def test_telegram_language_codes(code: str | None, language: str) -> None:
    assert language_from_telegram(code) == language


@pytest.mark.parametrize("language", LANGUAGES)
def test_refusals_fit_a_button_alert(language: str) -> None:
    """A pressed button's refusal is shown as an alert (answerCallbackQuery), which
    Telegram cuts at 200 characters."""
    for key, template in catalogue(language).items():
        if key.startswith("errors.") and not placeholders(template):
            assert len(template) <= 200, (language, key, len(template))


def test_a_time_in_a_zone_the_data_got_wrong_reads_in_the_bots_zone() -> None:
    instant = datetime(2026, 1, 1, tzinfo=UTC)
    english = Translator("en")
    assert local_time(english, instant, "Asia/Urumqi", "Asia/Shanghai") == "1/1 06:00 (Asia/Urumqi)"
    # Not labelled with a zone it is not in, and no error for the whole message.
    assert local_time(english, instant, "Bad/Zone", "Asia/Shanghai") == "1/1 08:00"
    assert local_time(english, instant, "Asia/Shanghai", "Asia/Shanghai") == "1/1 08:00"
