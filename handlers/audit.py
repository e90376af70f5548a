"""/audit USER|UNIT [PERIOD]: what the audit log holds about a person or a unit, for
administrators in private chat. A user is named by Telegram id or @username; a unit as
every command names one. The period is read as /export reads it (`本周`, `上月`,
`2026-11`, …; the last 30 days, today included, if none), in the administrator's time
zone.

A page shows the newest entries first, with buttons to older and newer pages; the
buttons carry a short id of the query, which stays with the chat. Looking is itself
audited (`audit.view`), so who read whose record is on record too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.clock import local_instant
from core.clock import time_zone
from core.enums import Role
from core.periods import Period
from core.periods import PeriodProblem
from core.periods import parse_period
from handlers.admin import one_unit
from handlers.admin import target_user
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import reply
from handlers.contact_common import recalled_query
from handlers.contact_common import remember_query
from handlers.flow import reader_zone_name
from i18n import Translator
from storage.access import audit
from storage.audit import actors_of
from storage.audit import entries_about
from storage.audit import subjects_of
from storage.models import Unit
from storage.models import User
from storage.units import find_units
from views.audit import entry_line
from views.audit import page_text
from views.audit import period_days
from views.audit import person
from views.buttons import Markup
from views.requests import period_problem

COMMANDS = [CommandInfo("audit", Role.admin, Where.private, "audit.command")]

# aud:<query id>:<offset>:<the newest entry id when the listing began>
CALLBACK = re.compile(r"^aud:(\d{1,9}):(\d{1,6}):(\d{1,9})$")
PAGE_SIZE = 15
DEFAULT_DAYS = timedelta(days=30)  # with no period: the last 30 days, today included
USER_ID = re.compile(r"-?[0-9]{1,15}")


@dataclass(frozen=True)
class Subject:
    """Whom or what an /audit asks about: one user or one unit."""

    user: User | None = None
    unit: Unit | None = None

    def label(self, tr: Translator) -> str:
        if self.user is not None:
            return person(tr, self.user)
        assert self.unit is not None
        return tr.name(self.unit.name)

    def audited_as(self) -> dict[str, Any]:
        """The subject of the `audit.view` entry that records looking at this."""
        if self.user is not None:
            return {"subject_type": "user", "subject_id": self.user.telegram_id}
        assert self.unit is not None
        return {"subject_type": "units", "subject_id": self.unit.id}


async def resolve_subject(session: AsyncSession, tr: Translator, who: str) -> Subject:
    """A Telegram id or @username is a user; anything else a unit, else a username.
    Raises Refusal (nothing is shown) for no match, or for several units."""
    unknown = Refusal(tr("audit.unknown", query=escape(who[:60])))
    if not (USER_ID.fullmatch(who) or who.startswith("@")) and await find_units(session, who):
        return Subject(unit=await one_unit(session, tr, who))
    try:
        return Subject(user=await target_user(session, tr, who))
    except Refusal:
        raise unknown from None


def split_query(words: list[str], now: datetime, zone: ZoneInfo,
                tr: Translator) -> tuple[str, Period]:
    """(who, the period): the last word is the period when it reads as one."""
    try:
        period = parse_period(words[-1], now, zone) if len(words) > 1 else None
    except PeriodProblem as problem:
        raise Refusal(period_problem(tr, problem)) from None
    if period is None:
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        return " ".join(words), Period(local_instant(tomorrow - DEFAULT_DAYS, time(0), zone),
                                       local_instant(tomorrow, time(0), zone))
    return " ".join(words[:-1]), period


async def audit_page(svc: Services, actor: Actor, query: str, query_id: str, offset: int,
                     upto: int | None = None) -> tuple[str, Markup | None]:
    """The page at `offset` of what the log holds about the query's subject (up to entry
    `upto`, so the pages of one listing hold still), and the buttons to the pages around
    it; the look is audited in the same unit of work."""
    tr, now = actor.tr, svc.now()
    zone_name = reader_zone_name(svc, actor)
    zone = time_zone(zone_name, svc.settings.bot_timezone)
    who, period = split_query(query.split(), now, zone, tr)
    if not who:
        raise Refusal(tr("audit.usage"))
    async with svc.db.session() as session:
        subject = await resolve_subject(session, tr, who)
        total, upto, entries = await entries_about(
            session, user=subject.user, unit=subject.unit, start=period.start,
            end=period.end, upto=upto, offset=offset, limit=PAGE_SIZE)
        actors, subjects = await actors_of(session, entries), await subjects_of(session, entries)
        lines = [entry_line(tr, entry, actors, subjects, zone_name, now) for entry in entries]
        label = subject.label(tr)
        await audit(session, "audit.view", actor=actor.user, **subject.audited_as(),
                    start=period.start.isoformat(), end=period.end.isoformat(),
                    offset=offset, shown=len(entries))
    text = page_text(tr, label, period_days(period.start, period.end, zone), total, offset,
                     lines)
    buttons: list[tuple[str, str]] = []
    if offset > 0:
        buttons.append((tr("audit.newer"),
                        f"aud:{query_id}:{max(offset - PAGE_SIZE, 0)}:{upto}"))
    if offset + len(entries) < total:
        buttons.append((tr("audit.older"), f"aud:{query_id}:{offset + PAGE_SIZE}:{upto}"))
    return text, keyboard([buttons]) if buttons else None


@guarded(Role.admin, Where.private)
async def audit_command(update: Update, context: Context, actor: Actor) -> None:
    tr, query = actor.tr, " ".join(context.args or []).strip()
    if not query:
        raise Refusal(tr("audit.usage"))
    text, markup = await audit_page(services(context), actor, query,
                                    remember_query(context, query), 0)
    await reply(update, text, markup)


@guarded(Role.admin, Where.private)
async def audit_pressed(update: Update, context: Context, actor: Actor) -> None:
    """Older or newer: the same query, read again now, at another offset."""
    query = update.callback_query
    assert query is not None
    match = CALLBACK.match(query.data or "")
    text = recalled_query(context, match.group(1)) if match else None
    if match is None or text is None:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    await query.answer()
    try:
        page, markup = await audit_page(services(context), actor, text, match.group(1),
                                        int(match.group(2)), int(match.group(3)))
    except Refusal as refusal:
        page, markup = refusal.text, None
    await edit_query_message(update, page, markup)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("audit", audit_command))
    application.add_handler(CallbackQueryHandler(audit_pressed, pattern=r"^aud:"))
