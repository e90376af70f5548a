"""Notices in chat: /notices for coordinators (list, view, CSV report, and the buttons
to correct or withdraw); register() wires every notice handler: the /notice flow and
the correction prompt in one conversation (notice_new.py, notice_act.py), the 收到
button in duty rooms (notice_act.py), the lists and views here.

Handlers decide inside one unit of work and talk to Telegram only after it commits;
everything for duty rooms and the coordinator's status message is written to the outbox
by services/notices.py in that unit of work. The guided flow and the correction prompt
are persistent conversations: a restart in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import re

from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import MessageHandler
from telegram.ext import filters

from bot import reports
from bot.commands import CommandInfo
from bot.commands import Where
from bot.plans import notices as plan
from bot.services import SERVICES_KEY
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.enums import NoticeStatus
from core.enums import Role
from core.notices import CALLBACK
from core.notices import parse_id
from handlers import flow
from handlers.common import CANCELLED
from handlers.common import Context
from handlers.common import close_confirmation
from handlers.common import confirmation_open
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import list_keyboard
from handlers.common import offer_confirmation
from handlers.common import page_count
from handlers.common import reply
from handlers.flow import NOT_TYPED
from handlers.flow import TYPED
from handlers.notice_act import ack_pressed
from handlers.notice_act import correct_pressed
from handlers.notice_act import correction_not_text
from handlers.notice_act import correction_typed
from handlers.notice_act import withdraw
from handlers.notice_common import AUDIENCE
from handlers.notice_common import CONFIRM
from handlers.notice_common import CORRECT
from handlers.notice_common import KIND
from handlers.notice_common import MANAGE
from handlers.notice_common import NEW
from handlers.notice_common import SEVERITY
from handlers.notice_common import TEXT
from handlers.notice_common import TOKEN
from handlers.notice_common import WHEN
from handlers.notice_common import folded_word
from handlers.notice_common import policy
from handlers.notice_new import NEW_NOTICE
from handlers.notice_new import audience_pressed
from handlers.notice_new import audience_typed
from handlers.notice_new import confirm_pressed
from handlers.notice_new import kind_chosen
from handlers.notice_new import notice_command
from handlers.notice_new import severity_chosen
from handlers.notice_new import text_given
from handlers.notice_new import when_given
from services import notices as service
from storage import notices as store
from storage.access import audit
from storage.access import user_by_telegram_id
from views import requests as render
from views.buttons import Button
from views.buttons import Markup
from views.buttons import Style
from views.notices import first_line
from views.notices import kind_label
from views.notices import report_table
from views.notices import severity_label

COMMANDS = [
    CommandInfo("notice", Role.coordinator, Where.private, "notices.command"),
    CommandInfo("notices", Role.coordinator, Where.private, "notices.list_command"),
]

WITHDRAW = "notice_withdraw"  # the withdrawal's confirmation kind (handlers/common.py)
VIEW_TEXT = 1500  # of the notice's text under its status in a view (a message has 4096)
EXPORT_WORDS = {"export", "导出", "csv"}


async def _list_page(svc: Services, actor: Actor, page: int
                     ) -> tuple[str, Markup | None]:
    tr = actor.tr
    zone = flow.reader_zone(svc, actor)
    async with svc.db.session() as session:
        found, total = await store.recent_notices(session, page=page)
        counts = await store.tallies(session, [n.id for n in found])
    pages = page_count(total, store.PAGE_SIZE)
    lines = [tr("notices.list.title", total=total, page=min(page + 1, pages), pages=pages)]
    if not found:
        lines.append(tr("notices.list.empty"))
    for notice in found:
        tally = counts[notice.id]
        moment = notice.sent_at or notice.scheduled_for or notice.created_at
        lines.append(tr("notices.list.line", number=notice.number,
                        kind=kind_label(tr, notice.kind),
                        severity=severity_label(tr, notice.severity),
                        status=tr(f"notices.state.{notice.status.value}"),
                        at=render.local_time(moment, zone), rooms=tally.rooms,
                        delivered=tally.delivered, acknowledged=tally.acknowledged,
                        failed=tally.failed, text=escape(first_line(notice.text))))
    view = [(n.number.rsplit("-", 1)[1].lstrip("0") or "0", f"{MANAGE}:v:{n.id}")
            for n in found]
    return "\n".join(lines), list_keyboard(
        view, page, pages, previous=tr("notices.button.previous"),
        following=tr("notices.button.following"), page_data=lambda n: f"{MANAGE}:p:{n}")


@guarded(Role.coordinator, Where.private)
async def notices_command(update: Update, context: Context, actor: Actor) -> None:
    args = list(context.args or [])
    if args and folded_word(args[0]) in EXPORT_WORDS:
        await _export(update, context, actor, args[1] if len(args) > 1 else None)
        return
    if args:
        async with services(context).db.session() as session:
            notice = await store.get_notice(session, number=args[0])
        if notice is None:
            await reply(update, actor.tr("notices.view.not_found", number=escape(args[0][:40])))
            return
        await _show(update, context, actor, notice.id)
        return
    text, markup = await _list_page(services(context), actor, 0)
    await reply(update, text, markup)


async def _show(update: Update, context: Context, actor: Actor, notice_id: int) -> None:
    svc, tr = services(context), actor.tr
    async with svc.db.session() as session:
        notice = await store.get_notice(session, notice_id=notice_id)
        if notice is None:
            await reply(update, tr("notices.view.not_found", number=str(notice_id)))
            return
        text = await service.render_status(session, notice, now=svc.now(),
                                            policy=policy(svc))
        if notice.status is NoticeStatus.scheduled and notice.scheduled_for:
            zone = flow.reader_zone(svc, actor)
            text += "\n" + tr("notices.view.scheduled", when=render.local_time(
                notice.scheduled_for, zone, with_year=True))
        body = notice.text if len(notice.text) <= VIEW_TEXT else notice.text[:VIEW_TEXT] + "…"
        text += "\n\n" + escape(body)
        status = notice.status
    rows = []
    if status is not NoticeStatus.withdrawn:
        rows.append([(tr("notices.button.correct"), f"{MANAGE}:c:{notice_id}"),
                     Button(tr("notices.button.withdraw"), f"{MANAGE}:w:{notice_id}",
                            Style.danger)])
    rows.append([(tr("notices.button.export"), f"{MANAGE}:x:{notice_id}")])
    await reply(update, text, keyboard(rows))


@guarded(Role.coordinator, Where.private)
async def manage_pressed(update: Update, context: Context, actor: Actor) -> None:
    """View, page, export, and the withdrawal's confirmation."""
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    match = re.fullmatch(rf"{MANAGE}:([vpxw]):(\d+)|{MANAGE}:([yn]):(\d+):({TOKEN})",
                         query.data or "")
    raw = (match.group(2) or match.group(4)) if match else None
    number = parse_id(raw) if raw and raw != "0" else 0
    if match is None or number is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return
    action, token = match.group(1) or match.group(3), match.group(5)
    if token is not None and not await confirmation_open(
            update, context, tr, token, WITHDRAW):
        return
    if action == "p":
        await query.answer()
        text, markup = await _list_page(svc, actor, number)
        await edit_query_message(update, text, markup, courtesy=True)
    elif action == "v":
        await query.answer()
        await _show(update, context, actor, number)
    elif action == "x":
        await query.answer()
        await _export(update, context, actor, None, notice_id=number)
    elif action == "w":
        await query.answer()
        token = offer_confirmation(context, WITHDRAW, number)
        await reply(update, tr("notices.withdraw.confirm"), keyboard([[
            Button(tr("notices.button.withdraw_yes"), f"{MANAGE}:y:{number}:{token}",
                   Style.danger),
            (tr("notices.button.cancel"), f"{MANAGE}:n:{number}:{token}")]]))
    elif action == "n":
        close_confirmation(context, token, CANCELLED)
        await query.answer()
        await edit_query_message(update, tr("notices.withdraw.kept"), courtesy=True)
    else:
        await withdraw(update, context, actor, number, token)


