"""Assistance requests in chat: /request (guided, one-shot, or a number to view it),
the buttons on a request (接收 拒绝 转办 完成 撤回), /requests, /export requests, /stats.

Each handler decides inside one unit of work and talks to Telegram only after it
commits. Messages to anyone but the person acting (the duty room's card, the
requester's notices) are outbox rows written by services/requests.py in that same
unit of work. The guided flow and the reason/unit prompts after a button are
persistent conversations: a restart of the bot in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import warnings
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from telegram import ForceReply, InlineKeyboardMarkup, Message, Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import reports
from bot.commands import CommandInfo, Where
from bot.services import Actor, Services, services
from core import requests as rules
from core.clock import time_zone
from core.enums import Role, Urgency
from core.request_checks import Draft, DraftProblem, Policy, Verdict
from core.requests import Action, Filters, Period, Press, Scope
from core.timeparse import DeadlineError, parse_deadline
from handlers.common import (
    CANCELLED,
    SUPERSEDED,
    USED,
    Context,
    close_confirmation,
    confirmation_open,
    current_actor,
    dead_button,
    draft_of,
    edit_query_message,
    end_draft,
    escape,
    guarded,
    handled,
    in_group,
    keyboard,
    may_show_details,
    message_text,
    offer_confirmation,
    prompt_ref,
    reply,
    submit_ending_flow,
)
from i18n import Translator
from services import requests as service
from storage import requests as store
from storage.access import audit, user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.models import Mechanism, Unit
from views import requests as render
from views.request_reports import export_table

COMMANDS = [
    CommandInfo("request", Role.officer, Where.anywhere, "requests.command"),
    CommandInfo("requests", Role.officer, Where.anywhere, "requests.list_command"),
    CommandInfo("export", Role.officer, Where.private, "requests.export_command"),
    CommandInfo("stats", Role.coordinator, Where.private, "requests.stats_command"),
]

DRAFT, PENDING, LISTING = "rq_draft", "rq_pending", "rq_list"
FLOW = "requests_new"  # the guided flow's name, as persisted
# Confirmation kind of a draft's summary (handlers/common.py) and the token buttons carry.
SUBMIT = "request_submit"
TOKEN = "[0-9a-f]{8}"
TARGET, MECHANISM, URGENCY, SUBJECT, DETAILS, ATTACH, DEADLINE, CONFIRM = range(8)
NOTE, UNIT = 20, 21
END = ConversationHandler.END
NEW, ACT, LIST, VIEW = "rqn", "rqx", "rql", "rqv"
# A database id in button data: at most 9 digits, so a forged one cannot overflow
# PostgreSQL's integer columns.
DB_ID = r"(\d{1,9})"
# A flow left alone this long is over: a later message is not taken as its answer.
DRAFT_TTL = timedelta(hours=6)
PENDING_TTL = timedelta(minutes=30)
DEFAULT_PERIOD = timedelta(days=30)
SPLIT_UNITS = re.compile(r"[\s、，,;；/+]+")
EXPORT_WORDS = ("requests", "request", "请求", "請求", "协作请求", "協作請求")
# /export is shared by name with other features' exports: only ours (or a bare /export,
# which gets the usage) reaches this module.
EXPORT_FILTER = filters.Regex(
    r"^/export(@\w+)?(\s*$|\s+(" + "|".join(EXPORT_WORDS) + r")(\s|$))"
)


def _policy(svc: Services) -> Policy:
    return Policy.from_settings(svc.settings)


def _zone_name(svc: Services, actor: Actor) -> str:
    unit = actor.user.unit if actor.user is not None else None
    return (unit.timezone if unit is not None and unit.timezone else None) or \
        svc.settings.bot_timezone


def _zone(svc: Services, actor: Actor) -> Any:
    return time_zone(_zone_name(svc, actor), svc.settings.bot_timezone)


# =========================================================================== new request


def _fresh_draft(context: Context, now: datetime) -> dict[str, Any]:
    assert context.user_data is not None
    context.user_data[DRAFT] = {"targets": [], "attachments": [], "started": now.isoformat(),
                                "token": offer_confirmation(context, SUBMIT),
                                "id": uuid.uuid4().hex}
    return context.user_data[DRAFT]


def _draft_alive(context: Context, now: datetime) -> dict[str, Any] | None:
    draft = (context.user_data or {}).get(DRAFT)
    if not draft or "started" not in draft:
        return None
    if now - datetime.fromisoformat(draft.get("touched") or draft["started"]) > DRAFT_TTL:
        assert context.user_data is not None
        context.user_data.pop(DRAFT, None)
        return None
    draft["touched"] = now.isoformat()
    return draft


def _next_step(draft: dict[str, Any]) -> int:
    if draft.get("editing"):
        return CONFIRM
    if not draft.get("targets") or not draft.get("targets_done"):
        return TARGET
    if draft.get("mechanism") is None:
        return MECHANISM
    if draft.get("urgency") is None:
        return URGENCY
    if not draft.get("subject"):
        return SUBJECT
    if not draft.get("quick"):
        if "details" not in draft:
            return DETAILS
        if not draft.get("attachments_done"):
            return ATTACH
        if "reply_due" not in draft:
            return DEADLINE
    return CONFIRM


def _quit_button(tr: Translator, draft: dict[str, Any]) -> tuple[str, str]:
    """✖️ 取消 of one draft: it cancels that draft only."""
    token = draft.get("token")
    return tr("requests.button.quit"), f"{NEW}:quit:{token}" if token else f"{NEW}:quit"


async def _unit_names(svc: Services, ids: list[int]) -> dict[int, Unit]:
    if not ids:
        return {}
    async with svc.db.session() as session:
        return {unit_id: unit for unit_id in ids
                if (unit := await session.get(Unit, unit_id)) is not None}


async def _target_prompt(
    svc: Services, actor: Actor, draft: dict[str, Any], notes: list[str] | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    tr = actor.tr
    chosen = await _unit_names(svc, draft["targets"])
    async with svc.db.session() as session:
        offered = await store.peer_units(session, actor.user.unit_id if actor.user else None)
    lines = [*(notes or []), tr("requests.new.ask_target")]
    if chosen:
        lines.append(tr("requests.new.targets_chosen",
                        units=tr.join(escape(tr.name(u.name)) for u in chosen.values())))
        lines.append(tr("requests.new.ask_more_targets"))
    options = list(offered) + [u for u in chosen.values() if u.id not in {o.id for o in offered}]
    buttons = [(("✅ " if unit.id in chosen else "") + unit.short_name, f"{NEW}:t:{unit.id}")
               for unit in options]
    rows = [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    rows.append([(tr("requests.button.next"), f"{NEW}:next"), _quit_button(tr, draft)])
    return "\n".join(lines), keyboard(rows)


async def _mechanism_rows(svc: Services, tr: Translator, draft: dict[str, Any]
                          ) -> list[list[tuple[str, str]]]:
    async with svc.db.session() as session:
        found = await store.mechanisms(session)
    buttons = [(m.name, f"{NEW}:m:{m.id}") for m in found]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return [*rows, [_quit_button(tr, draft)]]


async def _summary(svc: Services, actor: Actor, draft: dict[str, Any]) -> str:
    tr, tz = actor.tr, _zone(svc, actor)
    units = await _unit_names(svc, draft["targets"])
    async with svc.db.session() as session:
        mechanism = await session.get(Mechanism, draft["mechanism"]) if draft.get(
            "mechanism") else None
    urgency = Urgency(draft["urgency"])
    due = draft.get("reply_due")
    ack = _policy(svc).ack_minutes[urgency.value]
    details = draft.get("details") or ""
    if len(details) > 300:
        details = details[:300] + "…"
    return tr(
        "requests.new.summary",
        units=tr.join(escape(tr.name(u.name)) for u in units.values()),
        mechanism=escape(mechanism.name) if mechanism else tr("requests.new.none"),
        urgency=render.urgency_label(tr, urgency),
        subject=escape(draft["subject"]),
        details=escape(details) or tr("requests.new.none"),
        attachments=len(draft.get("attachments") or []) or tr("requests.new.none"),
        deadline=render.local_time(datetime.fromisoformat(due), tz, with_year=True) if due
        else tr("requests.new.none"),
        ack=render.duration(tr, timedelta(minutes=ack)),
    ) + "\n\n" + tr("requests.new.confirm_hint")


async def _ask(update: Update, context: Context, actor: Actor, step: int,
               notes: list[str] | None = None) -> int:
    """Send the prompt of `step` (after any notes) and stay there."""
    svc, tr, draft = services(context), actor.tr, draft_of(context, DRAFT)
    prefix = "\n".join(notes or [])
    prefix = prefix + "\n\n" if prefix else ""
    quit_row = [_quit_button(tr, draft)]
    if step == TARGET:
        text, markup = await _target_prompt(svc, actor, draft, notes)
        await reply(update, text, markup)
    elif step == MECHANISM:
        await reply(update, prefix + tr("requests.new.ask_mechanism"),
                    keyboard(await _mechanism_rows(svc, tr, draft)))
    elif step == URGENCY:
        buttons = [(render.urgency_label(tr, u), f"{NEW}:u:{u.value}") for u in rules.URGENCY_ORDER]
        await reply(update, prefix + tr("requests.new.ask_urgency"), keyboard([buttons, quit_row]))
    elif step == SUBJECT:
        await reply(update, prefix + tr("requests.new.ask_subject", limit=rules.SUBJECT_MAX),
                    keyboard([quit_row]))
    elif step == DETAILS:
        await reply(update, prefix + tr("requests.new.ask_details", limit=rules.DETAILS_MAX),
                    keyboard([[(tr("requests.button.skip"), f"{NEW}:skip"), quit_row[0]]]))
    elif step == ATTACH:
        await reply(update, prefix + tr("requests.new.ask_attachments",
                                        limit=rules.ATTACHMENTS_MAX),
                    keyboard([[(tr("requests.button.done"), f"{NEW}:done"), quit_row[0]]]))
    elif step == DEADLINE:
        await reply(update, prefix + tr("requests.new.ask_deadline", zone=_zone_name(svc, actor)),
                    keyboard([[(tr("requests.button.no_deadline"), f"{NEW}:nodl"),
                               _quit_button(tr, draft)]]))
    else:
        step = CONFIRM
        draft.pop("editing", None)
        token = draft.get("token")
        await reply(update, prefix + await _summary(svc, actor, draft), keyboard([
            [(tr("requests.button.submit"), f"{NEW}:submit:{token}"), quit_row[0]],
            [(tr("requests.button.edit_details"), f"{NEW}:edit:details:{token}"),
             (tr("requests.button.edit_deadline"), f"{NEW}:edit:deadline:{token}")],
        ]))
    return await handled(step)


async def _advance(update: Update, context: Context, actor: Actor,
                   notes: list[str] | None = None) -> int:
    return await _ask(update, context, actor, _next_step(draft_of(context, DRAFT)), notes)


async def _closing(update: Update, tr: Translator, choice: str) -> None:
    """After a button: show the choice in place of the prompt's buttons."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    message = query.message
    base = message.text_html if isinstance(message, Message) and message.text else ""
    await edit_query_message(update, f"{base}\n\n▶ {choice}" if base else f"▶ {choice}",
                             courtesy=True)


