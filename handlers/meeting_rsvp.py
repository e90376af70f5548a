"""The buttons on meeting invitations and reminders: attend / decline, naming a
delegate, and the coordinators' tally."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import ForceReply
from telegram import Update
from telegram.error import BadRequest
from telegram.ext import ConversationHandler

from bot.plans import meetings as plan
from bot.services import Actor
from bot.services import services
from core.enums import MeetingStatus
from core.enums import Role
from core.enums import Rsvp
from handlers.common import USED
from handlers.common import Context
from handlers.common import close_confirmation
from handlers.common import edit_message
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import handled
from handlers.common import in_group
from handlers.common import keyboard
from handlers.common import offer_confirmation
from handlers.common import prompt_ref
from handlers.common import reply
from handlers.meeting_common import CB
from handlers.meeting_common import PENDING_DELEGATE
from handlers.meeting_common import acting_user
from handlers.meeting_common import actor_zone
from handlers.meeting_common import default_zone
from handlers.meeting_common import typed_text
from i18n import Translator
from storage.access import duty_room_by_chat
from storage.meetings import get_meeting
from storage.meetings import set_rsvp
from storage.schedules import rooms_for_units

# The delegate's conversation state (an int: persisted as JSON).
DELEGATE = 20
# Confirmation kind (handlers/common.py) of the delegate's name prompt.
DELEGATE_KIND = "meeting_delegate"


@dataclass(frozen=True)
class Press:
    meeting_id: int
    answer: Rsvp
    context: str


def parse_press(data: str | None) -> Press | None:
    match = re.fullmatch(rf"{CB}:r:([0-9]{{1,9}}):([adg]):(i|c|r[0-9]{{1,9}})", data or "")
    if not match:
        return None
    return Press(int(match[1]), plan.RSVP_CODES[match[2]], match[3])


async def answering_unit(
    session: AsyncSession, update: Update, actor: Actor
) -> tuple[int | None, Any]:
    """The unit an RSVP answers for: the duty room's unit in a group, else the reader's."""
    chat = update.effective_chat
    if chat is not None and in_group(update):
        room = await duty_room_by_chat(session, chat.id)
        return (room.unit_id, room) if room else (None, None)
    return (actor.user.unit_id if actor.user else None), None


async def record_rsvp(
    update: Update, context: Context, actor: Actor, press: Press, delegate: str | None
) -> tuple[str | None, str | None]:
    """Store the answer; returns (alert text, re-rendered text for the pressed message)."""
    svc, tr, now = services(context), actor.tr, services(context).now()
    chat = update.effective_chat
    async with svc.db.session() as session:
        unit_id, room = await answering_unit(session, update, actor)
        meeting = await get_meeting(session, press.meeting_id)
        if meeting is None or unit_id is None:
            return tr("meetings.errors.not_found"), None
        if meeting.status is MeetingStatus.cancelled:
            return tr("meetings.errors.cancelled"), None
        if meeting.ends_at <= now:
            return tr("meetings.errors.over"), None
        user = await acting_user(session, actor)
        participant = await set_rsvp(session, meeting, unit_id, press.answer, actor=user,
                                     now=now, delegate=delegate,
                                     chat_id=chat.id if chat else None)
        if participant is None:
            return tr("meetings.errors.not_participant"), None
        await session.flush()
        await plan.send_tally(
            session, meeting, now=now, default_zone=default_zone(svc),
            default_language=svc.settings.default_language,
            edit_key=f"meeting:{meeting.id}:tally:u{unit_id}:{now.timestamp():.6f}")
        zone_name = plan.room_zone(room, plan.meeting_zone(meeting, default_zone(svc))) \
            if room else plan.meeting_zone(meeting, actor_zone(svc, actor))
        room_tr = Translator(svc.settings.default_language) if room else tr
        text = plan.room_message(room_tr, meeting, unit_id, zone_name, press.context, now=now)
        answer = tr(f"meetings.rsvp.{press.answer.value}")
        if delegate:
            answer += f"（{escape(delegate)}）"
    svc.wake_delivery()
    return tr("meetings.rsvp.recorded", answer=answer), text


async def _edit_pressed(update: Update, context: Context, text: str, press: Press) -> None:
    svc = services(context)
    tr = Translator(svc.settings.default_language)
    rows = plan.rsvp_rows(tr, press.meeting_id, press.context)
    # Unchanged, or no longer editable: the answer is recorded anyway.
    await edit_query_message(update, text, keyboard(rows), courtesy=True)


@guarded(Role.officer)
async def rsvp_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    press = parse_press(query.data)
    if press is None or press.answer is Rsvp.delegate:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    alert, text = await record_rsvp(update, context, actor, press, None)
    await query.answer(alert, show_alert=text is None)
    if text is not None:
        await _edit_pressed(update, context, text, press)


@guarded(Role.officer)
async def delegate_pressed(update: Update, context: Context, actor: Actor) -> int | None:
    query = update.callback_query
    assert query is not None
    press = parse_press(query.data)
    tr, svc = actor.tr, services(context)
    if press is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return ConversationHandler.END
    async with svc.db.session() as session:
        unit_id, _ = await answering_unit(session, update, actor)
        meeting = await get_meeting(session, press.meeting_id)
        problem = None
        if meeting is None or unit_id is None:
            problem = tr("meetings.errors.not_found")
        elif meeting.status is MeetingStatus.cancelled:
            problem = tr("meetings.errors.cancelled")
        elif all(p.unit_id != unit_id for p in meeting.participants):
            problem = tr("meetings.errors.not_participant")
    if problem:
        await query.answer(problem, show_alert=True)
        return ConversationHandler.END
    assert context.user_data is not None
    message = query.message
    context.user_data[PENDING_DELEGATE] = {
        "meeting_id": press.meeting_id, "context": press.context,
        "message": [message.chat.id, message.message_id] if message else None,
    }
    await query.answer()
    user = update.effective_user
    # A mention plus a selective ForceReply: the officer's app opens a reply to this prompt,
    # which reaches the bot even when group privacy mode hides ordinary messages.
    name = f'<a href="tg://user?id={user.id}">{escape(user.full_name)}</a>' if user else ""
    prompt = await reply(update, tr("meetings.rsvp.ask_delegate", name=name),
                         ForceReply(selective=True))
    chat = update.effective_chat
    if prompt is not None and chat is not None:
        # A reply to this prompt once it is answered, cancelled or replaced says so.
        context.user_data[PENDING_DELEGATE]["token"] = offer_confirmation(
            context, DELEGATE_KIND, ref=prompt_ref(chat.id, prompt))
    return DELEGATE


@guarded(Role.officer)
async def delegate_named(update: Update, context: Context, actor: Actor) -> int:
    tr = actor.tr
    assert context.user_data is not None
    pending = context.user_data.get(PENDING_DELEGATE)
    name = typed_text(update)
    if not pending:
        return await handled(ConversationHandler.END)
    if not name or len(name) > 60:
        await reply(update, tr("meetings.rsvp.bad_delegate"))
        return await handled(DELEGATE)
    press = Press(pending["meeting_id"], Rsvp.delegate, pending["context"])
    alert, text = await record_rsvp(update, context, actor, press, name)
    close_confirmation(context, pending.get("token") or "", USED)
    context.user_data.pop(PENDING_DELEGATE, None)
    await reply(update, alert or "")
    if text is not None and pending.get("message"):
        chat_id, message_id = pending["message"]
        svc = services(context)
        rows = plan.rsvp_rows(Translator(svc.settings.default_language), press.meeting_id,
                              press.context)
        with contextlib.suppress(BadRequest):
            await edit_message(context.bot, {"chat_id": chat_id, "message_id": message_id},
                               text, keyboard(rows))
    return await handled(ConversationHandler.END)


@guarded(Role.coordinator)
async def tally_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    meeting_id = int((query.data or "0").rsplit(":", 1)[1])
    async with svc.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        if meeting is None:
            await query.answer(tr("meetings.errors.not_found"), show_alert=True)
            return
        rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    zone_name = plan.meeting_zone(meeting, actor_zone(svc, actor))
    await query.answer()
    markup = keyboard([[(tr("meetings.buttons.refresh"), f"{CB}:t:{meeting_id}")]])
    await edit_query_message(update, plan.tally_text(tr, meeting, rooms, zone_name, now=now),
                             markup, courtesy=True)
