"""The bot's own membership of a chat (Telegram's `my_chat_member` updates).

Removed from a duty room or blocked by an officer, the bot stops sending there at once:
the rows waiting for that chat fail instead of being tried. Added back or unblocked, it
sends there again; without this, a chat marked unreachable after one refused send would
stay silent for good. Nobody is answered: there is nobody to answer in a chat the bot
has just left, and joining a chat is announced by /start and the duty-room commands.
"""

from __future__ import annotations

import logging

from telegram import ChatMember
from telegram import ChatMemberRestricted
from telegram import Update
from telegram.ext import Application
from telegram.ext import ChatMemberHandler

from bot.commands import CommandInfo
from bot.services import services
from handlers.common import Context
from storage.access import audit
from storage.chat_status import mark_chat_reachable
from storage.chat_status import mark_chat_unreachable

log = logging.getLogger(__name__)

COMMANDS: list[CommandInfo] = []
REACHING = {ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER}


def can_send(member: ChatMember) -> bool:
    """Whether the bot, with this membership, can post in the chat."""
    if isinstance(member, ChatMemberRestricted):
        return member.is_member and member.can_send_messages
    return member.status in REACHING


async def membership_changed(update: Update, context: Context) -> None:
    change = update.my_chat_member
    if change is None:
        return
    before, after = can_send(change.old_chat_member), can_send(change.new_chat_member)
    if before == after:
        return  # promoted, demoted, still in: nothing changes for delivery
    chat_id, status = change.chat.id, change.new_chat_member.status
    svc = services(context)
    outcome: dict[str, bool | int]
    async with svc.db.session() as session:
        if after:
            outcome = {"was_marked": await mark_chat_reachable(session, chat_id)}
        else:
            reason = f"bot {status} (my_chat_member)"
            outcome = {"failed_rows": await mark_chat_unreachable(
                session, chat_id, reason, now=svc.now())}
        await audit(session, "chat.reachable" if after else "chat.unreachable",
                    actor_telegram_id=change.from_user.id, chat_id=chat_id,
                    subject_type="chat", subject_id=chat_id, status=status, **outcome)
    log.info("chat %s: bot %s; %s %s", chat_id, status,
             "sending there again" if after else "stopped sending there", outcome,
             extra={"chat_id": chat_id})


def register(application: Application) -> None:
    application.add_handler(
        ChatMemberHandler(membership_changed, ChatMemberHandler.MY_CHAT_MEMBER))
