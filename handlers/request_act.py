"""The buttons on a request (接收 拒绝 转办 完成 撤回): accept at once; a refusal, a
result or a transfer first asks for the reason, the result or the unit, in a prompt the
person answers in the same chat. A forged, foreign or stale press changes nothing
(services/requests.py checks it under lock)."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy.orm.exc import StaleDataError
from telegram import ForceReply
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.services import Actor
from bot.services import services
from core import requests as rules
from core.enums import Role
from core.request_checks import Verdict
from core.requests import Action
from core.requests import Press
from handlers import flow
from handlers.common import CANCELLED
from handlers.common import SUPERSEDED
from handlers.common import USED
from handlers.common import Context
from handlers.common import close_confirmation
from handlers.common import confirmation_open
from handlers.common import current_actor
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import handled
from handlers.common import in_group
from handlers.common import keyboard
from handlers.common import message_text
from handlers.common import offer_confirmation
from handlers.common import prompt_ref
from handlers.common import reply
from handlers.request_common import ACT
from handlers.request_common import DB_ID
from handlers.request_common import TOKEN
from handlers.request_common import policy
from i18n import Translator
from services import requests as service
from storage import requests as store
from storage.access import audit
from storage.access import user_by_telegram_id
from storage.models import Unit
from storage.units import find_units
from views import requests as render

PENDING = "rq_pending"  # the press waiting for a reason, result or unit
NOTE, UNIT = 20, 21
END = flow.END
PENDING_TTL = timedelta(minutes=30)


def _stale_text(tr: Translator, outcome: service.Outcome, tz: Any) -> str:
    request = outcome.request
    assert request is not None
    status = tr(f"requests.status.{request.status.value}")
    if outcome.first is not None:
        return tr("requests.act.stale_by", who=render.person(outcome.first.actor),
                  at=render.local_time(outcome.first.at, tz), status=status)
    return tr("requests.act.stale", status=status)


def _refusal_text(tr: Translator, outcome: service.Outcome, tz: Any) -> str:
    if outcome.verdict is Verdict.not_found:
        return tr("requests.act.not_found")
    if outcome.verdict is Verdict.not_allowed:
        return tr("requests.act.not_yours")
    return _stale_text(tr, outcome, tz)


@guarded(Role.officer)
async def button_pressed(update: Update, context: Context, actor: Actor) -> int:
    """A button on a request: accept at once; ask for a reason, result or unit first."""
    svc, tr, tz = services(context), actor.tr, flow.reader_zone(services(context), actor)
    query = update.callback_query
    assert query is not None
    press = rules.parse_action_data(query.data)
    if press is None:
        await query.answer(tr("requests.act.invalid_button"), show_alert=True)
        return await handled(END)
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        outcome = await service.check_press(session, press, actor=user)
        if outcome.verdict is not Verdict.done:
            await audit(session, "request.press_refused", actor=user,
                        chat_id=update.effective_chat.id if update.effective_chat else None,
                        subject_type="request", subject_id=press.request_id,
                        verdict=outcome.verdict.value, data=query.data)
    if outcome.verdict is not Verdict.done:
        await query.answer(_refusal_text(tr, outcome, tz), show_alert=True)
        return await handled(END)
    if press.action is Action.accept:
        return await _apply(update, context, actor, press)
    request = outcome.request
    assert request is not None and context.user_data is not None
    await query.answer()
    mention = f'<a href="tg://user?id={actor.telegram_id}">{escape(_name(update))}</a>'
    key = "ask_transfer" if press.action is Action.transfer else f"ask_{press.action.value}"
    message = update.effective_message
    assert message is not None
    prompt = await message.reply_text(
        tr(f"requests.act.{key}", who=mention, number=request.number, limit=rules.NOTE_MAX),
        reply_markup=ForceReply(selective=True),
        do_quote=False,
    )
    _close_pending(context, SUPERSEDED)
    token = offer_confirmation(context, _act_kind(press.action), press.request_id,
                               ref=prompt_ref(prompt.chat_id, prompt.message_id))
    context.user_data[PENDING] = {"action": press.action.value, "id": press.request_id,
                                  "version": press.version, "prompt": prompt.message_id,
                                  "at": svc.now().isoformat(), "token": token}
    return await handled(UNIT if press.action is Action.transfer else NOTE)


def _act_kind(action: Action) -> str:
    """The confirmation kind of a reason, result or unit prompt (confirm.what.<kind>)."""
    return f"request_{action.value}"


def _close_pending(context: Context, state: str) -> None:
    """The waiting prompt is over (answered, cancelled, replaced): its answers are dead."""
    pending = (context.user_data or {}).get(PENDING) or {}
    close_confirmation(context, pending.get("token") or "", state)


def _name(update: Update) -> str:
    user = update.effective_user
    return user.full_name if user else ""


def _pending(context: Context, now: datetime) -> Press | None:
    """The press waiting for a reason, result or unit (None once too old)."""
    data = (context.user_data or {}).get(PENDING)
    try:
        if data and now - datetime.fromisoformat(data["at"]) <= PENDING_TTL:
            return Press(Action(data["action"]), int(data["id"]), int(data["version"]))
    except (KeyError, ValueError):
        pass
    if context.user_data is not None:
        context.user_data.pop(PENDING, None)
    return None


def _answers_prompt(update: Update, context: Context) -> bool:
    """In a group, only a reply to our prompt is the answer (others talk there too); in
    a private chat any message is, except a reply to another message."""
    message = update.effective_message
    replied = message.reply_to_message if message else None
    data = (context.user_data or {}).get(PENDING) or {}
    if replied is None:
        return not in_group(update)
    return replied.message_id == data.get("prompt")


@guarded(Role.officer)
async def note_typed(update: Update, context: Context, actor: Actor) -> int:
    press = _pending(context, services(context).now())
    if press is None:
        return END  # abandoned long ago: the message is for someone else
    if not _answers_prompt(update, context):
        return NOTE
    return await _apply(update, context, actor, press, note=message_text(update))


@guarded(Role.officer)
async def unit_typed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    press = _pending(context, svc.now())
    query = update.callback_query
    if press is None:
        if query is not None:
            await query.answer(tr("requests.new.expired"), show_alert=True)
            return await handled(END)
        return END
    if query is None and not _answers_prompt(update, context):
        return UNIT
    if query is not None:
        match = re.fullmatch(rf"{ACT}:u:{DB_ID}:({TOKEN})", query.data or "")
        if match is None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(UNIT)
        if not await confirmation_open(update, context, tr, match.group(2),
                                       _act_kind(Action.transfer)):
            return await handled(UNIT)
        return await _apply(update, context, actor, press, unit_id=int(match.group(1)))
    text = rules.clean_line(message_text(update))
    async with svc.db.session() as session:
        units = await find_units(session, text, partial=True)
    if not units:
        await reply(update, tr("requests.new.unknown_unit", query=escape(text[:40])))
        return await handled(UNIT)
    if len(units) > 1:
        token = (context.user_data or {}).get(PENDING, {}).get("token", "")
        rows = [[(tr.name(u.name), f"{ACT}:u:{u.id}:{token}")] for u in units]
        await reply(update, tr("requests.act.transfer_choose", query=escape(text[:40])),
                    keyboard([*rows, [(tr("requests.button.quit"), f"{ACT}:quit:{token}")]]))
        return await handled(UNIT)
    return await _apply(update, context, actor, press, unit_id=units[0].id)


async def _apply(update: Update, context: Context, actor: Actor, press: Press, *,
                 note: str | None = None, unit_id: int | None = None) -> int:
    """Make the change (locked, version-checked); answer the person acting."""
    svc, tr, tz = services(context), actor.tr, flow.reader_zone(services(context), actor)
    query = update.callback_query
    chat = update.effective_chat
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            assert user is not None
            unit = await session.get(Unit, unit_id) if unit_id is not None else None
            outcome = await service.act_on_request(
                session, press, actor=user, now=svc.now(), policy=policy(svc), note=note,
                transfer_to=unit, chat_id=chat.id if chat else None,
            )
    except StaleDataError:
        async with svc.db.session() as session:
            request = await store.load_request(session, request_id=press.request_id)
        outcome = service.Outcome(Verdict.stale, request,
                                render.last_change(request) if request else None)
    if outcome.verdict is Verdict.invalid:
        problem = outcome.problem or "note_empty"
        text = tr(f"requests.act.{problem}", length=len(rules.clean_block(note)),
                  limit=rules.NOTE_MAX)
        if query is not None:
            await query.answer(text, show_alert=True)
        else:
            await reply(update, text)
        return await handled(UNIT if press.action is Action.transfer else NOTE)
    assert context.user_data is not None
    pending = context.user_data.get(PENDING) or {}
    answered = (pending.get("id"), pending.get("action")) == (press.request_id,
                                                               press.action.value)
    _close_pending(context, USED if answered else SUPERSEDED)
    context.user_data.pop(PENDING, None)
    if outcome.verdict is not Verdict.done:
        text = _refusal_text(tr, outcome, tz)
        if query is not None:
            await query.answer(text, show_alert=True)
        else:
            await reply(update, text)
        return await handled(END)
    svc.wake_delivery()
    await svc.rescheduled("requests")
    request = outcome.request
    assert request is not None
    done = tr(f"requests.act.done.{_done_key(press.action, outcome.liaisons_told)}",
              number=request.number, count=outcome.liaisons_told,
              unit=request.to_unit.name if outcome.new_request is None
              else outcome.new_request.to_unit.name,
              new=outcome.new_request.number if outcome.new_request else "")
    if query is not None:
        await query.answer(done)
        if not in_group(update):
            # The person acting pressed a copy in their own chat: bring it up to date.
            payload = render.card_payload(tr, request, tz)
            await edit_query_message(update, payload["text"], payload.get("reply_markup"),
                                     courtesy=True)
    else:
        await reply(update, escape(done))
    return await handled(END)


def _done_key(action: Action, liaisons_told: int | None) -> str:
    """A withdrawal says who on the other side was told: the duty room, its liaisons,
    or (a unit with neither) nobody."""
    if action is not Action.cancel or liaisons_told is None:
        return action.value
    return "cancel_liaisons" if liaisons_told else "cancel_nobody"


async def drop_action(update: Update, context: Context) -> int:
    """/cancel or the ✖️ under a unit choice: the waiting prompt is over. A ✖️ of a
    choice already over changes nothing."""
    tr = (await current_actor(update, context)).tr
    assert context.user_data is not None
    query = update.callback_query
    token = (query.data or "").removeprefix(f"{ACT}:quit").lstrip(":") if query else ""
    if token and not await confirmation_open(update, context, tr, token,
                                             _act_kind(Action.transfer)):
        raise ApplicationHandlerStop  # whatever is in progress goes on as it was
    _close_pending(context, CANCELLED)
    context.user_data.pop(PENDING, None)
    if update.callback_query is not None:
        await update.callback_query.answer()
        await edit_query_message(update, tr("requests.act.dropped"), courtesy=True)
    else:
        await reply(update, tr("requests.act.dropped"))
    return await handled(END)


