"""Shared handler plumbing: resolve who is asking, check where and what they may do, reply."""

from __future__ import annotations

import functools
import html
import logging
import re
import secrets
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from copy import deepcopy
from typing import Any
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot
from telegram import BotCommandScopeChat
from telegram import ForceReply
from telegram import Message
from telegram import Update
from telegram import User
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.error import TelegramError
from telegram.ext import Application
from telegram.ext import ApplicationHandlerStop
from telegram.ext import ContextTypes
from telegram.ext.filters import MessageFilter

from bot.commands import CommandInfo
from bot.commands import Where
from bot.commands import menu
from bot.commands import visible_commands
from bot.persistence import write_flow_end
from bot.services import Actor
from bot.services import Services
from bot.services import resolve_actor
from bot.services import services
from core.enums import Role
from core.enums import role_permits
from i18n import language_from_telegram
from storage.access import duty_room_by_chat
from storage.db import submit_once
from views import HTML
from views.buttons import Key
from views.buttons import Markup
from views.buttons import keyboard

log = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE
Created = TypeVar("Created")
Handler = Callable[[Update, Context, Actor], Awaitable[Any]]
TELEGRAM_TEXT_LIMIT = 4096

escape = html.escape


class Refusal(Exception):
    """A polite answer that ends a handler; raised inside a unit of work, it rolls it back."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def in_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


async def may_show_details(session: AsyncSession, update: Update) -> bool:
    """In a group, only a registered duty room sees contact details or request contents."""
    chat = update.effective_chat
    return not in_group(update) or (
        chat is not None and await duty_room_by_chat(session, chat.id) is not None)


def page_count(total: int, size: int) -> int:
    """How many pages of `size` a list of `total` takes (one, even empty)."""
    return max((total + size - 1) // size, 1)


def list_keyboard(items: Sequence[Key], page: int, pages: int, *, previous: str,
                  following: str, page_data: Callable[[int], str]
                  ) -> Markup | None:
    """A numbered list page's buttons (/requests, /notices): one per item shown, four a
    row, then `previous` and `following` where there is a page before or after
    (`page_data` is the callback data of page n)."""
    rows: list[list[Key]] = [list(items[i:i + 4]) for i in range(0, len(items), 4)]
    paging: list[Key] = []
    if page > 0:
        paging.append((previous, page_data(page - 1)))
    if page + 1 < pages:
        paging.append((following, page_data(page + 1)))
    if paging:
        rows.append(paging)
    return keyboard(rows) if rows else None


async def reply(
    update: Update, text: str, markup: Markup | ForceReply | None = None
) -> int | None:
    """Answer in the update's chat (quoting the question in a group).

    Through `do_api_request`, PTB's HTTP stack all the same, but the Message Telegram
    sends back is not rebuilt into objects: no handler uses it, and for a page of
    contact cards with its entities that was a tenth of a lookup's time. The Application's
    Defaults (HTML, no link previews: bot/app.py) do not reach `do_api_request`, hence the
    two parameters here. Returns the id of the message sent."""
    message = update.effective_message
    if message is None:
        return None
    params: dict[str, Any] = {"chat_id": message.chat_id, "text": text[:TELEGRAM_TEXT_LIMIT],
                              **HTML}
    if markup is not None:
        params["reply_markup"] = markup
    if message.is_topic_message and message.message_thread_id is not None:
        params["message_thread_id"] = message.message_thread_id
    if in_group(update):
        params["reply_parameters"] = {"message_id": message.message_id,
                                      "allow_sending_without_reply": True}
    sent = await message.get_bot().do_api_request("sendMessage", api_kwargs=params)
    return sent.get("message_id") if isinstance(sent, dict) else None


async def edit_query_message(update: Update, text: str, markup: Markup | None = None, *,
                             courtesy: bool = False) -> None:
    """Edit the message whose button was pressed; pressing a button whose result is
    already shown (a double tap) changes nothing and is not an error. `courtesy`: the
    edit only refreshes what the message shows, what the press did is done anyway, so a
    message Telegram no longer lets the bot edit (deleted, say) is not an error either."""
    query = update.callback_query
    if query is None:
        return
    if query.inline_message_id is not None:
        where: dict[str, Any] = {"inline_message_id": query.inline_message_id}
    elif query.message is not None:
        where = {"chat_id": query.message.chat.id, "message_id": query.message.message_id}
    else:
        return
    try:
        await edit_message(query.get_bot(), where, text, markup)
    except BadRequest as error:
        if not courtesy and "not modified" not in str(error).lower():
            raise


async def edit_message(bot: Bot, where: dict[str, Any], text: str,
                       markup: Markup | None = None) -> None:
    """Edit a message's text (`where`: its chat_id and message_id, or inline_message_id),
    as `reply` sends: raw parameters, HTML, no link previews, the answer not rebuilt."""
    params: dict[str, Any] = {**where, "text": text[:TELEGRAM_TEXT_LIMIT], **HTML}
    if markup is not None:
        params["reply_markup"] = markup
    await bot.do_api_request("editMessageText", api_kwargs=params)


def pressed(update: Update, tr: Callable[..., str], pattern: re.Pattern[str]) -> re.Match[str]:
    """The pressed button's data as `pattern` reads it; data it cannot read is a stale
    button (a `Refusal`)."""
    query = update.callback_query
    match = pattern.match((query.data or "") if query is not None else "")
    if match is None:
        raise Refusal(tr("errors.stale_button"))
    return match


def message_text(update: Update) -> str:
    """The incoming message's text as typed ('' for a photo, a sticker, a button press)."""
    message = update.effective_message
    return (message.text or "") if message else ""


