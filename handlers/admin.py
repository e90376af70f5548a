"""Administration in chat: invitations, duty-room registration, (de)activating users,
lifting a lookup limit.

Each handler decides inside its unit of work and replies after it commits: no
Telegram call while a transaction is open.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.services import Actor
from bot.services import services
from core.enums import Role
from core.roles import may_invite
from core.roles import parse_role
from handlers.common import CANCELLED
from handlers.common import USED
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import close_confirmation
from handlers.common import confirmation
from handlers.common import confirmation_open
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import offer_confirmation
from handlers.common import reply
from i18n import Translator
from services import quota
from storage.access import RoomConflict
from storage.access import create_invitation
from storage.access import register_duty_room
from storage.access import set_user_active
from storage.access import user_by_telegram_id
from storage.models import Unit
from storage.models import User
from storage.units import find_units
from views.buttons import Button
from views.buttons import Style

# /deactivate asks first (handlers/common.py confirmations); its buttons carry the token.
DEACTIVATE, DEACTIVATE_CALLBACK = "user_deactivate", "adm:d:"

COMMANDS = [
    CommandInfo("invite", Role.coordinator, Where.private, "admin.invite"),
    CommandInfo("register_room", Role.coordinator, Where.group, "admin.register_room"),
    CommandInfo("deactivate", Role.admin, Where.private, "admin.deactivate"),
    CommandInfo("activate", Role.admin, Where.private, "admin.activate"),
    CommandInfo("unblock", Role.admin, Where.private, "admin.unblock"),
]


async def one_unit(session: AsyncSession, tr: Translator, query: str) -> Unit:
    units = await find_units(session, query)
    if len(units) == 1:
        return units[0]
    if not units:
        raise Refusal(tr("admin.unknown_unit", query=escape(query)))
    names = tr.join(f"{escape(tr.name(u.name))} (<code>{escape(u.code)}</code>)" for u in units)
    raise Refusal(tr("admin.ambiguous_unit", query=escape(query), units=names))


@guarded(Role.coordinator, Where.private)
async def invite(update: Update, context: Context, actor: Actor) -> None:
    tr, args = actor.tr, context.args or []
    svc = services(context)
    if not args or len(args) > 2:
        raise Refusal(tr("admin.invite.usage"))
    role = parse_role(args[1]) if len(args) == 2 else Role.officer
    if role is None:
        raise Refusal(tr("admin.unknown_role", role=escape(args[1])))
    if not may_invite(actor.role, role):
        raise Refusal(tr("admin.role_not_allowed", role=tr(f"roles.{role.value}")))
    async with svc.db.session() as session:
        unit = await one_unit(session, tr, args[0])
        invitation = await create_invitation(
            session,
            unit=unit,
            role=role,
            now=svc.now(),
            ttl=timedelta(hours=svc.settings.invitation_ttl_hours),
            created_by=await user_by_telegram_id(session, actor.telegram_id),
        )
    link = f"https://t.me/{context.bot.username}?start={invitation.code}"
    await reply(
        update,
        tr(
            "admin.invite.created",
            unit=escape(tr.name(unit.name)),
            role=tr(f"roles.{role.value}"),
            hours=svc.settings.invitation_ttl_hours,
            link=escape(link),
            code=escape(invitation.code),
        ),
    )


@guarded(Role.coordinator, Where.group)
async def register_room(update: Update, context: Context, actor: Actor) -> None:
    tr, query = actor.tr, " ".join(context.args or []).strip()
    chat = update.effective_chat
    assert chat is not None
    svc = services(context)
    try:
        if not query:
            raise Refusal(tr("admin.register_room.usage"))
        async with svc.db.session() as session:
            unit = await one_unit(session, tr, query)
            registrar = await user_by_telegram_id(session, actor.telegram_id)
            assert registrar is not None
            room, replaced = await register_duty_room(
                session, unit=unit, chat_id=chat.id, title=chat.title or unit.name,
                actor=registrar, now=svc.now(),
            )
    except RoomConflict as conflict:
        await reply(update, tr("admin.register_room.conflict",
                               unit=escape(tr.name(conflict.unit_name))))
        return
    key = "admin.register_room.moved" if replaced else "admin.register_room.done"
    await reply(update, tr(key, unit=escape(tr.name(room.unit.name))))


async def target_user(session: AsyncSession, tr: Translator, arg: str) -> User:
    arg = arg.strip()
    if re.fullmatch(r"-?[0-9]{1,15}", arg):  # a Telegram id (fits the BIGINT column)
        user = await user_by_telegram_id(session, int(arg))
    else:
        user = (
            await session.execute(select(User).options(joinedload(User.unit))
                                  .where(User.username == arg.lstrip("@")))
        ).scalar_one_or_none()
    if user is None:
        raise Refusal(tr("admin.unknown_user", user=escape(arg)))
    return user


async def _set_active(svc: Any, actor: Actor, target: str, active: bool, *,
                      change: bool = True) -> tuple[str, str]:
    """Check (and with `change`, make) the change; returns (the user's name, a description
    of the user for the question). Raises Refusal when there is nothing to do."""
    tr = actor.tr
    key = "admin.activate" if active else "admin.deactivate"
    async with svc.db.session() as session:
        user = await target_user(session, tr, target)
        if user.telegram_id == actor.telegram_id:
            raise Refusal(tr("admin.not_yourself"))
        name = escape(user.full_name or str(user.telegram_id))
        if user.active == active:
            raise Refusal(tr(f"{key}.already", user=name))
        described = tr("admin.deactivate.who", user=name,
                       role=tr(f"roles.{user.role.value}") if user.role else "—",
                       unit=escape(tr.name(user.unit.name)) if user.unit else tr("start.no_unit"))
        if change:
            admin = await user_by_telegram_id(session, actor.telegram_id)
            assert admin is not None
            await set_user_active(session, user, active, actor=admin)
    return name, described


def activation_handler(active: bool) -> Callable[[Update, Context], Awaitable[Any]]:
    key = "admin.activate" if active else "admin.deactivate"

    @guarded(Role.admin, Where.private)
    async def handler(update: Update, context: Context, actor: Actor) -> None:
        """/activate acts at once; /deactivate asks first, saying whom it would lock out."""
        tr, svc = actor.tr, services(context)
        if len(context.args or []) != 1:
            raise Refusal(tr(f"{key}.usage"))
        name, described = await _set_active(svc, actor, context.args[0], active,
                                            change=active)
        if active:
            await reply(update, tr(f"{key}.done", user=name))
            return
        token = offer_confirmation(context, DEACTIVATE, context.args[0].strip())
        await reply(update, tr("admin.deactivate.confirm", who=described), keyboard([[
            Button(tr("admin.deactivate.button_yes"), f"{DEACTIVATE_CALLBACK}y:{token}",
                   Style.danger),
            (tr("admin.deactivate.button_no"), f"{DEACTIVATE_CALLBACK}n:{token}")]]))

    return handler


@guarded(Role.admin, Where.private)
async def deactivate_pressed(update: Update, context: Context, actor: Actor) -> None:
    """The answer to /deactivate's question; checked against the user's state now."""
    tr, svc = actor.tr, services(context)
    query = update.callback_query
    assert query is not None and context.user_data is not None
    answer, _, token = (query.data or "").removeprefix(DEACTIVATE_CALLBACK).partition(":")
    if not await confirmation_open(update, context, tr, token, DEACTIVATE):
        return
    if answer != "y":
        close_confirmation(context, token, CANCELLED)
        await query.answer()
        await edit_query_message(update, tr("admin.deactivate.kept"))
        return
    target = confirmation(context, token)["subject"]
    close_confirmation(context, token, USED)
    await query.answer()
    try:
        name, _ = await _set_active(svc, actor, target, False)
    except Refusal as refusal:
        await edit_query_message(update, refusal.text)
        return
    await edit_query_message(update, tr("admin.deactivate.done", user=name))


@guarded(Role.admin, Where.private)
async def unblock(update: Update, context: Context, actor: Actor) -> None:
    """Lift a person's lookup limit: their counts start afresh (core/quota.py), at once."""
    tr, svc = actor.tr, services(context)
    if len(context.args or []) != 1:
        raise Refusal(tr("admin.unblock.usage"))
    async with svc.db.session() as session:
        user = await target_user(session, tr, context.args[0])
        if user.telegram_id == actor.telegram_id:
            raise Refusal(tr("admin.not_yourself"))
        name = escape(user.full_name or str(user.telegram_id))
        admin = await user_by_telegram_id(session, actor.telegram_id)
        assert admin is not None
        before = await quota.unblock(session, user, admin,
                                     svc.settings.lookup_policy(user.role),
                                     now=svc.now(), language=svc.settings.default_language)
        if before is None:
            raise Refusal(tr("admin.unblock.nothing", user=name))
    svc.wake_delivery()
    hour, day = before
    await reply(update, tr("admin.unblock.done", user=name, hour=hour.count,
                           hour_limit=hour.limit, day=day.count, day_limit=day.limit))


def register(application: Application) -> None:
    application.add_handler(CommandHandler("invite", invite))
    application.add_handler(CommandHandler("register_room", register_room))
    application.add_handler(CommandHandler("deactivate", activation_handler(False)))
    application.add_handler(CommandHandler("activate", activation_handler(True)))
    application.add_handler(CommandHandler("unblock", unblock))
    application.add_handler(CallbackQueryHandler(deactivate_pressed,
                                                 pattern=f"^{DEACTIVATE_CALLBACK}[yn]:"))
