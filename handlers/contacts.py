"""Finding counterparts: /contact, the zone → unit → branch menu and /oncall; register()
and register_fallbacks() also wire the plain-text lookups and inline mode
(contact_lookup.py).

Contact details are sensitive: only registered users see them, never in a group that
is not a registered duty room, and every card shown is written to the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import InlineQueryHandler
from telegram.ext import MessageHandler
from telegram.ext import filters

from bot.commands import CommandInfo
from bot.commands import Where
from bot.services import Actor
from bot.services import services
from core.enums import Role
from core.vocabulary import parse_query
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import may_show_details
from handlers.common import pressed
from handlers.common import reply as send_reply
from handlers.contact_common import MAX_QUERY
from handlers.contact_common import ContactPage
from handlers.contact_common import contact_page
from handlers.contact_common import duties_now
from handlers.contact_common import duty_numbers
from handlers.contact_common import duty_views
from handlers.contact_common import no_room_line
from handlers.contact_common import recalled_query
from handlers.contact_common import room_lines
from handlers.contact_common import show
from handlers.contact_common import zone_rows
from handlers.contact_lookup import inline
from handlers.contact_lookup import mentioned
from handlers.contact_lookup import plain_text
from handlers.lookup_quota import admit
from handlers.lookup_quota import cleared
from i18n import Translator
from storage import directory
from storage.duty import UnitDuty
from storage.models import DutyRoom
from storage.schedules import rooms_named
from storage.search.vocabulary import load_vocabulary
from views.contacts import copy_phone_rows

COMMANDS = [
    CommandInfo("contact", Role.officer, Where.anywhere, "contacts.command"),
    CommandInfo("oncall", Role.officer, Where.anywhere, "oncall.command"),
]

CALLBACK = re.compile(r"^ct:(pg|z|u|ub|s|only|menu)(?::(\d{1,9}))?(?::(\d{1,9}))?$")


# --------------------------------------------------------------------------- /contact


@guarded(Role.officer)
async def contact(update: Update, context: Context, actor: Actor) -> None:
    query = " ".join(context.args or []).strip()
    await answer_contacts(update, context, actor, query)


async def answer_contacts(update: Update, context: Context, actor: Actor, query: str,
                          offset: int = 0) -> None:
    tr, svc = actor.tr, services(context)
    try:
        if len(query) > MAX_QUERY:
            raise Refusal(tr("errors.too_long", limit=MAX_QUERY))
        async with svc.db.reading() as session:
            if not await may_show_details(session, update):
                raise Refusal(tr("contacts.group_not_room"))
            if not query:
                page = ContactPage(tr("contacts.menu_zones"), [], zone_rows(
                    tr, await directory.zones(session)))
            else:
                page = await contact_page(session, context, actor, query, offset)
            admission = await admit(session, context, actor, page.audit)
    except Refusal as refusal:
        await show(update, refusal.text)
        return
    if not await cleared(update, context, actor, admission):
        return
    await show(update, page.text, page.markup)


@guarded(Role.officer)
async def contact_button(update: Update, context: Context, actor: Actor) -> None:
    tr, svc = actor.tr, services(context)
    action, first, second = pressed(update, tr, CALLBACK).groups()
    if action in {"pg", "s", "only"}:
        text = recalled_query(context, first)
        offset = int(second or 0)
        if text is None or offset > 10_000:
            raise Refusal(tr("errors.stale_button"))
        await answer_contacts(update, context, actor, text, offset)
        return
    async with svc.db.session() as session:
        if action == "menu":
            text, markup = tr("contacts.menu_zones"), keyboard(
                zone_rows(tr, await directory.zones(session)))
        elif action == "z" and first and (zone := await directory.get_zone(session, int(first))):
            units = await directory.zone_units(session, zone.id)
            rows = [[(tr.name(u.short_name), f"ct:u:{u.id}") for u in units[i:i + 3]]
                    for i in range(0, len(units), 3)]
            text = tr("contacts.menu_units", zone=escape(tr.name(zone.name)))
            markup = keyboard(rows)
        elif action == "u" and first and (unit := await directory.get_unit(session, int(first))):
            branches = await directory.branches_of_unit(session, unit.id)
            rows = [[(tr.name(b.name), f"ct:ub:{unit.id}:{b.id}") for b in branches[i:i + 3]]
                    for i in range(0, len(branches), 3)]
            rows.append([(tr("contacts.all_branches"), f"ct:ub:{unit.id}:0")])
            text = tr("contacts.menu_branches", unit=escape(tr.name(unit.name)))
            markup = keyboard(rows)
        elif action == "ub" and first and (unit := await directory.get_unit(session, int(first))):
            branch = await directory.get_branch(session, int(second or 0)) if second else None
            text = f"{unit.name} {branch.name}" if branch else unit.name
            markup = None
        else:
            text, markup = "", None
    if not text:
        raise Refusal(tr("errors.stale_button"))
    if action == "ub":
        await answer_contacts(update, context, actor, text)
    else:
        await show(update, text, markup)


# --------------------------------------------------------------------------- /oncall


def oncall_text(tr: Translator, duties: Iterable[UnitDuty], default_tz: str, *,
                compact_roomless: bool) -> str:
    """Every duty room of the units, each with who is on duty; units without a room
    with their duty phone (`compact_roomless`: on one line at the end)."""
    blocks, roomless = [tr("oncall.header")], []
    for unit in duties:
        if not unit.rooms and compact_roomless:
            name = escape(tr.name(unit.unit_name))
            roomless.append(tr("oncall.unit_phone", unit=name, phone=escape(unit.duty_phone))
                            if unit.duty_phone else name)
        elif not unit.rooms:
            blocks.append(f"<b>{escape(tr.name(unit.unit_name))}</b>\n{no_room_line(tr, unit)}")
        blocks += [f"<b>{escape(tr.name(room.room_title))}</b>\n"
                   + "\n".join(room_lines(tr, room, default_tz)) for room in unit.rooms]
    if roomless:
        blocks.append(tr("oncall.without_rooms", units=tr.join(roomless)))
    return "\n\n".join(blocks)


def _only_rooms(duties: dict[int, UnitDuty], room_ids: set[int]) -> list[UnitDuty]:
    return [replace(d, rooms=tuple(r for r in d.rooms if r.room_id in room_ids))
            for d in duties.values() if any(r.room_id in room_ids for r in d.rooms)]


async def oncall_targets(session: AsyncSession, actor: Actor,
                         query: str) -> tuple[set[int], list[DutyRoom]]:
    """The units asked for, and the rooms when a room was named: a room's full name,
    else units or zones, else a part of a room's name (交管指挥中心); no query: the
    units of the reader's zones."""
    tr = actor.tr
    if not query:
        user = actor.user
        zone_ids = await directory.zone_ids_of_unit(session, user.unit_id) \
            if user and user.unit_id else []
        unit_ids = set(await directory.units_of_zones(session, zone_ids))
        if not unit_ids:
            raise Refusal(tr("oncall.usage"))
        return unit_ids, []
    rooms = await rooms_named(session, query, partial=False, registered=False)
    if not rooms:
        parsed = parse_query(query, await load_vocabulary(session, epoch=actor.epoch))
        unit_ids = set(parsed.unit_ids) | set(
            await directory.units_of_zones(session, parsed.zone_ids))
        if unit_ids:
            return unit_ids, []
        rooms = await rooms_named(session, query, registered=False)
    if not rooms:
        raise Refusal(tr("oncall.unknown_unit", query=escape(query)))
    return {room.unit_id for room in rooms}, rooms


