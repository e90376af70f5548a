"""Plain-text lookups in private chats (and mentions in duty rooms), and inline mode:
the likeliest contacts and agreement clauses for what was typed.
"""

from __future__ import annotations

import re

from telegram import InlineKeyboardMarkup
from telegram import InlineQueryResultArticle
from telegram import InputTextMessageContent
from telegram import Update

from bot.services import services
from handlers.common import Context
from handlers.common import current_actor
from handlers.common import escape
from handlers.common import keyboard
from handlers.common import may_show_details
from handlers.common import reply as send_reply
from handlers.common import unregistered_key
from handlers.contact_common import MAX_QUERY
from handlers.contact_common import card
from handlers.contact_common import card_copies
from handlers.contact_common import card_views
from handlers.contact_common import cards_of
from handlers.contact_common import clause_line
from handlers.contact_common import contact_page
from handlers.contact_common import find_liaisons
from handlers.contact_common import remember_query
from handlers.contact_common import role_label
from handlers.lookup_quota import admit
from handlers.lookup_quota import cleared
from handlers.lookup_quota import refusal
from handlers.lookup_quota import settle
from storage.search.clauses import search_clauses
from storage.search.liaisons import MatchTier

PLAIN_TEXT_CONTACTS = 3
PLAIN_TEXT_CLAUSES = 3
INLINE_RESULTS = 8
INLINE_CACHE_SECONDS = 10


# --------------------------------------------------------------------------- plain text


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
        admission = await admit(session, context, actor, contacts.audit)
    if not await cleared(update, context, actor, admission):
        return
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
    rows = [*([*contacts.copies, *contacts.rows] if contact_block else []),
            [(tr("lookup.only_contacts"), f"ct:only:{query_id}"),
             (tr("lookup.only_clauses"), f"ag:only:{query_id}")],
            [(tr("lookup.other_unit"), "ct:menu")]]
    rows += [[(f"📄 {hit.agreement_short_title} {hit.number}", f"ag:c:{hit.clause_id}")]
             for hit in clauses.hits]
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
        admission = await admit(session, context, actor,
                                card_views(actor, liaisons, query, via="inline"))
    await settle(context, actor, admission)
    if not admission.allowed:
        said = refusal(context, actor, admission, short=True)
        await inline_query.answer([InlineQueryResultArticle(
            id="quota", title=tr("quota.inline_title"), description=said,
            input_message_content=InputTextMessageContent(said))],
            cache_time=0, is_personal=True)
        return
    results: list[InlineQueryResultArticle] = []
    for lia in liaisons:
        branch = tr.name(lia.branch.name) if lia.branch else ""
        copies = card_copies(tr, [lia], duties)
        results.append(InlineQueryResultArticle(
            id=f"l{lia.id}", title=f"{lia.name} · {tr.name(lia.unit.short_name)} {branch}".strip(),
            description=" / ".join(str(p) for p in lia.phones or []) or role_label(tr, lia),
            input_message_content=InputTextMessageContent(
                card(tr, lia, duties.get(lia.unit_id), svc.settings.bot_timezone)),
            # The one place PTB must hold the keyboard as its object (inside a result).
            reply_markup=InlineKeyboardMarkup.de_json(keyboard(copies)) if copies else None))
    for hit in clauses.hits:
        results.append(InlineQueryResultArticle(
            id=f"c{hit.clause_id}", title=f"{hit.agreement_short_title} {hit.number}",
            description=hit.snippet,
            input_message_content=InputTextMessageContent(clause_line(tr, hit))))
    await inline_query.answer(results, cache_time=INLINE_CACHE_SECONDS, is_personal=True)