# --------------------------------------------------------------------------- /request


@guarded(Role.officer)
async def request_command(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    text = " ".join(context.args or []).strip()
    number = rules.parse_number(text) if text else None
    if number is None and context.args:
        number = rules.parse_number(context.args[0])
    if number is None and len(context.args or []) == 1 and (
            sequence := rules.parse_sequence(text)) is not None:
        # The short number a /requests button shows: the latest request with it.
        async with svc.db.session() as session:
            number = await store.number_of_sequence(session, sequence) or \
                rules.format_number(svc.now().astimezone(_zone(svc, actor)).year, sequence)
    if number is not None:
        await _show(update, context, actor, number=number)
        return await handled(END)
    if in_group(update):
        await reply(update, tr("requests.new.group_only_view"))
        return await handled(END)
    if actor.user is None or actor.user.unit_id is None:
        await reply(update, tr("requests.new.no_unit"))
        return await handled(END)
    draft = _fresh_draft(context, svc.now())
    if not context.args:
        return await _ask(update, context, actor, TARGET)
    notes = await _one_shot(svc, actor, draft, list(context.args))
    return await _advance(update, context, actor, notes)


async def _one_shot(svc: Services, actor: Actor, draft: dict[str, Any],
                    words: list[str]) -> list[str]:
    """`/request 云南 治安管控互动 特急 主题…`: targets first, then mechanism and urgency
    in either order, the rest is the subject. Returns notes about what was not understood
    (the flow then asks for exactly what is missing)."""
    tr = actor.tr
    draft["quick"] = True
    notes: list[str] = []
    async with svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(words[0]) if p]:
            notes += await _add_target(session, tr, actor, draft, part)
        index = 1
        # More units, space-separated: only words that name exactly one unit.
        while index < len(words) and rules.parse_urgency(words[index]) is None and len(
                exact := await store.resolve_units(session, words[index], exact_only=True)) == 1:
            notes += _toggle_target(tr, actor, draft, exact[0], add_only=True)
            index += 1
        target_notes = list(notes)
        first_flag = index
        while index < len(words) and index < first_flag + 2:
            word = words[index]
            before_urgency = draft.get("urgency") is None and index + 1 < len(words) and \
                rules.parse_urgency(words[index + 1]) is not None
            if draft.get("urgency") is None and (urgency := rules.parse_urgency(word)):
                draft["urgency"] = urgency.value
            elif draft.get("mechanism") is None and (
                    mechanism := await store.find_mechanism(session, word)):
                draft["mechanism"] = mechanism.id
            elif draft.get("mechanism") is None and (offered := await store.mechanism_meant(
                    session, word, before_urgency=before_urgency)) is not None:
                # Refused with the list (the flow then asks with buttons), not taken
                # as the start of the subject.
                notes.append(tr("requests.new.unknown_mechanism_word", query=escape(word[:40]),
                                names=tr.join(escape(m.name) for m in offered)))
            else:
                break
            index += 1
    if draft["targets"] and not target_notes:
        draft["targets_done"] = True
    subject = rules.clean_line(" ".join(words[index:]))
    if subject:
        if problem := rules.text_problem(subject, rules.SUBJECT_MAX):
            notes.append(tr(f"requests.new.subject_{problem.value}", length=len(subject),
                            limit=rules.SUBJECT_MAX))
        else:
            draft["subject"] = subject
    return notes