@guarded(Role.officer)
async def oncall(update: Update, context: Context, actor: Actor) -> None:
    """`/oncall` (your zones), `/oncall UNIT|ZONE`, or `/oncall ROOM` by the room's name."""
    tr, svc = actor.tr, services(context)
    query = " ".join(context.args or []).strip()[:MAX_QUERY]
    async with svc.db.reading() as session:
        if not await may_show_details(session, update):
            raise Refusal(tr("contacts.group_not_room"))
        unit_ids, rooms = await oncall_targets(session, actor, query)
        duties = await duties_now(session, svc, actor, unit_ids)
        shown = _only_rooms(duties, {room.id for room in rooms}) if rooms \
            else list(duties.values())
        admission = await admit(session, context, actor, duty_views(
            actor, [duty.unit_id for duty in shown], query,
            action="oncall.view" if query else "oncall.overview"))
    if not await cleared(update, context, actor, admission):
        return
    # Without a query the units without a room are one line of names and duty phones.
    copies = copy_phone_rows(tr, duty_numbers(tr, shown, parents=bool(query)))
    await send_reply(update, oncall_text(tr, shown, svc.settings.bot_timezone,
                                         compact_roomless=not query),
                     keyboard(copies) if copies else None)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("contact", contact))
    application.add_handler(CommandHandler("oncall", oncall))
    application.add_handler(CallbackQueryHandler(contact_button, pattern=r"^ct:"))
    application.add_handler(InlineQueryHandler(inline))


def register_fallbacks(application: Application) -> None:
    """Plain text last: any conversation registered before takes its messages first."""
    application.add_handler(MessageHandler(
        filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE, plain_text))
    application.add_handler(MessageHandler(
        filters.TEXT & ~filters.COMMAND & filters.ChatType.GROUPS & filters.Entity("mention"),
        mentioned))
