"""Finding counterparts: /contact, the zone → unit → branch menu, /oncall, plain-text
lookups in private chats (and mentions in duty rooms), and inline mode.

Contact details are sensitive: only registered users see them, never in a group that
is not a registered duty room, and every card shown is written to the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineQueryResultArticle, InputTextMessageContent, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bot.commands import CommandInfo, Where
from bot.services import Actor, Services, services
from core.enums import LiaisonRole, Role
from core.vocabulary import Vocabulary, parse_query
from handlers.common import (
    Context,
    Refusal,
    current_actor,
    edit_query_message,
    escape,
    guarded,
    keyboard,
    may_show_details,
    record_views,
    unregistered_key,
)
from handlers.common import reply as send_reply
from i18n import Translator
from i18n.formats import local_time
from storage import directory
from storage.access import audit_row
from storage.duty import OnDuty, UnitDuty, on_duty_cached
from storage.models import DutyRoom, Liaison
from storage.schedules import rooms_named
from storage.search.clauses import ClauseHit, search_clauses
from storage.search.liaisons import LiaisonResults, MatchTier, search_liaisons_cached
from storage.search.vocabulary import load_vocabulary

COMMANDS = [
    CommandInfo("contact", Role.officer, Where.anywhere, "contacts.command"),
    CommandInfo("oncall", Role.officer, Where.anywhere, "oncall.command"),
]
PAGE_SIZE = 5
PLAIN_TEXT_CONTACTS = 3
PLAIN_TEXT_CLAUSES = 3
INLINE_RESULTS = 8
INLINE_CACHE_SECONDS = 10
MAX_QUERY = 100
QUERIES_KEPT = 30
CALLBACK = re.compile(r"^ct:(pg|z|u|ub|s|only|menu)(?::(\d{1,9}))?(?::(\d{1,9}))?$")


# --------------------------------------------------------------------------- queries behind buttons


def remember_query(context: Context, query: str) -> str:
    """Buttons carry a short id; the query itself stays with the chat (persisted)."""
    kept: dict[str, str] = context.chat_data.setdefault("queries", {})  # type: ignore[union-attr]
    counter = int(context.chat_data.get("query_counter", 0)) + 1  # type: ignore[union-attr]
    context.chat_data["query_counter"] = counter  # type: ignore[index]
    kept[str(counter)] = query
    for stale in sorted(kept, key=int)[:-QUERIES_KEPT]:
        del kept[stale]
    return str(counter)


def recalled_query(context: Context, query_id: str | None) -> str | None:
    return (context.chat_data or {}).get("queries", {}).get(query_id or "")


# --------------------------------------------------------------------------- rendering


def _role(tr: Translator, liaison: Liaison) -> str:
    return tr("contacts.primary" if liaison.role is LiaisonRole.primary else "contacts.backup")


def room_lines(tr: Translator, duty: OnDuty, default_tz: str) -> list[str]:
    lines = []
    if duty.room_phone:
        lines.append(tr("contacts.room_phone", phone=escape(duty.room_phone)))
    if duty.officer and duty.until:
        lines.append(tr(
            "contacts.on_duty", officer=escape(duty.officer),
            phone=escape(duty.officer_phone or "—"),
            until=local_time(tr, duty.until, duty.timezone, default_tz),
            next=escape(duty.next_officer or "—"),
        ))
    else:
        lines.append(tr("contacts.no_roster", room=escape(duty.room_title)))
    return lines


def no_room_line(tr: Translator, unit: UnitDuty) -> str:
    """What an officer can still call when the unit has no duty room group."""
    if unit.duty_phone:
        return tr("contacts.duty_phone", phone=escape(unit.duty_phone))
    if unit.parent_name and unit.parent_phone:
        return tr("contacts.parent_phone", unit=escape(tr.name(unit.parent_name)),
                  phone=escape(unit.parent_phone))
    return tr("contacts.no_room")


def duty_line(tr: Translator, unit: UnitDuty | None, default_tz: str) -> str:
    """The unit's duty rooms on a card: every room, titled when there are several."""
    if unit is None or not unit.rooms:
        return no_room_line(tr, unit) if unit else tr("contacts.no_room")
    if len(unit.rooms) == 1:
        return "\n".join(room_lines(tr, unit.rooms[0], default_tz))
    return "\n".join(
        line for room in unit.rooms
        for line in [tr("contacts.room_title", room=escape(tr.name(room.room_title))),
                     *room_lines(tr, room, default_tz)])


