"""What contacts, plain-text lookups and /agreement share: queries kept behind buttons,
contact cards and pages, clause lines, and answering a command or a button press.

Contact details are sensitive: every card shown is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.enums import LiaisonRole
from core.vocabulary import Vocabulary
from handlers.common import Context
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import keyboard
from handlers.common import reply as send_reply
from i18n import Translator
from i18n.formats import local_time
from storage import directory
from storage.access import audit_row
from storage.duty import OnDuty
from storage.duty import UnitDuty
from storage.duty import on_duty_cached
from storage.models import Liaison
from storage.search.clauses import ClauseHit
from storage.search.liaisons import LiaisonResults
from storage.search.liaisons import search_liaisons_cached
from storage.search.vocabulary import load_vocabulary
from views.buttons import Button
from views.buttons import Key
from views.buttons import Markup
from views.contacts import copy_phone_rows

PAGE_SIZE = 5

MAX_QUERY = 100
QUERIES_KEPT = 30


# --------------------------------------------------------------------------- queries behind buttons


def remember_query(context: Context, query: str) -> str:
    """Buttons carry a short id; the query itself stays with the chat (persisted)."""
    chat_data = context.chat_data
    assert chat_data is not None  # every update the lookups answer comes from a chat
    kept: dict[str, str] = chat_data.setdefault("queries", {})
    counter = int(chat_data.get("query_counter", 0)) + 1
    chat_data["query_counter"] = counter
    kept[str(counter)] = query
    for stale in sorted(kept, key=int)[:-QUERIES_KEPT]:
        del kept[stale]
    return str(counter)


def recalled_query(context: Context, query_id: str | None) -> str | None:
    return (context.chat_data or {}).get("queries", {}).get(query_id or "")


def paging_row(context: Context, tr: Translator, prefix: str, query: str, offset: int,
               step: int, *, more: bool) -> list[Key]:
    """The ◀ and ▶ of a page of search results (contacts, clauses): each button carries
    `<prefix>:pg:<the remembered query>:<the offset of its page>`."""
    query_id = remember_query(context, query)
    paging: list[Key] = []
    if offset > 0:
        paging.append((tr("common.previous"), f"{prefix}:pg:{query_id}:{max(0, offset - step)}"))
    if more:
        paging.append((tr("common.next"), f"{prefix}:pg:{query_id}:{offset + step}"))
    return paging


# --------------------------------------------------------------------------- rendering


def role_label(tr: Translator, liaison: Liaison) -> str:
    """Primary or backup liaison, in the reader's language."""
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
        lines.append(tr("contacts.no_roster", room=escape(tr.name(duty.room_title))))
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
             tr("contacts.person", name=escape(liaison.name), role=role_label(tr, liaison),
                title=escape(liaison.title or ""))]
    lines += [f"📞 {escape(str(phone))}" for phone in liaison.phones or []]
    if liaison.telegram_username:
        lines.append(f"✈️ @{escape(liaison.telegram_username)}")
    lines.append(duty_line(tr, duty, default_tz))
    return "\n".join(lines)


def duty_numbers(tr: Translator, duties: Iterable[UnitDuty | None], *,
                 parents: bool = True) -> list[tuple[str, str]]:
    """The numbers the duty lines show, whose first, in the order shown: each room's
    officer on duty and the room's phone; a unit without a room, its duty phone (or,
    with `parents`, its parent's when it has none)."""
    numbers: list[tuple[str | None, str | None]] = []
    for duty in duties:
        if duty is None:
            continue
        for room in duty.rooms:
            if room.officer and room.until:
                numbers.append((room.officer, room.officer_phone))
            numbers.append((tr.name(room.room_title), room.room_phone))
        if duty.rooms:
            continue
        if duty.duty_phone:
            numbers.append((tr.name(duty.unit_name), duty.duty_phone))
        elif parents and duty.parent_name:
            numbers.append((tr.name(duty.parent_name), duty.parent_phone))
    return [(whose, number) for whose, number in numbers if whose and number]


def card_copies(tr: Translator, liaisons: Iterable[Liaison],
                duties: dict[int, UnitDuty]) -> list[list[Button]]:
    """Copy buttons for the numbers on cards: the liaisons' own first, then their units'
    duty lines (views.contacts)."""
    liaisons = list(liaisons)
    units = list(dict.fromkeys(lia.unit_id for lia in liaisons))
    return copy_phone_rows(tr, [
        *((lia.name, str(phone)) for lia in liaisons for phone in lia.phones or []),
        *duty_numbers(tr, (duties.get(unit) for unit in units))])


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