async def handled(state: int) -> int:
    """Go on in `state`, and stop the update here: the guided flows run in group -1, and
    an answer typed into one must not also reach the plain-text features of later groups."""
    raise ApplicationHandlerStop(state)


async def record_views(context: Context, rows: Sequence[dict[str, Any]]) -> None:
    """Audit what is about to be shown (`storage.access.audit_row`s); returns once it is
    committed, shared with other lookups (bot/viewlog.py)."""
    view_log = services(context).view_log
    assert view_log is not None
    await view_log.record(rows)


async def current_actor(update: Update, context: Context) -> Actor:
    """Who is asking, as of the current data epoch (no query of its own when cached)."""
    svc = services(context)
    person = update.effective_user
    key = _actor_key(person)
    cache = svc.db.cache("actors")
    epoch = await svc.db.epoch.current()
    actor = cache.get(epoch, key)
    if actor is None:
        actor = await svc.db.read(
            lambda session: resolve_actor(session, person, svc.settings, epoch=epoch))
        cache.put(epoch, key, actor)
    return actor


def _actor_key(person: User | None) -> tuple[int, str | None] | None:
    return (person.id, person.language_code) if person else None


def last_known_language(svc: Services, person: User | None) -> str:
    """The person's language without asking the database (it may be what failed): as
    last read, else from Telegram's language code."""
    cache = svc.db.cache("actors")
    actor = cache.get(cache.epoch, _actor_key(person))
    if actor is not None:
        return str(actor.language)
    return language_from_telegram(person.language_code if person else None,
                                  svc.settings.default_language)


def guarded(min_role: Role | None = Role.officer, where: Where = Where.anywhere):
    """Resolve the actor and refuse politely (changing nothing) when they may not act here.

    A `Refusal` the handler raises (its unit of work rolled back) is said the same way:
    in an alert for a button, else as the reply."""

    def decorate(handler: Handler) -> Callable[[Update, Context], Awaitable[Any]]:
        @functools.wraps(handler)
        async def wrapper(update: Update, context: Context) -> Any:
            actor = await current_actor(update, context)
            refusal = _refusal(actor, min_role, where, update)
            if refusal is None:
                try:
                    return await handler(update, context, actor)
                except Refusal as refused:
                    text = refused.text
            else:
                text = actor.tr(refusal)
            if update.callback_query is not None:
                await update.callback_query.answer(text, show_alert=True)
            else:
                await reply(update, text)
            # Answered: no handler of a later group (the unknown-command reply) answers
            # again; a conversation keeps its state.
            raise ApplicationHandlerStop

        return wrapper

    return decorate


def unregistered_key(actor: Actor) -> str:
    """Why an unregistered person is refused: a deactivated account is told so."""
    if actor.user is not None and not actor.user.active:
        return "errors.deactivated"
    return "errors.unregistered"


def _refusal(actor: Actor, min_role: Role | None, where: Where, update: Update) -> str | None:
    if where is Where.private and in_group(update):
        return "errors.private_only"
    if where is Where.group and not in_group(update):
        return "errors.group_only"
    if min_role is not None and not actor.registered:
        return unregistered_key(actor)
    if not role_permits(actor.role, min_role):
        return "errors.not_allowed"
    return None