def card(tr: Translator, liaison: Liaison, duty: UnitDuty | None, default_tz: str) -> str:
    branch = tr.name(liaison.branch.name) if liaison.branch else tr("contacts.any_branch")
    lines = [f"<b>{escape(tr.name(liaison.unit.name))} · {escape(branch)}</b>",
             tr("contacts.person", name=escape(liaison.name), role=_role(tr, liaison),
                title=escape(liaison.title or ""))]
    lines += [f"📞 {escape(str(phone))}" for phone in liaison.phones or []]
    if liaison.telegram_username:
        lines.append(f"✈️ @{escape(liaison.telegram_username)}")
    lines.append(duty_line(tr, duty, default_tz))
    return "\n".join(lines)


# Lookups read through the data-epoch caches (storage/cache.py), one per kind of answer.


async def find_liaisons(session: AsyncSession, svc: Services, actor: Actor, query: str, *,
                        offset: int = 0, limit: int = 10) -> LiaisonResults:
    return await search_liaisons_cached(session, svc.db.cache("liaison_search"), actor.epoch,
                                        query, offset=offset, limit=limit)


async def duties_now(session: AsyncSession, svc: Services, actor: Actor,
                     unit_ids: set[int]) -> dict[int, UnitDuty]:
    return await on_duty_cached(session, svc.db.cache("on_duty"), actor.epoch, svc.now(),
                                unit_ids=unit_ids, default_timezone=svc.settings.bot_timezone)


async def cards_of(session: AsyncSession, svc: Services, actor: Actor,
                   results: LiaisonResults) -> tuple[list[Liaison], dict[int, UnitDuty]]:
    """The liaisons behind search hits and who is on duty in their units."""
    liaisons = await directory.liaisons_cached(
        session, svc.db.cache("liaisons"), actor.epoch, [h.liaison_id for h in results.hits])
    return liaisons, await duties_now(session, svc, actor, {lia.unit_id for lia in liaisons})


@dataclass
class ContactPage:
    text: str
    liaison_ids: list[int]
    rows: list[list[tuple[str, str]]] = field(default_factory=list)  # inline buttons
    audit: list[dict[str, Any]] = field(default_factory=list)  # to record before showing
    about_units: bool = False  # says something of the units asked for, even with no card
    paging: list[tuple[str, str]] = field(default_factory=list)

    @property
    def markup(self) -> Any:
        rows = [self.paging, *self.rows] if self.paging else self.rows
        return keyboard(rows) if rows else None


def _labels(tr: Translator, vocabulary: Vocabulary, kind: str, ids: Iterable[int]) -> str:
    return tr.join(escape(tr.name(vocabulary.items[(kind, i)].label)) for i in sorted(ids)
                   if (kind, i) in vocabulary.items)


async def _elsewhere_rows(session: AsyncSession, context: Context, tr: Translator,
                          results: LiaisonResults, *, first_rows: bool) -> list[list[Any]]:
    """Buttons to the asked units' liaisons of other branches: one per branch for a
    single unit (`first_rows`: as the main choice), else one for all of them."""
    parsed = results.query
    count = results.other_branches
    if len(parsed.unit_ids) == 1 and not parsed.zone_ids:
        unit_id = next(iter(parsed.unit_ids))
        if not first_rows:
            return [[(tr("contacts.other_branches_button", count=count), f"ct:u:{unit_id}")]]
        branches = [b for b in await directory.branches_of_unit(session, unit_id)
                    if b.id not in parsed.branch_ids]
        rows = [[(tr.name(b.name), f"ct:ub:{unit_id}:{b.id}") for b in branches[i:i + 3]]
                for i in range(0, len(branches), 3)]
        return [*rows, [(tr("contacts.all_branches"), f"ct:ub:{unit_id}:0")]]
    # The query without its branches: the same units, every branch.
    units_only = " ".join(typed for kind, _, typed in parsed.recognised if kind != "branch")
    query_id = remember_query(context, " ".join([units_only, *parsed.terms]))
    return [[(tr("contacts.all_liaisons_button", count=count), f"ct:s:{query_id}")]]