def card_views(actor: Actor, liaisons: Iterable[Liaison], query: str,
               **detail: Any) -> list[dict[str, Any]]:
    """The audit rows of the cards about to be shown (the lookup quotas count them)."""
    return [audit_row("contact.view", actor=actor.user, subject_type="liaison",
                      subject_id=lia.id, query=query[:MAX_QUERY], unit=lia.unit.code,
                      unit_id=lia.unit_id, **detail) for lia in liaisons]


def duty_views(actor: Actor, unit_ids: Iterable[int], query: str, *,
               action: str = "oncall.view") -> list[dict[str, Any]]:
    """The audit rows of units' duty lines about to be shown (who is on duty, with their
    phone): counted by the lookup quotas, except `oncall.overview` (the reader's own
    zones, /oncall without arguments)."""
    return [audit_row(action, actor=actor.user, subject_type="unit", subject_id=unit_id,
                      query=query[:MAX_QUERY], unit_id=unit_id) for unit_id in sorted(unit_ids)]


@dataclass
class ContactPage:
    text: str
    liaison_ids: list[int]
    rows: list[list[Key]] = field(default_factory=list)  # inline buttons
    audit: list[dict[str, Any]] = field(default_factory=list)  # to record before showing
    about_units: bool = False  # says something of the units asked for, even with no card
    paging: list[Key] = field(default_factory=list)
    copies: list[list[Button]] = field(default_factory=list)  # the numbers shown

    @property
    def markup(self) -> Markup | None:
        rows = [*self.copies, *([self.paging] if self.paging else []), *self.rows]
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
    views = card_views(actor, liaisons, query, offset=offset)
    paging = paging_row(context, tr, "ct", query, offset, limit, more=results.has_more)
    rows: list[list[Key]] = []
    blocks = [header, *cards]
    if results.other_branches and not results.has_more:
        asked_units = set(parsed.unit_ids) or set(vocabulary.units_of_zones(parsed.zone_ids))
        blocks.append(tr("contacts.more_branches", count=results.other_branches,
                         units=_labels(tr, vocabulary, "unit", asked_units)))
        rows += await _elsewhere_rows(session, context, tr, results, first_rows=False)
    return ContactPage("\n\n".join(blocks), [lia.id for lia in liaisons], rows, views,
                       about_units=True, paging=paging,
                       copies=card_copies(tr, liaisons, duties))


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
    rows: list[list[Key]] = []
    copies: list[list[Button]] = []
    if results.other_branches:
        blocks.append(tr("contacts.other_branches", count=results.other_branches))
        rows = await _elsewhere_rows(session, context, tr, results, first_rows=True)
    views: list[dict[str, Any]] = []
    if len(unit_ids) <= 3:
        duties = await duties_now(session, svc, actor, unit_ids)
        blocks += [f"<b>{escape(tr.name(duty.unit_name))}</b>\n"
                   + duty_line(tr, duty, svc.settings.bot_timezone)
                   for duty in duties.values()]
        views = duty_views(actor, duties.keys(), query)
        copies = copy_phone_rows(tr, duty_numbers(tr, duties.values()))
    return ContactPage("\n\n".join(blocks), [], rows, views, about_units=True, copies=copies)


def zone_rows(tr: Translator, zones: Iterable[Any]) -> list[list[Key]]:
    return [[(tr.name(z.short_name), f"ct:z:{z.id}")] for z in zones]


async def show(update: Update, text: str, markup: Markup | None = None) -> None:
    """Answer a command with a new message, a button press by editing its message."""
    query = update.callback_query
    if query is None:
        await send_reply(update, text, markup)
        return
    await query.answer()
    await edit_query_message(update, text, markup)


def clause_line(tr: Translator, hit: ClauseHit) -> str:
    superseded = tr("agreements.superseded_mark") if hit.agreement_status.value == "superseded" \
        else ""
    mechanisms = tr.join(tr.name(m) for m in hit.mechanisms)
    return tr("agreements.hit", title=escape(hit.agreement_short_title),
              number=escape(hit.number), superseded=superseded,
              mechanisms=escape(mechanisms or "—"), snippet=escape(hit.snippet))
