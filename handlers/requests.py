"""Assistance requests in chat: /request (a number to view it, else the guided flow of
request_new.py and request_steps.py), /requests, /export requests, /stats; register()
wires every request handler: the flow, the buttons on a request and their prompts
(request_act.py), the lists and views here.

Each handler decides inside one unit of work and talks to Telegram only after it
commits. Messages to anyone but the person acting (the duty room's card, the
requester's notices) are outbox rows written by services/requests.py in that same
unit of work. The guided flow and the reason/unit prompts after a button are
persistent conversations: a restart of the bot in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from datetime import timedelta
from typing import Any

from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import MessageHandler
from telegram.ext import filters

from bot import reports
from bot.commands import CommandInfo
from bot.commands import Where
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core import requests as rules
from core.enums import Role
from core.periods import Period
from core.periods import PeriodProblem
from core.requests import Filters
from core.requests import Scope
from handlers import flow
from handlers.common import Context
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import handled
from handlers.common import keyboard
from handlers.common import list_keyboard
from handlers.common import may_show_details
from handlers.common import page_count
from handlers.common import reply
from handlers.flow import TYPED
from handlers.flow import side_conversation
from handlers.request_act import NOTE
from handlers.request_act import UNIT
from handlers.request_act import button_pressed
from handlers.request_act import drop_action
from handlers.request_act import note_typed
from handlers.request_act import unit_typed
from handlers.request_common import ACT
from handlers.request_common import DB_ID
from handlers.request_common import LIST
from handlers.request_common import NEW
from handlers.request_common import TOKEN
from handlers.request_common import VIEW
from handlers.request_new import ATTACH
from handlers.request_new import CONFIRM
from handlers.request_new import DEADLINE
from handlers.request_new import DETAILS
from handlers.request_new import MECHANISM
from handlers.request_new import NEW_REQUEST
from handlers.request_new import SUBJECT
from handlers.request_new import TARGET
from handlers.request_new import URGENCY
from handlers.request_new import start_new
from handlers.request_new import target_pressed
from handlers.request_new import target_typed
from handlers.request_steps import attachment_handler
from handlers.request_steps import attachments_done
from handlers.request_steps import confirm_pressed
from handlers.request_steps import deadline_given
from handlers.request_steps import details_given
from handlers.request_steps import mechanism_chosen
from handlers.request_steps import subject_typed
from handlers.request_steps import urgency_chosen
from i18n import Translator
from storage import requests as store
from storage.access import audit
from storage.access import user_by_telegram_id
from storage.units import find_units
from views import requests as render
from views.buttons import Markup
from views.request_reports import export_table

COMMANDS = [
    CommandInfo("request", Role.officer, Where.anywhere, "requests.command"),
    CommandInfo("requests", Role.officer, Where.anywhere, "requests.list_command"),
    CommandInfo("export", Role.officer, Where.private, "requests.export_command"),
    CommandInfo("stats", Role.coordinator, Where.private, "requests.stats_command"),
]

LISTING = "rq_list"  # the filters of the /requests list being paged
DEFAULT_PERIOD = timedelta(days=30)
EXPORT_WORDS = ("requests", "request", "请求", "請求", "协作请求", "協作請求")
# /export is shared by name with other features' exports: only ours (or a bare /export,
# which gets the usage) reaches this module.
EXPORT_FILTER = filters.Regex(
    r"^/export(@\w+)?(\s*$|\s+(" + "|".join(EXPORT_WORDS) + r")(\s|$))"
)


# --------------------------------------------------------------------------- /request


@guarded(Role.officer)
async def request_command(update: Update, context: Context, actor: Actor) -> int:
    svc = services(context)
    text = " ".join(context.args or []).strip()
    number = rules.parse_number(text) if text else None
    if number is None and context.args:
        number = rules.parse_number(context.args[0])
    if number is None and len(context.args or []) == 1 and (
            sequence := rules.parse_sequence(text)) is not None:
        # The short number a /requests button shows: the latest request with it.
        async with svc.db.session() as session:
            number = await store.number_of_sequence(session, sequence) or rules.format_number(
                svc.now().astimezone(flow.reader_zone(svc, actor)).year, sequence)
    if number is not None:
        await _show(update, context, actor, number=number)
        return await handled(flow.END)
    return await start_new(update, context, actor)


# =========================================================================== reading


async def _shown_here(svc: Services, update: Update, tr: Translator) -> bool:
    """Request contents never go to a group that is not a registered duty room."""
    async with svc.db.session() as session:
        allowed = await may_show_details(session, update)
    if not allowed:
        await reply(update, tr("requests.view.group_not_room"))
    return allowed


async def _show(update: Update, context: Context, actor: Actor, *, number: str | None = None,
                request_id: int | None = None) -> None:
    """One request with its history, and the buttons this reader may press."""
    svc, tr, tz = services(context), actor.tr, flow.reader_zone(services(context), actor)
    chat = update.effective_chat
    if not await _shown_here(svc, update, tr):
        return
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        request = await store.load_request(session, number=number, request_id=request_id)
        allowed = request is not None and rules.may_view(
            user.role, user.unit_id, from_unit_id=request.from_unit_id,
            to_unit_id=request.to_unit_id)
        await audit(session, "request.view" if allowed else "request.view_refused", actor=user,
                    chat_id=chat.id if chat else None, subject_type="request",
                    subject_id=number or request_id)
    label = number or (request.number if request else str(request_id))
    if request is None:
        await reply(update, tr("requests.view.not_found", number=escape(label)))
        return
    if not allowed:
        await reply(update, tr("requests.view.not_allowed", number=escape(label)))
        return
    side_from = user.unit_id == request.from_unit_id or rules.is_coordinator(user.role)
    actions = rules.available_actions(
        request.status, user.role, user.unit_id, from_unit_id=request.from_unit_id,
        to_unit_id=request.to_unit_id, include_cancel=side_from)
    markup = keyboard(render.action_rows(tr, request, actions)) if actions else None
    text = render.card(tr, request, tz) + "\n\n" + render.history(tr, request, tz)
    await reply(update, text, markup)


@guarded(Role.officer)
async def view_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    match = re.fullmatch(rf"{VIEW}:{DB_ID}", query.data or "")
    if match is None:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    await query.answer()
    await _show(update, context, actor, request_id=int(match.group(1)))


async def _resolve_filters(
    update: Update, svc: Services, actor: Actor, words: list[str], *, default_open: bool
) -> tuple[Filters, list[int] | None, list[str]] | None:
    """The filters the words name; None, once the user is told why, for a period that
    names none (a month or day that does not exist, out of range)."""
    tr = actor.tr
    try:
        filters_ = rules.parse_filters(words, svc.now(), flow.reader_zone(svc, actor),
                                       default_open=default_open)
    except PeriodProblem as problem:
        await reply(update, render.period_problem(tr, problem))
        return None
    notes: list[str] = []
    unit_ids: list[int] | None = None
    if filters_.unit_query:
        async with svc.db.session() as session:
            units = await find_units(session, filters_.unit_query, partial=True)
        if units:
            unit_ids = [u.id for u in units]
        else:
            notes.append(tr("requests.list.unknown_unit", query=escape(filters_.unit_query)))
    return filters_, unit_ids, notes


async def _list_page(svc: Services, actor: Actor, listing: dict[str, Any],
                     page: int) -> tuple[str, Markup | None]:
    tr, tz = actor.tr, flow.reader_zone(svc, actor)
    filters_ = Filters.from_json(listing["filters"])
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        found, total = await store.list_requests(session, filters_, viewer=user,
                                                 unit_ids=listing.get("unit_ids"), page=page)
    pages = page_count(total, store.PAGE_SIZE)
    lines = [*listing.get("notes", [])]
    scope = filters_.scope if filters_.scope is not Scope.mine or not rules.is_coordinator(
        actor.role) else Scope.all
    lines.append(tr("requests.list.title", scope=tr(f"requests.list.scope.{scope.value}"),
                    total=total, page=min(page + 1, pages), pages=pages))
    if not found:
        lines.append(tr("requests.list.empty"))
    lines += [render.list_line(tr, r, tz) for r in found]
    lines += ["", tr("requests.list.hint")]
    view = [(r.number.rsplit("-", 1)[1], f"{VIEW}:{r.id}") for r in found]
    return "\n".join(lines), list_keyboard(
        view, page, pages, previous=tr("requests.button.previous"),
        following=tr("requests.button.following"), page_data=lambda n: f"{LIST}:{n}")


@guarded(Role.officer)
async def list_command(update: Update, context: Context, actor: Actor) -> None:
    svc = services(context)
    if not await _shown_here(svc, update, actor.tr):
        return
    resolved = await _resolve_filters(update, svc, actor, list(context.args or []),
                                      default_open=True)
    if resolved is None:
        return
    filters_, unit_ids, notes = resolved
    listing = {"filters": filters_.to_json(), "unit_ids": unit_ids, "notes": notes}
    assert context.user_data is not None
    context.user_data[LISTING] = listing
    text, markup = await _list_page(svc, actor, listing, 0)
    await reply(update, text, markup)


@guarded(Role.officer)
async def list_paged(update: Update, context: Context, actor: Actor) -> None:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    listing = (context.user_data or {}).get(LISTING)
    match = re.fullmatch(rf"{LIST}:(\d{{1,5}})", query.data or "")
    if not listing or match is None:
        await query.answer(tr("requests.list.expired"), show_alert=True)
        return
    await query.answer()
    text, markup = await _list_page(svc, actor, listing, int(match.group(1)))
    await edit_query_message(update, text, markup, courtesy=True)


# =========================================================================== export, stats


def _period_or_default(filters_: Filters, now: datetime) -> Period:
    return filters_.period or Period(now - DEFAULT_PERIOD, now)


@guarded(Role.officer, Where.private)
async def export_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, tz = services(context), actor.tr, flow.reader_zone(services(context), actor)
    args = list(context.args or [])
    if not args or rules.fold(args[0]) not in EXPORT_WORDS:
        await reply(update, tr("requests.export.usage"))
        return
    resolved = await _resolve_filters(update, svc, actor, args[1:], default_open=False)
    if resolved is None:
        return
    filters_, unit_ids, notes = resolved
    now = svc.now()
    filters_.period = _period_or_default(filters_, now)
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        found = await store.export_requests(session, filters_, viewer=user, unit_ids=unit_ids)
        await audit(session, "request.export", actor=user, subject_type="request",
                    count=len(found), filters=filters_.to_json(), unit_ids=unit_ids)
    if notes:
        await reply(update, "\n".join(notes))
    if not found:
        await reply(update, tr("requests.export.empty"))
        return
    header, rows = export_table(tr, found, tz, now)
    csv_bytes = await asyncio.to_thread(reports.to_csv, header, rows)
    xlsx_bytes = await asyncio.to_thread(reports.to_xlsx, header, rows,
                                         tr("requests.export.sheet"))
    start = filters_.period.start.astimezone(tz)
    end = (filters_.period.end - timedelta(seconds=1)).astimezone(tz)
    stem = f"requests-{start:%Y%m%d}-{end:%Y%m%d}"
    caption = tr("requests.export.caption", start=f"{start:%Y-%m-%d}", end=f"{end:%Y-%m-%d}",
                 count=len(found))
    message = update.effective_message
    assert message is not None
    await message.reply_document(document=csv_bytes, filename=f"{stem}.csv", caption=caption)
    await message.reply_document(document=xlsx_bytes, filename=f"{stem}.xlsx", caption=caption)


@guarded(Role.coordinator, Where.private)
async def stats_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, tz = services(context), actor.tr, flow.reader_zone(services(context), actor)
    resolved = await _resolve_filters(update, svc, actor, list(context.args or []),
                                      default_open=False)
    if resolved is None:
        return
    filters_, unit_ids, _notes = resolved
    if filters_.unit_query and unit_ids is None:
        await reply(update, tr("requests.stats.bad_period", text=escape(filters_.unit_query)))
        return
    now = svc.now()
    period = _period_or_default(filters_, now)
    filters_.scope = Scope.all
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        rows = await store.stats_rows(session, period, viewer=user, filters=filters_,
                                      unit_ids=unit_ids)
        await audit(session, "request.stats", actor=user, subject_type="request",
                    count=len(rows), start=period.start.isoformat(), end=period.end.isoformat())
    stats = rules.compute_stats(rows, period, now)
    text = render.stats_text(tr, stats, tz)
    png = await asyncio.to_thread(reports.stats_chart, tr, stats, tz)
    message = update.effective_message
    assert message is not None
    await message.reply_photo(photo=png, caption=text.split("\n", 1)[0])
    await reply(update, text)


# =========================================================================== wiring


def register(application: Application) -> None:
    files = filters.PHOTO | filters.Document.ALL
    on, answers = NEW_REQUEST.on, NEW_REQUEST.answers
    new_flow = NEW_REQUEST.conversation(
        entry_points=[CommandHandler("request", request_command)],
        states={
            TARGET: answers(TARGET, target_typed, target_pressed, rf"^{NEW}:(t:\d+|next)$"),
            MECHANISM: answers(MECHANISM, mechanism_chosen, mechanism_chosen,
                               rf"^{NEW}:m:"),
            URGENCY: answers(URGENCY, urgency_chosen, urgency_chosen, rf"^{NEW}:u:"),
            SUBJECT: answers(SUBJECT, subject_typed),
            DETAILS: answers(DETAILS, details_given, details_given, rf"^{NEW}:skip$"),
            ATTACH: [MessageHandler(files | TYPED, attachment_handler(ATTACH)),
                     CallbackQueryHandler(on(attachments_done), pattern=rf"^{NEW}:done$")],
            DEADLINE: answers(DEADLINE, deadline_given, deadline_given, rf"^{NEW}:nodl$"),
            CONFIRM: [MessageHandler(files, attachment_handler(CONFIRM)),
                      MessageHandler(TYPED, NEW_REQUEST.typed_at_confirm),
                      CallbackQueryHandler(on(confirm_pressed),
                                           pattern=rf"^{NEW}:(submit|edit:\w+)(:{TOKEN})?$")],
        },
    )
    act_flow = side_conversation(
        "requests_act",
        entry_points=[CallbackQueryHandler(button_pressed,
                                           pattern=rf"^{rules.CALLBACK_PREFIX}")],
        states={
            NOTE: [MessageHandler(TYPED, note_typed)],
            UNIT: [MessageHandler(TYPED, unit_typed),
                   CallbackQueryHandler(unit_typed, pattern=rf"^{ACT}:u:")],
        },
        fallbacks=[CommandHandler("cancel", drop_action),
                   CallbackQueryHandler(drop_action, pattern=rf"^{ACT}:quit(:{TOKEN})?$")],
    )
    # Group -1: a typed answer inside these flows must not also reach plain-text features.
    application.add_handler(new_flow, group=-1)
    application.add_handler(act_flow, group=-1)
    application.add_handler(CommandHandler("requests", list_command))
    application.add_handler(CommandHandler("export", export_command, filters=EXPORT_FILTER))
    application.add_handler(CommandHandler("stats", stats_command))
    application.add_handler(CallbackQueryHandler(list_paged, pattern=rf"^{LIST}:"))
    application.add_handler(CallbackQueryHandler(view_pressed, pattern=rf"^{VIEW}:"))
    application.add_handler(CallbackQueryHandler(NEW_REQUEST.stale_button,
                                                 pattern=rf"^({NEW}|{ACT}):"))