async def contact_page(
    session: AsyncSession, context: Context, actor: Actor, query: str, offset: int,
    *, limit: int = PAGE_SIZE,
) -> ContactPage:
    """Cards for one page of results (or suggestions), with their audit entries.

    Counts are honest: with a unit and a branch asked for, only that branch's
    liaisons are counted and listed; the unit's other branches are offered as such.
    """
    svc = services(context)
    tr = actor.tr
    results = await find_liaisons(session, svc, actor, query, offset=offset, limit=limit)
    parsed = results.query
    vocabulary = await load_vocabulary(session, epoch=actor.epoch)
    if not results.hits and (parsed.unit_ids or parsed.zone_ids) and not parsed.terms:
        return await _units_without_hits(session, context, actor, vocabulary, query, results)
    if not results.hits:
        names = tr.join(escape(tr.name(s.label)) for s in results.suggestions[:5])
        text = tr("contacts.none", query=escape(query))
        if names:
            text += "\n" + tr("contacts.suggest", names=names)
        rows = [[(tr.name(s.label), f"ct:s:{remember_query(context, s.label)}")]
                for s in results.suggestions[:5]]
        return ContactPage(text, [], rows)
    liaisons, duties = await cards_of(session, svc, actor, results)
    default_tz = svc.settings.bot_timezone
    if parsed.branch_ids and (parsed.unit_ids or parsed.zone_ids):
        header = tr("contacts.header_branch", query=escape(query), first=offset + 1,
                    last=offset + len(liaisons), total=results.total,
                    branch=_labels(tr, vocabulary, "branch", parsed.branch_ids))
    else:
        header = tr("contacts.header", query=escape(query), first=offset + 1,
                    last=offset + len(liaisons), total=results.total)
    cards = [card(tr, lia, duties.get(lia.unit_id), default_tz) for lia in liaisons]
    views = [audit_row("contact.view", actor=actor.user, subject_type="liaison",
                       subject_id=lia.id, query=query[:MAX_QUERY], unit=lia.unit.code)
             for lia in liaisons]
    query_id = remember_query(context, query)
    paging = []
    if offset > 0:
        paging.append((tr("common.previous"), f"ct:pg:{query_id}:{max(0, offset - limit)}"))
    if results.has_more:
        paging.append((tr("common.next"), f"ct:pg:{query_id}:{offset + limit}"))
    rows: list[list[tuple[str, str]]] = []
    blocks = [header, *cards]
    if results.other_branches and not results.has_more:
        asked_units = set(parsed.unit_ids) or set(vocabulary.units_of_zones(parsed.zone_ids))
        blocks.append(tr("contacts.more_branches", count=results.other_branches,
                         units=_labels(tr, vocabulary, "unit", asked_units)))
        rows += await _elsewhere_rows(session, context, tr, results, first_rows=False)
    return ContactPage("\n\n".join(blocks), [lia.id for lia in liaisons], rows, views,
                       about_units=True, paging=paging)


