"""/start (with an invitation code from a deep link), /help and /lang."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.commands import CommandInfo, Where, visible_commands
from bot.i18n import LANGUAGES, Translator
from bot.services import Actor, services
from handlers.common import (
    Context,
    all_commands,
    current_actor,
    edit_query_message,
    escape,
    guarded,
    in_group,
    keyboard,
    refresh_chat_menu,
    reply,
)
from storage.access import redeem_invitation, set_user_language, user_by_telegram_id

COMMANDS = [
    CommandInfo("start", None, Where.anywhere, "start.command"),
    CommandInfo("help", None, Where.anywhere, "help.command"),
    CommandInfo("lang", None, Where.private, "lang.command"),
]
LANGUAGE_CALLBACK = "lang:"
# Runs before every feature (conversations sit in group -1).
GUARD_GROUP = -2


def role_and_unit(tr: Translator, actor: Actor) -> dict[str, str]:
    user = actor.user
    assert user is not None
    return {
        "name": escape(user.full_name or str(user.telegram_id)),
        "role": tr(f"roles.{user.role.value}"),
        "unit": escape(user.unit.name) if user.unit else tr("start.no_unit"),
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
    else:
        await reply(update, tr("start.unregistered"))


async def _redeem(update: Update, context: Context, actor: Actor, code: str) -> None:
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
        await reply(update, actor.tr(f"start.invitation_{result.problem.value}"))
        return
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, tg_user.id)
    linked = Actor(tg_user.id, user, actor.language)
    tr = linked.tr
    await reply(update, tr("start.linked", **role_and_unit(tr, linked)))
    await refresh_chat_menu(context, tg_user.id, linked, all_commands(context))


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
    key = "errors.unknown_command" if actor.registered else "errors.unregistered"
    await reply(update, actor.tr(key))


async def not_text(update: Update, context: Context) -> None:
    """A photo, file or sticker outside any conversation: say what the bot can read."""
    actor = await current_actor(update, context)
    await reply(update, actor.tr("errors.text_only" if actor.registered else "errors.unregistered"))


def register(application: Application) -> None:
    application.add_handler(
        CallbackQueryHandler(empty_button, pattern=lambda data: not data), group=GUARD_GROUP
    )
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("lang", lang_command))
    application.add_handler(CallbackQueryHandler(lang_chosen, pattern=f"^{LANGUAGE_CALLBACK}"))


def register_fallbacks(application: Application) -> None:
    application.add_handler(
        MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, unknown_command)
    )
    application.add_handler(MessageHandler(
        filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.TEXT, not_text))
