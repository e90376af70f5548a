"""What is done to a notice once sent: the 收到 button in duty rooms, its withdrawal
(confirmed from /notices) and its correction, a new revision typed in answer to a
prompt that waits in the notice flow's conversation."""

from __future__ import annotations

import re
from datetime import datetime

from telegram import Update

from bot.commands import Where
from bot.plans import notices as plan
from bot.services import Actor
from bot.services import services
from core.enums import NoticeStatus
from core.enums import Role
from core.notices import TEXT_MAX
from core.notices import NoticeProblem
from core.notices import Verdict
from core.notices import parse_id
from handlers import flow
from handlers.common import USED
from handlers.common import Context
from handlers.common import close_confirmation
from handlers.common import edit_query_message
from handlers.common import guarded
from handlers.common import handled
from handlers.common import keyboard
from handlers.common import offer_confirmation
from handlers.common import reply
from handlers.notice_common import CORRECT
from handlers.notice_common import CORRECTING
from handlers.notice_common import DRAFT_TTL
from handlers.notice_common import MANAGE
from handlers.notice_common import NEW
from handlers.notice_common import policy
from handlers.notice_common import text_of
from i18n import Translator
from services import notices as service
from storage import notices as store
from storage.access import user_by_telegram_id
from views import requests as render

CORRECTION = "notice_correct"  # the correction prompt's confirmation kind (handlers/common.py)


def _cancel_button(tr: Translator, token: str | None) -> tuple[str, str]:
    """✖️ 取消 of one draft or correction prompt: it cancels that one only."""
    return tr("notices.button.cancel"), f"{NEW}:quit:{token}" if token else f"{NEW}:quit"


# --------------------------------------------------------------------------- 收到


@guarded(Role.officer)
async def ack_pressed(update: Update, context: Context, actor: Actor) -> None:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    chat = update.effective_chat
    now = svc.now()
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        outcome = await service.acknowledge(session, query.data, actor=user,
                                            chat_id=chat.id if chat else None, now=now,
                                            policy=policy(svc))
        first_at = outcome.delivery.acknowledged_at if outcome.delivery else None
        first_revision = (outcome.delivery.acknowledged_revision or 1) \
            if outcome.delivery else 1
        who = render.person(outcome.acknowledger)
    zone = flow.reader_zone(svc, actor)
    if outcome.verdict is Verdict.done:
        svc.wake_delivery()
        await query.answer(tr("notices.ack.done", number=outcome.notice.number
                              if outcome.notice else ""))
    elif outcome.verdict is Verdict.already:
        await query.answer(tr("notices.ack.already", who=who, revision=first_revision,
                              at=render.local_time(first_at or now, zone)), show_alert=True)
    else:
        await query.answer(tr(f"notices.ack.{outcome.verdict.value}"), show_alert=True)


# --------------------------------------------------------------------------- withdrawal


async def withdraw(update: Update, context: Context, actor: Actor, notice_id: int,
                   token: str) -> None:
    """The withdrawal confirmed under /notices (handlers/notices.py): every room's
    message edited, the buttons removed."""
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            notice = await store.get_notice(session, notice_id=notice_id, for_update=True)
            if notice is None or user is None:
                raise NoticeProblem("not_found")
            edited = await service.withdraw_notice(session, notice, actor=user,
                                                   now=svc.now(), policy=policy(svc))
            number = notice.number
    except NoticeProblem as problem:
        await query.answer(tr(f"notices.problem.{problem.code}", **problem.values),
                           show_alert=True)
        return
    close_confirmation(context, token, USED)
    svc.wake_delivery()
    await svc.rescheduled(plan.NAME)
    await query.answer()
    await edit_query_message(update, tr("notices.withdraw.done", number=number, rooms=edited),
                             courtesy=True)


# --------------------------------------------------------------------------- correction


@guarded(Role.coordinator, Where.private)
async def correct_pressed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None and context.user_data is not None
    match = re.fullmatch(rf"{MANAGE}:c:(\d+)", query.data or "")
    notice_id = parse_id(match.group(1)) if match else None
    async with svc.db.session() as session:
        notice = await store.get_notice(session, notice_id=notice_id) if notice_id else None
    if notice is None or notice.status is NoticeStatus.withdrawn:
        await query.answer(tr("notices.problem.already_withdrawn") if notice
                           else tr("errors.stale_button"), show_alert=True)
        return await handled(flow.END)
    await query.answer()
    token = offer_confirmation(context, CORRECTION)
    context.user_data[CORRECTING] = {"id": notice.id, "at": svc.now().isoformat(),
                                     "token": token}
    await reply(update, tr("notices.correct.ask", number=notice.number, limit=TEXT_MAX),
                keyboard([[_cancel_button(tr, token)]]))
    return await handled(CORRECT)


@guarded(Role.coordinator, Where.private)
async def correction_typed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    assert context.user_data is not None
    pending = context.user_data.get(CORRECTING)
    if not pending or svc.now() - datetime.fromisoformat(pending["at"]) > DRAFT_TTL:
        context.user_data.pop(CORRECTING, None)
        return flow.END
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            notice = await store.get_notice(session, notice_id=pending["id"], for_update=True)
            if notice is None or user is None:
                raise NoticeProblem("not_found")
            edited = await service.correct_notice(session, notice, text_of(update), actor=user,
                                                  now=svc.now(), policy=policy(svc))
            number, revision = notice.number, notice.revision
    except NoticeProblem as problem:
        await reply(update, tr(f"notices.problem.{problem.code}", **problem.values))
        return await handled(CORRECT)
    context.user_data.pop(CORRECTING, None)
    close_confirmation(context, pending.get("token") or "", USED)
    svc.wake_delivery()
    await reply(update, tr("notices.correct.done", number=number, revision=revision,
                           rooms=edited))
    return await handled(flow.END)


@guarded(Role.coordinator, Where.private)
async def correction_not_text(update: Update, context: Context, actor: Actor) -> int:
    """A photo or sticker where the corrected text is expected: say so, stay."""
    await reply(update, actor.tr("notices.new.text_expected"))
    return await handled(CORRECT)