async def _export(update: Update, context: Context, actor: Actor, number: str | None, *,
                  notice_id: int | None = None) -> None:
    """The final report of one notice (the latest sent by default) as CSV."""
    svc, tr = services(context), actor.tr
    zone = flow.reader_zone(svc, actor)
    async with svc.db.session() as session:
        if notice_id is not None:
            notice = await store.get_notice(session, notice_id=notice_id)
        elif number:
            notice = await store.get_notice(session, number=number)
        else:
            notice = await store.latest_notice(session)
        if notice is None:
            await reply(update, tr("notices.view.not_found", number=escape((number or "")[:40])))
            return
        states = await store.room_states(session, notice)
        header, rows = report_table(tr, notice, states, zone)
        user = await user_by_telegram_id(session, actor.telegram_id)
        await audit(session, "notice.export", actor=user, subject_type="notice",
                    subject_id=notice.number, rooms=len(rows))
        label = notice.number
    data = await asyncio.to_thread(reports.to_csv, header, rows)
    message = update.effective_message
    assert message is not None
    await message.reply_document(document=data, filename=f"{label}.csv",
                                 caption=tr("notices.report.caption", number=label,
                                            rooms=len(rows)))


# =========================================================================== wiring


def register(application: Application) -> None:
    svc: Services | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None:
        plan.status_refresher(svc)
    files = filters.PHOTO | filters.Document.ALL
    on, answers = NEW_NOTICE.on, NEW_NOTICE.answers
    notice_flow = NEW_NOTICE.conversation(
        entry_points=[CommandHandler("notice", notice_command),
                      CallbackQueryHandler(correct_pressed, pattern=rf"^{MANAGE}:c:")],
        states={
            KIND: answers(KIND, kind_chosen, kind_chosen, rf"^{NEW}:k:"),
            SEVERITY: answers(SEVERITY, severity_chosen, severity_chosen, rf"^{NEW}:s:"),
            AUDIENCE: answers(AUDIENCE, audience_typed, audience_pressed, rf"^{NEW}:a:"),
            TEXT: answers(TEXT, text_given, takes=TYPED | files),
            WHEN: answers(WHEN, when_given, when_given, rf"^{NEW}:now$"),
            CONFIRM: [MessageHandler(TYPED, NEW_NOTICE.typed_at_confirm),
                      CallbackQueryHandler(on(confirm_pressed),
                                           pattern=rf"^{NEW}:(send|when)(:{TOKEN})?$")],
            CORRECT: [MessageHandler(TYPED, correction_typed),
                      MessageHandler(NOT_TYPED, correction_not_text)],
        },
    )
    # Group -1: a typed answer inside the flow must not also reach plain-text features.
    application.add_handler(notice_flow, group=-1)
    application.add_handler(CommandHandler("notices", notices_command))
    application.add_handler(CallbackQueryHandler(ack_pressed, pattern=rf"^{CALLBACK}:"))
    application.add_handler(CallbackQueryHandler(manage_pressed, pattern=rf"^{MANAGE}:"))
    application.add_handler(CallbackQueryHandler(NEW_NOTICE.quit,
                                                 pattern=rf"^{NEW}:quit(:{TOKEN})?$"))
    application.add_handler(CallbackQueryHandler(NEW_NOTICE.stale_button, pattern=rf"^{NEW}:"))