async def _units_without_hits(
    session: AsyncSession, context: Context, actor: Actor, vocabulary: Vocabulary,
    query: str, results: LiaisonResults,
) -> ContactPage:
    """A unit (or zone) asked for has no liaison (of the branch asked): say so, show
    how to reach its duty room, and offer what it does have."""
    svc, tr, parsed = services(context), actor.tr, results.query
    unit_ids = set(parsed.unit_ids)
    if parsed.zone_ids:
        zone_units = vocabulary.units_of_zones(parsed.zone_ids)
        unit_ids = (unit_ids & zone_units) if unit_ids else set(zone_units)
    units = _labels(tr, vocabulary, "unit", unit_ids) if len(unit_ids) <= 3 else \
        _labels(tr, vocabulary, "zone", parsed.zone_ids)
    if parsed.branch_ids:
        text = tr("contacts.no_branch", query=escape(query), units=units,
                  branch=_labels(tr, vocabulary, "branch", parsed.branch_ids))
    else:
        text = tr("contacts.no_liaisons", query=escape(query), units=units)
    blocks = [text]
    rows: list[list[tuple[str, str]]] = []
    if results.other_branches:
        blocks.append(tr("contacts.other_branches", count=results.other_branches))
        rows = await _elsewhere_rows(session, context, tr, results, first_rows=True)
    if len(unit_ids) <= 3:
        duties = await duties_now(session, svc, actor, unit_ids)
        blocks += [f"<b>{escape(tr.name(duty.unit_name))}</b>\n"
                   + duty_line(tr, duty, svc.settings.bot_timezone)
                   for duty in duties.values()]
    return ContactPage("\n\n".join(blocks), [], rows, about_units=True)


def zone_rows(tr: Translator, zones: Iterable[Any]) -> list[list[tuple[str, str]]]:
    return [[(tr.name(z.short_name), f"ct:z:{z.id}")] for z in zones]


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
    except Refusal as refusal:
        await show(update, refusal.text)
        return
    await record_views(context, page.audit)
    await show(update, page.text, page.markup)


async def show(update: Update, text: str, markup: Any = None) -> None:
    """Answer a command with a new message, a button press by editing its message."""
    query = update.callback_query
    if query is None:
        await send_reply(update, text, markup)
        return
    await query.answer()
    await edit_query_message(update, text, markup)


