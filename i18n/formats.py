"""Dates, times and lengths of time as a reader reads them, from the catalogue: one
place for the formats every feature shows (meetings, rosters, the chair, contacts)."""

from __future__ import annotations

from datetime import date
from datetime import datetime

from core.clock import DEFAULT_ZONE
from core.clock import time_zone
from i18n import Translator


def local_time(tr: Translator, instant: datetime, timezone: str, default_timezone: str) -> str:
    zone = time_zone(timezone, default_timezone)  # a zone the data got wrong: the bot's
    local = instant.astimezone(zone)
    text = tr("format.datetime", month=local.month, day=local.day, time=local.strftime("%H:%M"))
    if zone.key != default_timezone:
        text += tr("format.zone_suffix", zone=zone.key)
    return text


def zone_note(tr: Translator, zone_name: str | None) -> str:
    """' (Asia/Urumqi)' when the zone is not the default one, else ''."""
    if not zone_name or zone_name == DEFAULT_ZONE:
        return ""
    return tr("meetings.fmt.zone", zone=zone_name)


def fmt_date(tr: Translator, day: date, *, today: date | None = None) -> str:
    months = tr("meetings.fmt.months").split(",")
    weekdays = tr("meetings.fmt.weekdays").split(",")
    values = {"month": months[day.month - 1], "day": day.day,
              "weekday": weekdays[day.weekday()], "year": day.year}
    if today is not None and abs((day - today).days) < 300:
        return tr("meetings.fmt.date", **values)
    return tr("meetings.fmt.date_year", **values)


def fmt_clock(moment: datetime, zone_name: str | None) -> str:
    return moment.astimezone(time_zone(zone_name)).strftime("%H:%M")


def fmt_when(
    tr: Translator, moment: datetime, zone_name: str | None, *, now: datetime | None = None,
    with_zone: bool = True,
) -> str:
    local = moment.astimezone(time_zone(zone_name))
    today = now.astimezone(time_zone(zone_name)).date() if now else None
    text = f"{fmt_date(tr, local.date(), today=today)} {local:%H:%M}"
    return text + (zone_note(tr, zone_name) if with_zone else "")


def fmt_span(
    tr: Translator, start: datetime, end: datetime, zone_name: str | None, *,
    now: datetime | None = None,
) -> str:
    local_start = start.astimezone(time_zone(zone_name))
    local_end = end.astimezone(time_zone(zone_name))
    if local_start.date() == local_end.date():
        text = f"{fmt_when(tr, start, zone_name, now=now, with_zone=False)}–{local_end:%H:%M}"
    else:
        text = (f"{fmt_when(tr, start, zone_name, now=now, with_zone=False)} – "
                f"{fmt_when(tr, end, zone_name, now=now, with_zone=False)}")
    return text + zone_note(tr, zone_name)


def fmt_minutes(tr: Translator, minutes: int, *, compact: bool = False) -> str:
    """7 天 / 1 小时 / 1 天 2 小时 30 分钟 / 0 分钟 — an offset or a lead time, to the minute.

    `compact`, how long a request took or may take: 1天3小时, 2小时5分钟 — the requests'
    wording (no spaces in Chinese), at most two units (no minutes beside days)."""
    words = "requests.duration" if compact else "meetings.fmt"
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(tr(f"{words}.days", n=days))
    if hours:
        parts.append(tr(f"{words}.hours", n=hours))
    if (mins and not (compact and days)) or not parts:
        parts.append(tr(f"{words}.minutes", n=mins))
    return tr(f"{words}.join").join(parts)