async def refresh_chat_menu(
    context: Context, chat_id: int, actor: Actor, commands: Sequence[CommandInfo]
) -> None:
    """The command menu of this private chat in the user's language and role."""
    visible = visible_commands(commands, actor.role, in_group=False)
    try:
        await context.bot.set_my_commands(
            menu(visible, actor.tr), scope=BotCommandScopeChat(chat_id)
        )
    except TelegramError as exc:  # a menu is a convenience; never fail the action for it
        log.warning("could not set the command menu of chat %s: %s", chat_id, exc)


COMMANDS_KEY = "commands"


def all_commands(context: Context) -> list[CommandInfo]:
    """Every feature's commands, collected when the application was assembled."""
    return context.bot_data[COMMANDS_KEY]


# --------------------------------------------------------------------------- confirmations

CONFIRMATIONS = "confirmations"
CONFIRMATIONS_KEPT = 32
OPEN, CANCELLED, USED, SUPERSEDED, EXPIRED = "open", "cancelled", "used", "superseded", "expired"
PROMPTS_KEPT = 16  # a draft's prompts remembered (its steps, asked again after a mistake)


def offer_confirmation(context: Context, kind: str, subject: object = "", *,
                       ref: str | None = None, extra: dict[str, Any] | None = None) -> str:
    """A new confirmation of `kind` about `subject`; its token goes into the buttons.

    The book lives in the user's persisted data, so a button is checked against what
    happened since it was shown (cancelled, used, or replaced by a newer offer of the
    same kind and subject) whenever it is pressed, even after a restart. `ref` names the
    prompt message a typed answer replies to, when the answer is typed, not pressed;
    `extra` is what the confirmed action needs (JSON), read back with `confirmation`."""
    assert context.user_data is not None
    book: dict[str, dict[str, str]] = context.user_data.setdefault(CONFIRMATIONS, {})
    for entry in book.values():
        if entry["kind"] == kind and entry["subject"] == str(subject) and entry["state"] == OPEN:
            entry["state"] = SUPERSEDED
    token = secrets.token_hex(4)
    book[token] = {"kind": kind, "subject": str(subject), "state": OPEN, "ref": ref or "",
                   "extra": extra or {}}
    # Forget the oldest that are over first: an open one may still be pressed.
    over = [t for t, entry in book.items() if entry["state"] != OPEN]
    oldest_first = over + [t for t in book if t not in over]
    for old in oldest_first[:max(len(book) - CONFIRMATIONS_KEPT, 0)]:
        del book[old]
    return token


def confirmation(context: Context, token: str) -> dict[str, Any]:
    """The entry of an offered confirmation: its subject and extra."""
    return (context.user_data or {}).get(CONFIRMATIONS, {}).get(token) or {}


def confirmation_state(context: Context, token: str, kind: str) -> str | None:
    """OPEN, CANCELLED, USED, SUPERSEDED or EXPIRED; None for a token this user was never
    offered."""
    entry = (context.user_data or {}).get(CONFIRMATIONS, {}).get(token)
    return entry["state"] if entry and entry["kind"] == kind else None


def prompt_ref(chat_id: int, message_id: int) -> str:
    """How a confirmation names its prompt message (a typed answer replies to it)."""
    return f"{chat_id}:{message_id}"


def note_prompt(context: Context, token: str, chat_id: int, message_id: int | None) -> None:
    """A prompt with buttons was sent for the confirmation `token` (a guided flow's step):
    a later press of them is answered by what became of it (`prompt_token`)."""
    entry = (context.user_data or {}).get(CONFIRMATIONS, {}).get(token)
    if entry is not None and message_id is not None:
        prompts = [*entry.get("prompts", []), prompt_ref(chat_id, message_id)]
        entry["prompts"] = prompts[-PROMPTS_KEPT:]


def prompt_token(context: Context, message: object) -> str | None:
    """The confirmation a pressed prompt was sent for (`note_prompt`), if remembered."""
    if not isinstance(message, Message):
        return None
    ref = prompt_ref(message.chat_id, message.message_id)
    for token, entry in (context.user_data or {}).get(CONFIRMATIONS, {}).items():
        if ref in entry.get("prompts", ()):
            return str(token)
    return None