async def _add_target(session: Any, tr: Translator, actor: Actor, draft: dict[str, Any],
                      query: str) -> list[str]:
    """Add the unit `query` names; notes when it names none, several, or one's own."""
    units = await store.resolve_units(session, query)
    if not units:
        return [tr("requests.new.unknown_unit", query=escape(query))]
    if len(units) > 1:
        draft["candidates"] = [u.id for u in units]
        return [tr("requests.new.ambiguous_unit", query=escape(query)) + " " +
                tr.join(escape(tr.name(u.name)) for u in units)]
    return _toggle_target(tr, actor, draft, units[0], add_only=True)


def _toggle_target(tr: Translator, actor: Actor, draft: dict[str, Any], unit: Unit,
                   *, add_only: bool = False) -> list[str]:
    targets: list[int] = draft.setdefault("targets", [])
    if actor.user is not None and unit.id == actor.user.unit_id:
        return [tr("requests.new.own_unit", unit=escape(unit.name))]
    if unit.id in targets:
        if not add_only:
            targets.remove(unit.id)
        return []
    if len(targets) >= rules.TARGETS_MAX:
        return [tr("requests.new.too_many_targets", limit=rules.TARGETS_MAX)]
    targets.append(unit.id)
    return []


# --------------------------------------------------------------------------- steps


def _live(context: Context, svc: Services) -> dict[str, Any] | None:
    return _draft_alive(context, svc.now())


