"""Instants shown in the reader's (or the unit's) time zone, named when it is not the bot's."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from i18n import Translator


def local_time(tr: Translator, instant: datetime, timezone: str, default_timezone: str) -> str:
    local = instant.astimezone(ZoneInfo(timezone))
    text = tr("format.datetime", month=local.month, day=local.day, time=local.strftime("%H:%M"))
    if timezone != default_timezone:
        text += tr("format.zone_suffix", zone=timezone)
    return text
