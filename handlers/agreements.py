"""/agreement: search the clauses of agreements in force, read a clause with its
neighbours, browse agreements and mechanisms."""

from __future__ import annotations

import re

from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.services import Actor
from bot.services import services
from core.enums import AgreementStatus
from core.enums import Role
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import may_show_details
from handlers.common import pressed
from handlers.contact_common import MAX_QUERY
from handlers.contact_common import clause_line
from handlers.contact_common import paging_row
from handlers.contact_common import recalled_query
from handlers.contact_common import show
from i18n import Translator
from storage import directory
from storage.models import Agreement
from storage.models import Clause
from storage.search.clauses import search_clauses

COMMANDS = [CommandInfo("agreement", Role.officer, Where.anywhere, "agreements.command")]
PAGE_SIZE = 5
CALLBACK = re.compile(r"^ag:(c|m|pg|only|list)(?::(\d{1,9}))?(?::(\d{1,9}))?$")


def status_label(tr: Translator, agreement: Agreement) -> str:
    return tr(f"agreements.status.{agreement.status.value}")


def agreement_line(tr: Translator, agreement: Agreement) -> str:
    parties = tr.join(tr.name(p.unit.short_name) for p in agreement.parties) or "—"
    signed = agreement.signed_on.isoformat() if agreement.signed_on else "—"
    return tr("agreements.item", title=escape(agreement.title),
              zone=escape(tr.name(agreement.zone.short_name) if agreement.zone else "—"),
              parties=escape(parties), signed=signed, status=status_label(tr, agreement))


def clause_text(tr: Translator, clause: Clause) -> str:
    agreement = clause.agreement
    mechanisms = tr.join(tr.name(m.name) for m in clause.mechanisms) or "—"
    superseded = tr("agreements.superseded_mark") \
        if agreement.status is AgreementStatus.superseded else ""
    heading = f"<b>{escape(clause.heading)}</b>\n" if clause.heading else ""
    return tr("agreements.clause", title=escape(agreement.short_title),
              number=escape(clause.number), superseded=superseded,
              mechanisms=escape(mechanisms), heading=heading, text=escape(clause.text))


async def search_page(context: Context, actor: Actor, query: str,
                      offset: int) -> tuple[str, object]:
    tr, svc = actor.tr, services(context)
    async with svc.db.session() as session:
        results = await search_clauses(session, query, limit=PAGE_SIZE, offset=offset)
    if not results.hits:
        return tr("agreements.none", query=escape(query)), None
    header = tr("agreements.header", query=escape(query), total=results.total)
    rows = [[(f"📄 {hit.agreement_short_title} {hit.number}", f"ag:c:{hit.clause_id}")]
            for hit in results.hits]
    paging = paging_row(context, tr, "ag", query, offset, PAGE_SIZE, more=results.has_more)
    if paging:
        rows.append(paging)
    text = "\n\n".join([header, *(clause_line(tr, hit) for hit in results.hits)])
    return text, keyboard(rows)


async def overview(context: Context, actor: Actor) -> tuple[str, object]:
    tr, svc = actor.tr, services(context)
    async with svc.db.session() as session:
        agreements = await directory.agreements(session)
        mechanisms = await directory.mechanisms(session)
    if not agreements:
        return tr("agreements.empty"), None
    text = "\n\n".join([tr("agreements.list_header"),
                        *(agreement_line(tr, a) for a in agreements),
                        tr("agreements.choose_mechanism")])
    rows = [[(tr.name(m.name), f"ag:m:{m.id}") for m in mechanisms[i:i + 2]]
            for i in range(0, len(mechanisms), 2)]
    return text, keyboard(rows)


async def shown_here(update: Update, context: Context) -> bool:
    """Clause texts go to private chats and registered duty rooms only."""
    async with services(context).db.session() as session:
        return await may_show_details(session, update)


@guarded(Role.officer)
async def agreement(update: Update, context: Context, actor: Actor) -> None:
    query = " ".join(context.args or []).strip()
    if not await shown_here(update, context):
        await show(update, actor.tr("agreements.group_not_room"))
        return
    if len(query) > MAX_QUERY:
        await show(update, actor.tr("errors.too_long", limit=MAX_QUERY))
        return
    text, markup = await (search_page(context, actor, query, 0) if query
                          else overview(context, actor))
    await show(update, text, markup)


@guarded(Role.officer)
async def agreement_button(update: Update, context: Context, actor: Actor) -> None:
    tr, svc = actor.tr, services(context)
    action, first, second = pressed(update, tr, CALLBACK).groups()
    if not await shown_here(update, context):
        raise Refusal(tr("agreements.group_not_room"))
    if action in {"pg", "only"}:
        text = recalled_query(context, first)
        if text is None:
            raise Refusal(tr("errors.stale_button"))
        body, markup = await search_page(context, actor, text, int(second or 0))
    elif action == "list":
        body, markup = await overview(context, actor)
    elif action == "c" and first:
        async with svc.db.session() as session:
            clause, previous, following = await directory.clause_with_neighbours(
                session, int(first))
        if clause is None:
            raise Refusal(tr("errors.stale_button"))
        nav = []
        if previous:
            nav.append((tr("agreements.previous_clause"), f"ag:c:{previous}"))
        if following:
            nav.append((tr("agreements.next_clause"), f"ag:c:{following}"))
        body = clause_text(tr, clause)
        markup = keyboard([nav, [(tr("agreements.back_to_list"), "ag:list")]])
    elif action == "m" and first:
        async with svc.db.session() as session:
            clauses = await directory.clauses_of_mechanism(session, int(first))
        if not clauses:
            raise Refusal(tr("errors.stale_button"))
        body = "\n\n".join(
            [tr("agreements.mechanism_header",
                mechanism=escape(tr.name(next(m.name for m in clauses[0].mechanisms
                                              if m.id == int(first)))),
                total=len(clauses))]
            + [tr("agreements.mechanism_item", title=escape(c.agreement.short_title),
                  number=escape(c.number),
                  superseded=tr("agreements.superseded_mark")
                  if c.agreement.status is AgreementStatus.superseded else "",
                  heading=escape(c.heading or c.text[:30])) for c in clauses])
        markup = keyboard([[(f"📄 {c.agreement.short_title} {c.number}", f"ag:c:{c.id}")]
                           for c in clauses[:10]]
                          + [[(tr("agreements.back_to_list"), "ag:list")]])
    else:
        raise Refusal(tr("errors.stale_button"))
    await show(update, body, markup)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("agreement", agreement))
    application.add_handler(CallbackQueryHandler(agreement_button, pattern=r"^ag:"))
