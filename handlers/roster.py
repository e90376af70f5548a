"""Duty rosters: /roster (the next 7 days) and /roster remind (an officer's own reminder
offsets); register() also wires /roster edit (roster_edit.py) and /swap (roster_swap.py).

Handovers and shift reminders are sent by bot/plans/roster.py; every change here asks
the scheduler to re-place the roster jobs after its commit, and claims what is already
due on the old plan as skipped (in the same transaction).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from telegram import Update
from telegram.ext import Application
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.plans import roster as plan
from bot.services import Actor
from bot.services import services
from core.enums import Role
from core.meetings import parse_offset
from core.normalize import normalize
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import guarded
from handlers.common import in_group
from handlers.common import reply
from handlers.roster_common import room_for
from handlers.roster_common import roster_text
from handlers.roster_edit import EDIT_CB
from handlers.roster_edit import edit_command
from handlers.roster_edit import edit_pressed
from handlers.roster_swap import CB
from handlers.roster_swap import swap_command
from handlers.roster_swap import swap_pressed
from i18n import Translator
from i18n.formats import fmt_minutes
from storage.access import audit
from storage.access import user_by_telegram_id
from storage.models import RosterMember
from storage.roster import roster_for_room

COMMANDS = [
    CommandInfo("roster", Role.officer, Where.anywhere, "roster.command"),
    CommandInfo("swap", Role.officer, Where.anywhere, "roster.swap"),
]

OFF_WORDS = {"off", "none", "关闭", "关", "不提醒"}


# --------------------------------------------------------------------------- /roster


@guarded(Role.officer)
async def roster_command(update: Update, context: Context, actor: Actor) -> None:
    args = context.args or []
    verb = args[0].lower() if args else ""
    if verb in {"edit", "编辑", "修改", "編輯"}:
        await edit_command(update, context, actor, args[1:])
        return
    if verb in {"remind", "提醒"}:
        await remind_command(update, context, actor, args[1:])
        return
    svc, tr, now = services(context), actor.tr, services(context).now()
    async with svc.db.session() as session:
        room = await room_for(session, update, actor, svc, " ".join(args) or None)
        roster = await roster_for_room(session, room.id)
        view = await plan.load_view(session, roster, now, now + timedelta(days=15)) \
            if roster else None
        if view is None:
            raise Refusal(tr("roster.errors.empty", room=escape(tr.name(room.title))) + "\n"
                          + tr("roster.edit.usage"))
        text = roster_text(tr, view, now, actor, svc.settings.bot_timezone)
    await reply(update, text)


# --------------------------------------------------------------------------- /roster remind


async def remind_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    svc, tr = services(context), actor.tr
    if in_group(update):
        await reply(update, tr("errors.private_only"))
        return
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        current = plan.shift_offsets(user.preferences or {})
        if not args:
            raise Refusal(tr("roster.remind.current", offsets=_offsets(tr, current))
                          if current else tr("roster.remind.current_off"))
        if normalize(" ".join(args)) in OFF_WORDS:
            offsets: list[int] = []
        else:
            offsets = []
            for arg in " ".join(args).replace(",", " ").replace("、", " ").split():
                minutes = parse_offset(arg)
                if minutes is None or not 0 < minutes <= 7 * 24 * 60:
                    raise Refusal(tr("roster.remind.bad", text=escape(arg)))
                offsets.append(minutes)
            offsets = sorted(set(offsets), reverse=True)
        preferences = dict(user.preferences or {})
        preferences[plan.PREFERENCE] = offsets
        user.preferences = preferences
        await audit(session, "user.shift_reminders", actor=user, subject_type="user",
                    subject_id=user.telegram_id, previous=current, offsets=offsets)
        # A longer offset must not resurrect a reminder whose moment has passed.
        await session.flush()
        rosters = await session.execute(
            select(RosterMember.roster_id).where(
                (RosterMember.user_id == user.id)
                | (RosterMember.telegram_user_id == user.telegram_id)
            ).distinct()
        )
        for roster_id in rosters.scalars():
            await plan.skip_due(session, roster_id, svc.now())
    await svc.rescheduled(plan.NAME)
    await reply(update, tr("roster.remind.saved", offsets=_offsets(tr, offsets))
                if offsets else tr("roster.remind.saved_off"))


def _offsets(tr: Translator, offsets: list[int]) -> str:
    return tr.join(fmt_minutes(tr, o) for o in offsets)


# --------------------------------------------------------------------------- wiring


def register(application: Application) -> None:
    application.add_handler(CommandHandler("roster", roster_command))
    application.add_handler(CommandHandler("swap", swap_command))
    application.add_handler(CallbackQueryHandler(swap_pressed, pattern=rf"^{CB}:\d+:(ok|no)$"))
    application.add_handler(CallbackQueryHandler(edit_pressed,
                                                 pattern=rf"^{EDIT_CB}:\d+:(ok|no)$"))
