"""/start (with an invitation code from a deep link), /help and /lang."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application
from telegram.ext import ApplicationHandlerStop
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import MessageHandler
from telegram.ext import filters

from bot.commands import CommandInfo
from bot.commands import Where
from bot.commands import visible_commands
from bot.services import Actor
from bot.services import services
from handlers.common import CANCELLED
from handlers.common import USED
from handlers.common import Context
from handlers.common import RepliesToDeadPrompt
from handlers.common import all_commands
from handlers.common import close_confirmation
from handlers.common import confirmation
from handlers.common import confirmation_open
from handlers.common import current_actor
from handlers.common import dead_prompt_answered
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import in_group
from handlers.common import keyboard
from handlers.common import offer_confirmation
from handlers.common import refresh_chat_menu
from handlers.common import reply
from handlers.common import unregistered_key
from i18n import LANGUAGES
from i18n import Translator
from storage.access import invitation_by_code
from storage.access import invitation_problem
from storage.access import redeem_invitation
from storage.access import role_after
from storage.access import set_user_language
from storage.access import user_by_telegram_id
from views.buttons import Button
from views.buttons import Style

COMMANDS = [
    CommandInfo("start", None, Where.anywhere, "start.command"),
    CommandInfo("help", None, Where.anywhere, "help.command"),
    CommandInfo("lang", None, Where.private, "lang.command"),
]
LANGUAGE_CALLBACK = "lang:"
# The confirmation asked of an active user before an invitation moves them (common.py).
MOVE, MOVE_CALLBACK = "invitation", "inv:"
# Runs before every feature (conversations sit in group -1).
GUARD_GROUP = -2


def role_and_unit(tr: Translator, actor: Actor) -> dict[str, str]:
    user = actor.user
    assert user is not None
    return {
        "name": escape(user.full_name or str(user.telegram_id)),
        "role": tr(f"roles.{user.role.value}"),
        "unit": escape(tr.name(user.unit.name)) if user.unit else tr("start.no_unit"),
    }


async def start(update: Update, context: Context) -> None:
    actor = await current_actor(update, context)
    code = context.args[0] if context.args else None
    if code and not in_group(update):
        await _redeem(update, context, actor, code)
        return
    tr = actor.tr
    if actor.registered:
        await reply(update, tr("start.welcome_back", **role_and_unit(tr, actor)))
    elif actor.user is not None and not actor.user.active:
        await reply(update, tr(unregistered_key(actor)))
    else:
        await reply(update, tr("start.unregistered"))


async def _redeem(update: Update, context: Context, actor: Actor, code: str) -> None:
    """Someone registered and active is asked first, told where they are now; anyone
    else is linked at once."""
    if actor.registered and await _asked_to_move(update, context, actor, code[:64]):
        return
    await reply(update, await _link(update, context, actor, code))


async def _asked_to_move(update: Update, context: Context, actor: Actor, code: str) -> bool:
    svc, tr, user = services(context), actor.tr, actor.user
    assert user is not None
    async with svc.db.session() as session:
        invitation = await invitation_by_code(session, code)
    if invitation is None or invitation_problem(invitation, svc.now()) is not None:
        return False  # refused (and recorded) by the redemption itself
    new_role = role_after(user, invitation)
    here = role_and_unit(tr, actor)
    if (user.unit_id, user.role) == (invitation.unit_id, new_role):
        await reply(update, tr("start.invitation_same", **here))
        return True
    token = offer_confirmation(context, MOVE, code)
    await reply(update, tr("start.invitation_move", **here, new_role=tr(f"roles.{new_role.value}"),
                           new_unit=escape(tr.name(invitation.unit.name))),
                keyboard([[Button(tr("start.button.move"), f"{MOVE_CALLBACK}y:{token}",
                                  Style.success),
                           (tr("start.button.keep"), f"{MOVE_CALLBACK}n:{token}")]]))
    return True


@guarded(None, Where.private)
async def move_pressed(update: Update, context: Context, actor: Actor) -> None:
    """✅ or ✖️ under the question before an invitation moves someone."""
    query = update.callback_query
    assert query is not None
    answer, _, token = (query.data or "").removeprefix(MOVE_CALLBACK).partition(":")
    if not await confirmation_open(update, context, actor.tr, token, MOVE):
        return
    if answer != "y":
        close_confirmation(context, token, CANCELLED)
        await query.answer()
        await edit_query_message(update, actor.tr("start.invitation_kept", **role_and_unit(
            actor.tr, actor)) if actor.user is not None else actor.tr("start.unregistered"))
        return
    assert context.user_data is not None
    code = confirmation(context, token)["subject"]
    close_confirmation(context, token, USED)
    await query.answer()
    await edit_query_message(update, await _link(update, context, actor, code))


async def _link(update: Update, context: Context, actor: Actor, code: str) -> str:
    """Redeem the invitation; what to tell the person."""
    svc = services(context)
    tg_user = update.effective_user
    assert tg_user is not None
    async with svc.db.session() as session:
        result = await redeem_invitation(
            session,
            code[:64],
            telegram_id=tg_user.id,
            full_name=tg_user.full_name,
            username=tg_user.username,
            language=actor.language,
            now=svc.now(),
        )
    if result.problem is not None:
        return actor.tr(f"start.invitation_{result.problem.value}")
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, tg_user.id)
    linked = Actor(tg_user.id, user, actor.language)
    await refresh_chat_menu(context, tg_user.id, linked, all_commands(context))
    return linked.tr("start.linked", **role_and_unit(linked.tr, linked))


async def help_command(update: Update, context: Context) -> None:
    actor = await current_actor(update, context)
    tr = actor.tr
    commands = visible_commands(all_commands(context), actor.role, in_group=in_group(update))
    lines = [tr("help.header_registered" if actor.registered else "help.header_unregistered")]
    if actor.registered:
        lines.append(tr("help.you_are", **role_and_unit(tr, actor)))
    lines.append("")
    for command in commands:
        lines.append(f"/{command.name} — {escape(command.description(tr))}")
        example = command.example(tr)
        if example and example != f"{command.key}.example":
            lines.append(f"    <i>{escape(example)}</i>")
    if actor.registered and not in_group(update):
        lines += ["", tr("help.plain_text")]
    await reply(update, "\n".join(lines))


def _language_keyboard() -> object:
    return keyboard([[(Translator(lang)("lang.name"), LANGUAGE_CALLBACK + lang)
                      for lang in LANGUAGES]])


@guarded(None, Where.private)
async def lang_command(update: Update, context: Context, actor: Actor) -> None:
    await reply(update, actor.tr("lang.choose"), _language_keyboard())


async def lang_chosen(update: Update, context: Context) -> None:
    query = update.callback_query
    assert query is not None
    language = (query.data or "").removeprefix(LANGUAGE_CALLBACK)
    actor = await current_actor(update, context)
    if language not in LANGUAGES:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    if not actor.registered:
        # Unregistered people get the language for this answer only: nothing is stored.
        await query.answer()
        await edit_query_message(update, Translator(language)("start.unregistered"))
        return
    svc = services(context)
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        await set_user_language(session, user, language)
    switched = Actor(actor.telegram_id, user, language)
    await query.answer()
    await edit_query_message(update, switched.tr("lang.switched"))
    await refresh_chat_menu(context, actor.telegram_id, switched, all_commands(context))


async def empty_button(update: Update, context: Context) -> None:
    """PTB's pattern handlers all match empty callback data: stop it before any of them."""
    actor = await current_actor(update, context)
    assert update.callback_query is not None
    await update.callback_query.answer(actor.tr("errors.stale_button"), show_alert=True)
    raise ApplicationHandlerStop