async def _expired(update: Update, tr: Translator) -> int:
    """The flow was abandoned long ago: end it. A button says so; a typed message is
    left to the other features (it was not meant for this flow)."""
    if update.callback_query is not None:
        await update.callback_query.answer(tr("requests.new.expired"), show_alert=True)
        return await handled(END)
    return END


@guarded(Role.officer, Where.private)
async def target_typed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    notes: list[str] = []
    async with svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(message_text(update)) if p]:
            notes += await _add_target(session, tr, actor, draft, part)
    if draft.get("candidates"):
        units = await _unit_names(svc, draft.pop("candidates"))
        rows = [[(u.name, f"{NEW}:t:{u.id}")] for u in units.values()]
        rows.append([(tr("requests.button.next"), f"{NEW}:next"), _quit_button(tr, draft)])
        await reply(update, "\n".join(notes), keyboard(rows))
        return await handled(TARGET)
    text, markup = await _target_prompt(svc, actor, draft, notes)
    await reply(update, text, markup)
    return await handled(TARGET)


@guarded(Role.officer, Where.private)
async def target_pressed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    data = query.data or ""
    if data == f"{NEW}:next":
        if not draft.get("targets"):
            await query.answer(tr("requests.new.no_target_yet"), show_alert=True)
            return await handled(TARGET)
        draft["targets_done"] = True
        units = await _unit_names(svc, draft["targets"])
        await _closing(update, tr, tr.join(escape(tr.name(u.name)) for u in units.values()))
        return await _advance(update, context, actor)
    match = re.fullmatch(rf"{NEW}:t:{DB_ID}", data)
    unit = (await _unit_names(svc, [int(match.group(1))])).get(int(match.group(1))) \
        if match else None
    if unit is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return await handled(TARGET)
    notes = _toggle_target(tr, actor, draft, unit)
    await query.answer(notes[0] if notes else None, show_alert=bool(notes))
    text, markup = await _target_prompt(svc, actor, draft)
    await edit_query_message(update, text, markup, courtesy=True)
    return await handled(TARGET)


