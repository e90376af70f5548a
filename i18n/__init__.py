"""Message catalogues (zh-Hans default, zh-Hant, en): YAML files per language and feature.

`i18n/locales/<language>/<feature>.yaml` hold nested keys (top-level key = namespace);
`t(lang, "start.linked", name=…)` formats one. A missing key falls back to the default
language, so a half-translated feature shows Chinese rather than crashing a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.normalize import in_script

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "zh-Hans"
LANGUAGES = ("zh-Hans", "zh-Hant", "en")
log = logging.getLogger(__name__)


def _flatten(prefix: str, node: Any, into: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, into)
    else:
        into[prefix] = str(node)


@cache
def catalogue(language: str) -> dict[str, str]:
    messages: dict[str, str] = {}
    for path in sorted((LOCALES_DIR / language).glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        _flatten("", document, messages)
    return messages


def t(language: str | None, key: str, /, **values: Any) -> str:
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    template = catalogue(language).get(key) or catalogue(DEFAULT_LANGUAGE).get(key)
    if template is None:
        log.error("missing message %s", key)
        return key
    return template.format(**values) if values else template


def language_from_telegram(code: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Map Telegram's IETF language_code (zh-hans, zh-tw, en-GB …) to a catalogue."""
    if not code:
        return default
    code = code.lower()
    if code.startswith("en"):
        return "en"
    if code in {"zh-hant", "zh-tw", "zh-hk", "zh-mo"}:
        return "zh-Hant"
    if code.startswith("zh"):
        return "zh-Hans"
    return default


class Translator:
    """The catalogue bound to one reader's language, handed to renderers."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE

    def __call__(self, key: str, /, **values: Any) -> str:
        return t(self.language, key, **values)

    def name(self, text: str | None) -> str:
        """A directory name (unit, branch, zone) in the reader's script, whatever script
        the data was written in (English readers get it as written)."""
        return in_script(text or "", self.language)

    def join(self, items: Iterable[str]) -> str:
        """A list in the reader's punctuation: 甲、乙 or A, B."""
        return self("common.list_separator").join(items)