async def unknown_command(update: Update, context: Context) -> None:
    actor = await current_actor(update, context)
    key = "errors.unknown_command" if actor.registered else unregistered_key(actor)
    await reply(update, actor.tr(key))


async def nothing_to_cancel(update: Update, context: Context) -> None:
    """/cancel when no flow waits: every flow's own /cancel stops the update before this.
    In a group only registered people are answered (others' commands are not ours)."""
    actor = await current_actor(update, context)
    if actor.registered:
        await reply(update, actor.tr("errors.nothing_to_cancel"))
    elif not in_group(update):
        await reply(update, actor.tr(unregistered_key(actor)))


async def not_text(update: Update, context: Context) -> None:
    """A photo, file or sticker outside any conversation: say what the bot can read."""
    actor = await current_actor(update, context)
    await reply(update, actor.tr("errors.text_only" if actor.registered
                                 else unregistered_key(actor)))


def register(application: Application) -> None:
    application.add_handler(
        CallbackQueryHandler(empty_button, pattern=lambda data: not data), group=GUARD_GROUP
    )
    # Before the guided flows of group -1, and taking only what it answers.
    application.add_handler(MessageHandler(
        filters.TEXT & ~filters.COMMAND & RepliesToDeadPrompt(application), dead_prompt_answered),
        group=-1)
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("lang", lang_command))
    application.add_handler(CallbackQueryHandler(lang_chosen, pattern=f"^{LANGUAGE_CALLBACK}"))
    application.add_handler(CallbackQueryHandler(move_pressed, pattern=f"^{MOVE_CALLBACK}[yn]:"))
    application.add_handler(CommandHandler("cancel", nothing_to_cancel))


def register_fallbacks(application: Application) -> None:
    application.add_handler(
        MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, unknown_command)
    )
    application.add_handler(MessageHandler(
        filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.TEXT, not_text))