@guarded(Role.officer, Where.private)
async def mechanism_chosen(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    query = update.callback_query
    match = re.fullmatch(rf"{NEW}:m:{DB_ID}", query.data or "") if query else None
    async with svc.db.session() as session:
        if query is not None:
            mechanism = await session.get(Mechanism, int(match.group(1))) if match else None
        else:
            mechanism = await store.find_mechanism(session, message_text(update))
    if mechanism is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(MECHANISM)
        return await _ask(update, context, actor, MECHANISM, [
            tr("requests.new.unknown_mechanism", query=escape(message_text(update)[:40]))])
    draft["mechanism"] = mechanism.id
    await _closing(update, tr, escape(mechanism.name))
    return await _advance(update, context, actor)


@guarded(Role.officer, Where.private)
async def urgency_chosen(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    query = update.callback_query
    raw = (query.data or "").removeprefix(f"{NEW}:u:") if query else message_text(update)
    urgency = Urgency(raw) if query and raw in Urgency.__members__ else (
        None if query else rules.parse_urgency(raw))
    if urgency is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(URGENCY)
        return await _ask(update, context, actor, URGENCY, [
            tr("requests.new.unknown_urgency", query=escape(raw[:40]))])
    draft["urgency"] = urgency.value
    await _closing(update, tr, render.urgency_label(tr, urgency))
    return await _advance(update, context, actor)


@guarded(Role.officer, Where.private)
async def subject_typed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    subject = rules.clean_line(message_text(update))
    problem = rules.text_problem(subject, rules.SUBJECT_MAX)
    if problem is not None:
        await reply(update, tr(f"requests.new.subject_{problem.value}", length=len(subject),
                               limit=rules.SUBJECT_MAX))
        return await handled(SUBJECT)
    draft["subject"] = subject
    return await _advance(update, context, actor)


@guarded(Role.officer, Where.private)
async def details_given(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    if update.callback_query is not None:
        draft["details"] = ""
        await _closing(update, tr, tr("requests.button.skip"))
        return await _advance(update, context, actor)
    details = rules.clean_block(message_text(update))
    if len(details) > rules.DETAILS_MAX:
        await reply(update, tr("requests.new.details_too_long", length=len(details),
                               limit=rules.DETAILS_MAX))
        return await handled(DETAILS)
    if not details:
        await reply(update, tr("requests.new.text_expected"))
        return await handled(DETAILS)
    draft["details"] = details
    return await _advance(update, context, actor)


def _attachment_of(message: Message | None) -> dict[str, Any] | None:
    if message is None:
        return None
    if message.photo:
        return {"type": "photo", "file_id": message.photo[-1].file_id}
    if message.document:
        return {"type": "document", "file_id": message.document.file_id,
                "name": message.document.file_name or ""}
    return None


def _not_text(state: int) -> Any:
    """A photo, sticker or file where a typed answer is expected: say so, stay."""

    @guarded(Role.officer, Where.private)
    async def not_text(update: Update, context: Context, actor: Actor) -> int:
        if _live(context, services(context)) is None:
            return await _expired(update, actor.tr)
        await reply(update, actor.tr("requests.new.text_expected"))
        return await handled(state)

    return not_text


def _attachment_handler(state: int) -> Any:
    @guarded(Role.officer, Where.private)
    async def attachment_sent(update: Update, context: Context, actor: Actor) -> int:
        return await _attach(update, context, actor, state)

    return attachment_sent


async def _attach(update: Update, context: Context, actor: Actor, state: int) -> int:
    """A photo or document for the draft (in the attachment step, or at the summary)."""
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    attachment = _attachment_of(update.effective_message)
    attachments: list[dict[str, Any]] = draft.setdefault("attachments", [])
    if attachment is None:
        await reply(update, tr("requests.new.attachment_expected"))
        return await handled(state)
    if len(attachments) >= rules.ATTACHMENTS_MAX:
        await reply(update, tr("requests.new.too_many_attachments", limit=rules.ATTACHMENTS_MAX))
        return await handled(state)
    attachments.append(attachment)
    await reply(update, tr("requests.new.attachment_added", n=len(attachments)))
    return await handled(state)


@guarded(Role.officer, Where.private)
async def attachments_done(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    draft["attachments_done"] = True
    count = len(draft.get("attachments") or [])
    await _closing(update, tr, tr("requests.new.attachment_added", n=count) if count
                   else tr("requests.button.skip"))
    return await _advance(update, context, actor)


@guarded(Role.officer, Where.private)
async def deadline_given(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    if update.callback_query is not None:
        draft["reply_due"] = None
        await _closing(update, tr, tr("requests.button.no_deadline"))
        return await _advance(update, context, actor)
    text = message_text(update).strip()
    try:
        due = parse_deadline(text, svc.now(), _zone_name(svc, actor))
    except DeadlineError as error:
        key = {"in_the_past": "deadline_past", "too_far": "deadline_too_far"}.get(
            error.code, "deadline_invalid")
        await reply(update, tr(f"requests.new.{key}", text=escape(text[:40])))
        return await handled(DEADLINE)
    draft["reply_due"] = due.isoformat()
    return await _advance(update, context, actor)


@guarded(Role.officer, Where.private)
async def confirm_pressed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    draft = _live(context, svc)
    if draft is None:
        return await _expired(update, tr)
    data, _, token = (query.data or "").rpartition(":")
    if not await confirmation_open(update, context, tr, token, SUBMIT):
        return await handled(CONFIRM)
    if data in (f"{NEW}:edit:details", f"{NEW}:edit:deadline"):
        draft["editing"] = True
        await query.answer()
        return await _ask(update, context, actor, DETAILS if data.endswith("details")
                          else DEADLINE)
    if data != f"{NEW}:submit" or token != draft.get("token"):
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return await handled(CONFIRM)
    return await _submit(update, context, actor, draft)


@guarded(Role.officer, Where.private)
async def review_typed(update: Update, context: Context, actor: Actor) -> int:
    """Text at the summary: not a lookup; say what this step expects and show it again."""
    if _live(context, services(context)) is None:
        return await _expired(update, actor.tr)
    return await _ask(update, context, actor, CONFIRM,
                      [actor.tr("requests.new.review_expects_button")])


async def _submit(update: Update, context: Context, actor: Actor, draft: dict[str, Any]) -> int:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    due = draft.get("reply_due")
    request_draft = Draft(
        target_unit_ids=list(draft["targets"]), mechanism_id=draft.get("mechanism"),
        urgency=Urgency(draft["urgency"]), subject=draft["subject"],
        details=draft.get("details") or "", attachments=list(draft.get("attachments") or []),
        reply_due_at=datetime.fromisoformat(due) if due else None,
        submission_key=draft.get("id"),
    )

    async def create(session: AsyncSession) -> tuple[service.Created, dict[int, str | None]]:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        created = await service.create_requests(session, request_draft, actor=user,
                                                now=svc.now(), policy=_policy(svc))
        return created, {r.to_unit_id: r.to_unit.duty_phone for r, _ in created.undelivered}

    try:
        created, phones = await submit_ending_flow(
            update, context, flow=FLOW, token=draft.get("token") or "", draft_key=DRAFT,
            work=create)
    except DraftProblem as problem:
        await query.answer()
        return await _ask(update, context, actor, CONFIRM, [
            tr(f"requests.new.problem.{problem.code}", **problem.values)])
    except AlreadySubmitted as done:
        end_draft(context, draft.get("token") or "", DRAFT)
        await query.answer()
        await reply(update, tr("requests.new.already_submitted", numbers=tr.join(
            f"<code>{number}</code>" for number in done.numbers)))
        return await handled(END)
    svc.wake_delivery()
    await svc.rescheduled("requests")
    await query.answer()
    shown = query.message.text_html if isinstance(query.message, Message) \
        and query.message.text else ""
    await edit_query_message(update, shown + "\n\n▶ " + tr("requests.button.submit"),
                             courtesy=True)
    lines = [tr("requests.new.created")]
    lines += [tr("requests.new.created_line", number=f"<code>{r.number}</code>",
                 unit=escape(r.to_unit.name)) for r in created.requests]
    first = created.requests[0]
    lines.append(tr("requests.new.ack_hint",
                    ack=render.duration(tr, first.ack_due_at - first.created_at)))
    for request, told in created.undelivered:
        lines.append(tr("requests.new.created_undelivered", unit=escape(request.to_unit.name),
                        count=told, phone=escape(phones.get(request.to_unit_id) or "—")))
    await reply(update, "\n".join(lines))
    return await handled(END)


async def quit_flow(update: Update, context: Context) -> int:
    """`取消` button or /cancel: leave the flow, nothing stored. The button of a draft
    already over changes nothing."""
    actor_tr = await _tr(update, context)
    assert context.user_data is not None
    query = update.callback_query
    token = (query.data or "").removeprefix(f"{NEW}:quit").lstrip(":") if query else ""
    if token and not await confirmation_open(update, context, actor_tr, token, SUBMIT):
        raise ApplicationHandlerStop  # whatever is in progress goes on as it was
    close_confirmation(context, (context.user_data.get(DRAFT) or {}).get("token") or "",
                       CANCELLED)
    context.user_data.pop(DRAFT, None)
    if update.callback_query is not None:
        await update.callback_query.answer()
        await edit_query_message(update, actor_tr("requests.new.cancelled"), courtesy=True)
    else:
        await reply(update, actor_tr("requests.new.cancelled"))
    return await handled(END)


async def _tr(update: Update, context: Context) -> Translator:
    return (await current_actor(update, context)).tr


async def stale_flow_button(update: Update, context: Context) -> None:
    """A button of a flow that is not waiting for it: a confirmation that is over says
    why, anything else that the flow has expired."""
    query = update.callback_query
    assert query is not None
    tr = await _tr(update, context)
    if not await dead_button(update, context, tr, (query.data or "").rpartition(":")[2]):
        await query.answer(tr("requests.new.expired"), show_alert=True)


# =========================================================================== buttons


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
    svc, tr, tz = services(context), actor.tr, _zone(services(context), actor)
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
        units = await store.resolve_units(session, text)
    if not units:
        await reply(update, tr("requests.new.unknown_unit", query=escape(text[:40])))
        return await handled(UNIT)
    if len(units) > 1:
        token = (context.user_data or {}).get(PENDING, {}).get("token", "")
        rows = [[(u.name, f"{ACT}:u:{u.id}:{token}")] for u in units]
        await reply(update, tr("requests.act.transfer_choose", query=escape(text[:40])),
                    keyboard([*rows, [(tr("requests.button.quit"), f"{ACT}:quit:{token}")]]))
        return await handled(UNIT)
    return await _apply(update, context, actor, press, unit_id=units[0].id)


async def _apply(update: Update, context: Context, actor: Actor, press: Press, *,
                 note: str | None = None, unit_id: int | None = None) -> int:
    """Make the change (locked, version-checked); answer the person acting."""
    svc, tr, tz = services(context), actor.tr, _zone(services(context), actor)
    query = update.callback_query
    chat = update.effective_chat
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            assert user is not None
            unit = await session.get(Unit, unit_id) if unit_id is not None else None
            outcome = await service.act_on_request(
                session, press, actor=user, now=svc.now(), policy=_policy(svc), note=note,
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
            await edit_query_message(update, payload["text"], _markup(payload), courtesy=True)
    else:
        await reply(update, escape(done))
    return await handled(END)


def _done_key(action: Action, liaisons_told: int | None) -> str:
    """A withdrawal says who on the other side was told: the duty room, its liaisons,
    or (a unit with neither) nobody."""
    if action is not Action.cancel or liaisons_told is None:
        return action.value
    return "cancel_liaisons" if liaisons_told else "cancel_nobody"


def _markup(payload: dict[str, Any]) -> InlineKeyboardMarkup | None:
    markup = payload.get("reply_markup")
    return InlineKeyboardMarkup.de_json(markup, None) if markup else None


async def drop_action(update: Update, context: Context) -> int:
    """/cancel or the ✖️ under a unit choice: the waiting prompt is over. A ✖️ of a
    choice already over changes nothing."""
    tr = await _tr(update, context)
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


# =========================================================================== reading


async def _shown_here(svc: Services, update: Update, tr: Translator) -> bool:
    """Request contents never go to a group that is not a registered duty room."""
    async with svc.db.session() as session:
        allowed = await may_show_details(session, update)
    if not allowed:
        await reply(update, tr("requests.view.group_not_room"))
    return allowed


async def _show(update: Update, context: Context, actor: Actor, *, number: str | None = None,
                request_id: int | None = None) -> None:
    """One request with its history, and the buttons this reader may press."""
    svc, tr, tz = services(context), actor.tr, _zone(services(context), actor)
    chat = update.effective_chat
    if not await _shown_here(svc, update, tr):
        return
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        request = await store.load_request(session, number=number, request_id=request_id)
        allowed = request is not None and rules.may_view(
            user.role, user.unit_id, from_unit_id=request.from_unit_id,
            to_unit_id=request.to_unit_id)
        await audit(session, "request.view" if allowed else "request.view_refused", actor=user,
                    chat_id=chat.id if chat else None, subject_type="request",
                    subject_id=number or request_id)
    label = number or (request.number if request else str(request_id))
    if request is None:
        await reply(update, tr("requests.view.not_found", number=escape(label)))
        return
    if not allowed:
        await reply(update, tr("requests.view.not_allowed", number=escape(label)))
        return
    side_from = user.unit_id == request.from_unit_id or rules.is_coordinator(user.role)
    actions = rules.available_actions(
        request.status, user.role, user.unit_id, from_unit_id=request.from_unit_id,
        to_unit_id=request.to_unit_id, include_cancel=side_from)
    buttons = [(tr(f"requests.button.{a.value}"), rules.action_data(a, request.id,
                                                                    request.version))
               for a in actions]
    markup = keyboard([buttons[i:i + 2] for i in range(0, len(buttons), 2)]) if buttons else None
    text = render.card(tr, request, tz) + "\n\n" + render.history(tr, request, tz)
    await reply(update, text, markup)


@guarded(Role.officer)
async def view_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    match = re.fullmatch(rf"{VIEW}:{DB_ID}", query.data or "")
    if match is None:
        await query.answer(actor.tr("errors.stale_button"), show_alert=True)
        return
    await query.answer()
    await _show(update, context, actor, request_id=int(match.group(1)))


async def _resolve_filters(
    update: Update, svc: Services, actor: Actor, words: list[str], *, default_open: bool
) -> tuple[Filters, list[int] | None, list[str]] | None:
    """The filters the words name; None, once the user is told why, for a period that
    names none (a month or day that does not exist, out of range)."""
    tr = actor.tr
    try:
        filters_ = rules.parse_filters(words, svc.now(), _zone(svc, actor),
                                       default_open=default_open)
    except rules.PeriodProblem as problem:
        await reply(update, render.period_problem(tr, problem))
        return None
    notes: list[str] = []
    unit_ids: list[int] | None = None
    if filters_.unit_query:
        async with svc.db.session() as session:
            units = await store.resolve_units(session, filters_.unit_query)
        if units:
            unit_ids = [u.id for u in units]
        else:
            notes.append(tr("requests.list.unknown_unit", query=escape(filters_.unit_query)))
    return filters_, unit_ids, notes


async def _list_page(svc: Services, actor: Actor, listing: dict[str, Any],
                     page: int) -> tuple[str, InlineKeyboardMarkup | None]:
    tr, tz = actor.tr, _zone(svc, actor)
    filters_ = Filters.from_json(listing["filters"])
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        found, total = await store.list_requests(session, filters_, viewer=user,
                                                 unit_ids=listing.get("unit_ids"), page=page)
    pages = max((total + store.PAGE_SIZE - 1) // store.PAGE_SIZE, 1)
    lines = [*listing.get("notes", [])]
    scope = filters_.scope if filters_.scope is not Scope.mine or not rules.is_coordinator(
        actor.role) else Scope.all
    lines.append(tr("requests.list.title", scope=tr(f"requests.list.scope.{scope.value}"),
                    total=total, page=min(page + 1, pages), pages=pages))
    if not found:
        lines.append(tr("requests.list.empty"))
    lines += [render.list_line(tr, r, tz) for r in found]
    lines += ["", tr("requests.list.hint")]
    rows: list[list[tuple[str, str]]] = []
    view = [(r.number.rsplit("-", 1)[1], f"{VIEW}:{r.id}") for r in found]
    rows += [view[i:i + 4] for i in range(0, len(view), 4)]
    paging = []
    if page > 0:
        paging.append((tr("requests.button.previous"), f"{LIST}:{page - 1}"))
    if page + 1 < pages:
        paging.append((tr("requests.button.following"), f"{LIST}:{page + 1}"))
    if paging:
        rows.append(paging)
    return "\n".join(lines), keyboard(rows) if rows else None


@guarded(Role.officer)
async def list_command(update: Update, context: Context, actor: Actor) -> None:
    svc = services(context)
    if not await _shown_here(svc, update, actor.tr):
        return
    resolved = await _resolve_filters(update, svc, actor, list(context.args or []),
                                      default_open=True)
    if resolved is None:
        return
    filters_, unit_ids, notes = resolved
    listing = {"filters": filters_.to_json(), "unit_ids": unit_ids, "notes": notes}
    assert context.user_data is not None
    context.user_data[LISTING] = listing
    text, markup = await _list_page(svc, actor, listing, 0)
    await reply(update, text, markup)


@guarded(Role.officer)
async def list_paged(update: Update, context: Context, actor: Actor) -> None:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    listing = (context.user_data or {}).get(LISTING)
    match = re.fullmatch(rf"{LIST}:(\d{{1,5}})", query.data or "")
    if not listing or match is None:
        await query.answer(tr("requests.list.expired"), show_alert=True)
        return
    await query.answer()
    text, markup = await _list_page(svc, actor, listing, int(match.group(1)))
    await edit_query_message(update, text, markup, courtesy=True)


# =========================================================================== export, stats


def _period_or_default(filters_: Filters, now: datetime) -> Period:
    return filters_.period or Period(now - DEFAULT_PERIOD, now)


@guarded(Role.officer, Where.private)
async def export_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, tz = services(context), actor.tr, _zone(services(context), actor)
    args = list(context.args or [])
    if not args or rules.fold(args[0]) not in EXPORT_WORDS:
        await reply(update, tr("requests.export.usage"))
        return
    resolved = await _resolve_filters(update, svc, actor, args[1:], default_open=False)
    if resolved is None:
        return
    filters_, unit_ids, notes = resolved
    now = svc.now()
    filters_.period = _period_or_default(filters_, now)
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        found = await store.export_requests(session, filters_, viewer=user, unit_ids=unit_ids)
        await audit(session, "request.export", actor=user, subject_type="request",
                    count=len(found), filters=filters_.to_json(), unit_ids=unit_ids)
    if notes:
        await reply(update, "\n".join(notes))
    if not found:
        await reply(update, tr("requests.export.empty"))
        return
    header, rows = export_table(tr, found, tz, now)
    csv_bytes = await asyncio.to_thread(reports.to_csv, header, rows)
    xlsx_bytes = await asyncio.to_thread(reports.to_xlsx, header, rows,
                                         tr("requests.export.sheet"))
    start = filters_.period.start.astimezone(tz)
    end = (filters_.period.end - timedelta(seconds=1)).astimezone(tz)
    stem = f"requests-{start:%Y%m%d}-{end:%Y%m%d}"
    caption = tr("requests.export.caption", start=f"{start:%Y-%m-%d}", end=f"{end:%Y-%m-%d}",
                 count=len(found))
    message = update.effective_message
    assert message is not None
    await message.reply_document(document=csv_bytes, filename=f"{stem}.csv", caption=caption)
    await message.reply_document(document=xlsx_bytes, filename=f"{stem}.xlsx", caption=caption)


@guarded(Role.coordinator, Where.private)
async def stats_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, tz = services(context), actor.tr, _zone(services(context), actor)
    resolved = await _resolve_filters(update, svc, actor, list(context.args or []),
                                      default_open=False)
    if resolved is None:
        return
    filters_, unit_ids, _notes = resolved
    if filters_.unit_query and unit_ids is None:
        await reply(update, tr("requests.stats.bad_period", text=escape(filters_.unit_query)))
        return
    now = svc.now()
    period = _period_or_default(filters_, now)
    filters_.scope = Scope.all
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        rows = await store.stats_rows(session, period, viewer=user, filters=filters_,
                                      unit_ids=unit_ids)
        await audit(session, "request.stats", actor=user, subject_type="request",
                    count=len(rows), start=period.start.isoformat(), end=period.end.isoformat())
    stats = rules.compute_stats(rows, period, now)
    text = render.stats_text(tr, stats, tz)
    png = await asyncio.to_thread(reports.stats_chart, tr, stats, tz)
    message = update.effective_message
    assert message is not None
    await message.reply_photo(photo=png, caption=text.split("\n", 1)[0])
    await reply(update, text)


# =========================================================================== wiring


def register(application: Application) -> None:
    text = filters.TEXT & ~filters.COMMAND
    other = ~filters.TEXT & ~filters.COMMAND
    files = filters.PHOTO | filters.Document.ALL
    quit_button = CallbackQueryHandler(quit_flow, pattern=rf"^{NEW}:quit(:{TOKEN})?$")
    with warnings.catch_warnings():
        # Buttons inside a per-chat conversation are intended (not tracked per message).
        warnings.simplefilter("ignore", PTBUserWarning)
        new_flow = ConversationHandler(
            entry_points=[CommandHandler("request", request_command)],
            states={
                TARGET: [MessageHandler(text, target_typed),
                         CallbackQueryHandler(target_pressed, pattern=rf"^{NEW}:(t:\d+|next)$"),
                         MessageHandler(other, _not_text(TARGET))],
                MECHANISM: [MessageHandler(text, mechanism_chosen),
                            CallbackQueryHandler(mechanism_chosen, pattern=rf"^{NEW}:m:"),
                            MessageHandler(other, _not_text(MECHANISM))],
                URGENCY: [MessageHandler(text, urgency_chosen),
                          CallbackQueryHandler(urgency_chosen, pattern=rf"^{NEW}:u:"),
                          MessageHandler(other, _not_text(URGENCY))],
                SUBJECT: [MessageHandler(text, subject_typed),
                          MessageHandler(other, _not_text(SUBJECT))],
                DETAILS: [MessageHandler(text, details_given),
                          CallbackQueryHandler(details_given, pattern=rf"^{NEW}:skip$"),
                          MessageHandler(other, _not_text(DETAILS))],
                ATTACH: [MessageHandler(files | text, _attachment_handler(ATTACH)),
                         CallbackQueryHandler(attachments_done, pattern=rf"^{NEW}:done$")],
                DEADLINE: [MessageHandler(text, deadline_given),
                           CallbackQueryHandler(deadline_given, pattern=rf"^{NEW}:nodl$"),
                           MessageHandler(other, _not_text(DEADLINE))],
                CONFIRM: [MessageHandler(files, _attachment_handler(CONFIRM)),
                          MessageHandler(text, review_typed),
                          CallbackQueryHandler(confirm_pressed,
                                               pattern=rf"^{NEW}:(submit|edit:\w+)(:{TOKEN})?$")],
            },
            fallbacks=[CommandHandler("cancel", quit_flow), quit_button],
            allow_reentry=True,
            name=FLOW,
            persistent=True,
        )
        act_flow = ConversationHandler(
            entry_points=[CallbackQueryHandler(button_pressed,
                                               pattern=rf"^{rules.CALLBACK_PREFIX}")],
            states={
                NOTE: [MessageHandler(text, note_typed)],
                UNIT: [MessageHandler(text, unit_typed),
                       CallbackQueryHandler(unit_typed, pattern=rf"^{ACT}:u:")],
            },
            fallbacks=[CommandHandler("cancel", drop_action),
                       CallbackQueryHandler(drop_action, pattern=rf"^{ACT}:quit(:{TOKEN})?$")],
            allow_reentry=True,
            name="requests_act",
            persistent=True,
        )
    # Group -1: a typed answer inside these flows must not also reach plain-text features.
    application.add_handler(new_flow, group=-1)
    application.add_handler(act_flow, group=-1)
    application.add_handler(CommandHandler("requests", list_command))
    application.add_handler(CommandHandler("export", export_command, filters=EXPORT_FILTER))
    application.add_handler(CommandHandler("stats", stats_command))
    application.add_handler(CallbackQueryHandler(list_paged, pattern=rf"^{LIST}:"))
    application.add_handler(CallbackQueryHandler(view_pressed, pattern=rf"^{VIEW}:"))
    application.add_handler(CallbackQueryHandler(stale_flow_button, pattern=rf"^({NEW}|{ACT}):"))