@guarded(Role.officer)
async def contact_button(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    tr, svc = actor.tr, services(context)
    match = CALLBACK.match(query.data or "")
    if match is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return
    action, first, second = match.groups()
    if action in {"pg", "s", "only"}:
        text = recalled_query(context, first)
        offset = int(second or 0)
        if text is None or offset > 10_000:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return
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
        await query.answer(tr("errors.stale_button"), show_alert=True)
    elif action == "ub":
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
    try:
        async with svc.db.reading() as session:
            if not await may_show_details(session, update):
                raise Refusal(tr("contacts.group_not_room"))
            unit_ids, rooms = await oncall_targets(session, actor, query)
            duties = await duties_now(session, svc, actor, unit_ids)
    except Refusal as refusal:
        await send_reply(update, refusal.text)
        return
    await record_views(context, [audit_row(
        "oncall.view", actor=actor.user, subject_type="units",
        subject_id=",".join(map(str, sorted(unit_ids)))[:60])])
    shown = _only_rooms(duties, {room.id for room in rooms}) if rooms else duties.values()
    await send_reply(update, oncall_text(tr, shown, svc.settings.bot_timezone,
                                         compact_roomless=not query))


# --------------------------------------------------------------------------- plain text


def clause_line(tr: Translator, hit: ClauseHit) -> str:
    superseded = tr("agreements.superseded_mark") if hit.agreement_status.value == "superseded" \
        else ""
    mechanisms = tr.join(tr.name(m) for m in hit.mechanisms)
    return tr("agreements.hit", title=escape(hit.agreement_short_title),
              number=escape(hit.number), superseded=superseded,
              mechanisms=escape(mechanisms or "—"), snippet=escape(hit.snippet))


async def lookup(update: Update, context: Context, text: str) -> None:
    """A plain message as a question: the likeliest contacts and clauses together."""
    actor = await current_actor(update, context)
    tr, svc = actor.tr, services(context)
    if not actor.registered:
        await send_reply(update, tr(unregistered_key(actor)))
        return
    text = text.strip()
    if len(text) > MAX_QUERY:
        await send_reply(update, tr("errors.too_long", limit=MAX_QUERY))
        return
    async with svc.db.reading() as session:
        if not await may_show_details(session, update):
            return
        contacts = await contact_page(session, context, actor, text, 0,
                                      limit=PLAIN_TEXT_CONTACTS)
        clauses = await search_clauses(session, text, limit=PLAIN_TEXT_CLAUSES,
                                       include_superseded=False)
        results = await find_liaisons(session, svc, actor, text, limit=1)
    query_id = remember_query(context, text)
    asked_for_people = bool(results.query.unit_ids or results.query.branch_ids) or any(
        tier in results.tier_counts and results.tier_counts[tier]
        for tier in (MatchTier.EXACT, MatchTier.UNIT, MatchTier.NAME))
    clause_block = "\n\n".join([tr("agreements.header", query=escape(text),
                                   total=clauses.total)]
                               + [clause_line(tr, hit) for hit in clauses.hits]) \
        if clauses.hits else ""
    contact_block = contacts.text if contacts.liaison_ids or contacts.about_units else ""
    blocks = [contact_block, clause_block] if asked_for_people or not clause_block else \
        [clause_block, contact_block]
    body = "\n\n".join(b for b in blocks if b) or contacts.text
    rows = [*(contacts.rows if contact_block else []),
            [(tr("lookup.only_contacts"), f"ct:only:{query_id}"),
             (tr("lookup.only_clauses"), f"ag:only:{query_id}")],
            [(tr("lookup.other_unit"), "ct:menu")]]
    rows += [[(f"📄 {hit.agreement_short_title} {hit.number}", f"ag:c:{hit.clause_id}")]
             for hit in clauses.hits]
    await record_views(context, contacts.audit)
    await send_reply(update, body, keyboard(rows))


async def plain_text(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is None or not message.text:
        return
    await lookup(update, context, message.text)


async def mentioned(update: Update, context: Context) -> None:
    """In a duty room, `@bot 四川 刑侦` is a lookup; other group chatter is left alone."""
    message = update.effective_message
    if message is None or not message.text:
        return
    mention = re.compile(rf"@{re.escape(context.bot.username or '')}\b", re.IGNORECASE)
    if not mention.search(message.text):
        return
    text = mention.sub("", message.text).strip()
    if text:
        await lookup(update, context, text)


# --------------------------------------------------------------------------- inline mode


async def inline(update: Update, context: Context) -> None:
    inline_query = update.inline_query
    assert inline_query is not None
    actor = await current_actor(update, context)
    query = inline_query.query.strip()[:MAX_QUERY]
    if not actor.registered or not query:
        await inline_query.answer([], cache_time=0, is_personal=True)
        return
    tr, svc = actor.tr, services(context)
    async with svc.db.reading() as session:
        found = await find_liaisons(session, svc, actor, query, limit=INLINE_RESULTS // 2)
        liaisons, duties = await cards_of(session, svc, actor, found)
        clauses = await search_clauses(session, query, limit=INLINE_RESULTS // 2,
                                       include_superseded=False)
    await record_views(context, [
        audit_row("contact.view", actor=actor.user, subject_type="liaison", subject_id=lia.id,
                  query=query, via="inline") for lia in liaisons])
    results: list[InlineQueryResultArticle] = []
    for lia in liaisons:
        branch = tr.name(lia.branch.name) if lia.branch else ""
        results.append(InlineQueryResultArticle(
            id=f"l{lia.id}", title=f"{lia.name} · {tr.name(lia.unit.short_name)} {branch}".strip(),
            description=" / ".join(str(p) for p in lia.phones or []) or _role(tr, lia),
            input_message_content=InputTextMessageContent(
                card(tr, lia, duties.get(lia.unit_id), svc.settings.bot_timezone))))
    for hit in clauses.hits:
        results.append(InlineQueryResultArticle(
            id=f"c{hit.clause_id}", title=f"{hit.agreement_short_title} {hit.number}",
            description=hit.snippet,
            input_message_content=InputTextMessageContent(clause_line(tr, hit))))
    await inline_query.answer(results, cache_time=INLINE_CACHE_SECONDS, is_personal=True)


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