def _dead_prompt(user_data: Any, message: Message | None) -> dict[str, Any] | None:
    """The confirmation whose prompt `message` replies to, when it is no longer open."""
    replied = message.reply_to_message if message else None
    if replied is None or not user_data:
        return None
    ref = prompt_ref(replied.chat_id, replied.message_id)
    for entry in user_data.get(CONFIRMATIONS, {}).values():
        if entry.get("ref") == ref:
            return entry if entry["state"] != OPEN else None
    return None


class RepliesToDeadPrompt(MessageFilter):
    """Text replying to a prompt of the sender's that was cancelled, answered or replaced.

    A filter, not a check in the callback: only these replies are taken, every other
    message goes on to the conversations after it in the same group."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        super().__init__(name="RepliesToDeadPrompt")
        self.user_data = application.user_data

    def filter(self, message: Message) -> bool:
        user = message.from_user
        return user is not None and _dead_prompt(self.user_data.get(user.id), message) is not None


async def dead_prompt_answered(update: Update, context: Context) -> None:
    """An answer typed to a prompt already over: not taken, not a lookup; say why."""
    entry = _dead_prompt(context.user_data, update.effective_message)
    if entry is not None:
        tr = (await current_actor(update, context)).tr
        await reply(update, dead_confirmation_text(tr, entry["state"], entry["kind"]))
    raise ApplicationHandlerStop


def close_confirmation(context: Context, token: str, state: str) -> None:
    """Mark an open confirmation CANCELLED, USED, SUPERSEDED or EXPIRED: its buttons are
    dead from now on."""
    _close(context.user_data or {}, token, state)


def _close(user_data: dict[str, Any], token: str, state: str) -> None:
    entry = user_data.get(CONFIRMATIONS, {}).get(token)
    if entry is not None and entry["state"] == OPEN:
        entry["state"] = state


def end_draft(context: Context, token: str, draft_key: str) -> None:
    """The draft is stored: its confirmation is used up and the draft is gone."""
    assert context.user_data is not None
    _end(context.user_data, token, draft_key)


def _end(user_data: dict[str, Any], token: str, draft_key: str) -> None:
    _close(user_data, token, USED)
    user_data.pop(draft_key, None)


async def submit_ending_flow(update: Update, context: Context, *, flow: str, token: str,
                             draft_key: str, work: Callable[[AsyncSession], Awaitable[Created]]
                             ) -> Created:
    """Store what a guided flow's draft creates (once: `submit_once`) and, in the same
    transaction, the flow's end with its draft gone; then end it in memory too. A crash
    after the commit cannot bring back a confirm step whose draft is already stored,
    and a failure before it leaves the draft as it was."""
    assert context.user_data is not None
    ended = deepcopy(context.user_data)
    _end(ended, token, draft_key)

    async def unit(session: AsyncSession) -> Created:
        created = await work(session)
        await write_flow_end(session, update, context.application, flow, ended)
        return created

    created = await submit_once(services(context).db, unit)
    end_draft(context, token, draft_key)
    return created


def dead_confirmation_text(tr: Callable[..., str], state: str | None, kind: str) -> str:
    """What a confirmation of `kind` that is no longer open says when pressed."""
    key = {CANCELLED: "cancelled", USED: "used", SUPERSEDED: "superseded",
           EXPIRED: "expired"}.get(state or "", "unknown")
    return tr(f"confirm.{key}", what=tr(f"confirm.what.{kind}"))


async def confirmation_open(update: Update, context: Context, tr: Callable[..., str],
                            token: str, kind: str) -> bool:
    """True when the pressed confirmation is still open; else say why it is dead (its
    button changes nothing; confirm.what.<kind> names the action) and return False."""
    state = confirmation_state(context, token, kind)
    if state == OPEN:
        return True
    text = dead_confirmation_text(tr, state, kind)
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    else:
        await reply(update, text)
    return False


async def dead_button(update: Update, context: Context, tr: Callable[..., str],
                      token: str, *, step: bool = False) -> bool:
    """A button of a confirmation of any kind that is over: say why and return True.
    `step`: the button is one of a draft's steps, not its confirmation (a submitted
    draft's step button was never used itself)."""
    entry = (context.user_data or {}).get(CONFIRMATIONS, {}).get(token)
    query = update.callback_query
    if entry is None or entry["state"] == OPEN or query is None:
        return False
    text = dead_confirmation_text(tr, entry["state"], entry["kind"])
    if step and entry["state"] == USED:
        text = tr("confirm.draft_used", what=tr(f"confirm.what.{entry['kind']}"))
    await query.answer(text, show_alert=True)
    return True
