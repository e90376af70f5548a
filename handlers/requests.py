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
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from telegram import ForceReply, InlineKeyboardMarkup, Update
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
from handlers import flow
from handlers.common import (
    CANCELLED,
    SUPERSEDED,
    USED,
    Context,
    close_confirmation,
    confirmation_open,
    current_actor,
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
)
from i18n import Translator
from services import requests as service
from storage import requests as store
from storage.access import audit, user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.models import Mechanism, Unit
from views import requests as render
from views.buttons import Button, Style
from views.request_reports import export_table

COMMANDS = [
    CommandInfo("request", Role.officer, Where.anywhere, "requests.command"),
    CommandInfo("requests", Role.officer, Where.anywhere, "requests.list_command"),
    CommandInfo("export", Role.officer, Where.private, "requests.export_command"),
    CommandInfo("stats", Role.coordinator, Where.private, "requests.stats_command"),
]

PENDING, LISTING = "rq_pending", "rq_list"  # the draft: NEW_REQUEST.draft_key
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


def _zone(svc: Services, actor: Actor) -> Any:
    return time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)


# =========================================================================== new request


@dataclass
class RequestFlowDraft(flow.Draft):
    """A request as the officer answers: target unit ids, the mechanism's id, the
    urgency's code, subject, details ('' when skipped), attachments, the reply deadline
    (ISO; None without one). `quick`: the one-shot command, which skips the optional
    steps; `editing`: back to the summary once the edited step is answered."""

    targets: list[int] = field(default_factory=list)
    targets_done: bool = False
    candidates: list[int] = field(default_factory=list)  # the units a typed name fits
    mechanism: int | None = None
    urgency: str | None = None
    subject: str | None = None
    quick: bool = False
    details: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    attachments_done: bool = False
    deadline_done: bool = False
    reply_due: str | None = None
    editing: bool = False


Turn = flow.Turn[RequestFlowDraft]


async def _unit_names(svc: Services, ids: list[int]) -> dict[int, Unit]:
    if not ids:
        return {}
    async with svc.db.session() as session:
        return {unit_id: unit for unit_id in ids
                if (unit := await session.get(Unit, unit_id)) is not None}


async def ask_target(turn: Turn) -> flow.Prompt:
    svc, tr, actor = turn.svc, turn.tr, turn.actor
    chosen = await _unit_names(svc, turn.draft.targets)
    async with svc.db.session() as session:
        offered = await store.peer_units(session, actor.user.unit_id if actor.user else None)
    lines = [*turn.notes, tr("requests.new.ask_target")]
    if chosen:
        lines.append(tr("requests.new.targets_chosen",
                        units=tr.join(escape(tr.name(u.name)) for u in chosen.values())))
        lines.append(tr("requests.new.ask_more_targets"))
    options = list(offered) + [u for u in chosen.values() if u.id not in {o.id for o in offered}]
    buttons = [(("✅ " if unit.id in chosen else "") + unit.short_name, f"{NEW}:t:{unit.id}")
               for unit in options]
    rows = [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    rows.append([Button(tr("requests.button.next"), f"{NEW}:next", Style.primary),
                 turn.quit_button()])
    return flow.Prompt("\n".join(lines), rows, with_notes=True)


async def ask_mechanism(turn: Turn) -> flow.Prompt:
    async with turn.svc.db.session() as session:
        found = await store.mechanisms(session)
    buttons = [(m.name, f"{NEW}:m:{m.id}") for m in found]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return flow.Prompt(turn.tr("requests.new.ask_mechanism"), [*rows, [turn.quit_button()]])


async def ask_urgency(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    buttons = [(render.urgency_label(tr, u), f"{NEW}:u:{u.value}") for u in rules.URGENCY_ORDER]
    return flow.Prompt(tr("requests.new.ask_urgency"), [buttons, [turn.quit_button()]])


async def ask_subject(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("requests.new.ask_subject", limit=rules.SUBJECT_MAX),
                       [[turn.quit_button()]])


async def ask_details(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("requests.new.ask_details", limit=rules.DETAILS_MAX),
                       [[(tr("requests.button.skip"), f"{NEW}:skip"), turn.quit_button()]])


async def ask_attachments(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("requests.new.ask_attachments", limit=rules.ATTACHMENTS_MAX),
                       [[(tr("requests.button.done"), f"{NEW}:done"), turn.quit_button()]])


async def ask_deadline(turn: Turn) -> flow.Prompt:
    tr, zone_name = turn.tr, flow.reader_zone_name(turn.svc, turn.actor)
    return flow.Prompt(tr("requests.new.ask_deadline", zone=zone_name),
                       [[(tr("requests.button.no_deadline"), f"{NEW}:nodl"),
                         turn.quit_button()]])


async def ask_confirm(turn: Turn) -> flow.Prompt:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    assert draft.urgency is not None and draft.subject is not None
    draft.editing = False
    tz = _zone(svc, turn.actor)
    units = await _unit_names(svc, draft.targets)
    async with svc.db.session() as session:
        mechanism = await session.get(Mechanism, draft.mechanism) if draft.mechanism else None
    urgency = Urgency(draft.urgency)
    ack = _policy(svc).ack_minutes[urgency.value]
    details = draft.details or ""
    if len(details) > 300:
        details = details[:300] + "…"
    text = tr(
        "requests.new.summary",
        units=tr.join(escape(tr.name(u.name)) for u in units.values()),
        mechanism=escape(mechanism.name) if mechanism else tr("requests.new.none"),
        urgency=render.urgency_label(tr, urgency),
        subject=escape(draft.subject),
        details=escape(details) or tr("requests.new.none"),
        attachments=len(draft.attachments) or tr("requests.new.none"),
        deadline=render.local_time(datetime.fromisoformat(draft.reply_due), tz, with_year=True)
        if draft.reply_due else tr("requests.new.none"),
        ack=render.duration(tr, timedelta(minutes=ack)),
    ) + "\n\n" + tr("requests.new.confirm_hint")
    token = draft.token
    return flow.Prompt(text, [
        [Button(tr("requests.button.submit"), f"{NEW}:submit:{token}", Style.success),
         turn.quit_button()],
        [(tr("requests.button.edit_details"), f"{NEW}:edit:details:{token}"),
         (tr("requests.button.edit_deadline"), f"{NEW}:edit:deadline:{token}")],
    ])


NEW_REQUEST = flow.GuidedFlow(
    name="requests_new", draft_key="rq_draft", draft_type=RequestFlowDraft, kind=SUBMIT,
    callback=NEW, role=Role.officer, ttl=DRAFT_TTL,
    steps=[
        flow.Step(TARGET, lambda d: bool(d.targets) and d.targets_done, ask_target),
        flow.Step(MECHANISM, lambda d: d.mechanism is not None, ask_mechanism),
        flow.Step(URGENCY, lambda d: d.urgency is not None, ask_urgency),
        flow.Step(SUBJECT, lambda d: bool(d.subject), ask_subject),
        flow.Step(DETAILS, lambda d: d.quick or d.details is not None, ask_details),
        flow.Step(ATTACH, lambda d: d.quick or d.attachments_done, ask_attachments),
        flow.Step(DEADLINE, lambda d: d.quick or d.deadline_done, ask_deadline),
    ],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    back_to_confirm=lambda d: d.editing,
    expired_key="requests.new.expired", cancelled_key="requests.new.cancelled",
    quit_key="requests.button.quit", text_expected_key="requests.new.text_expected",
    confirm_expects_key="requests.new.review_expects_button",
)


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
    turn = NEW_REQUEST.start(update, context, actor)
    if not context.args:
        return await turn.ask(TARGET)
    return await turn.advance(await _one_shot(turn, list(context.args)))


async def _one_shot(turn: Turn, words: list[str]) -> list[str]:
    """`/request 云南 治安管控互动 特急 主题…`: targets first, then mechanism and urgency
    in either order, the rest is the subject. Returns notes about what was not understood
    (the flow then asks for exactly what is missing)."""
    tr, draft = turn.tr, turn.draft
    draft.quick = True
    notes: list[str] = []
    async with turn.svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(words[0]) if p]:
            notes += await _add_target(session, turn, part)
        index = 1
        # More units, space-separated: only words that name exactly one unit.
        while index < len(words) and rules.parse_urgency(words[index]) is None and len(
                exact := await store.resolve_units(session, words[index], exact_only=True)) == 1:
            notes += _toggle_target(turn, exact[0], add_only=True)
            index += 1
        target_notes = list(notes)
        first_flag = index
        while index < len(words) and index < first_flag + 2:
            word = words[index]
            before_urgency = draft.urgency is None and index + 1 < len(words) and \
                rules.parse_urgency(words[index + 1]) is not None
            if draft.urgency is None and (urgency := rules.parse_urgency(word)):
                draft.urgency = urgency.value
            elif draft.mechanism is None and (
                    mechanism := await store.find_mechanism(session, word)):
                draft.mechanism = mechanism.id
            elif draft.mechanism is None and (offered := await store.mechanism_meant(
                    session, word, before_urgency=before_urgency)) is not None:
                # Refused with the list (the flow then asks with buttons), not taken
                # as the start of the subject.
                notes.append(tr("requests.new.unknown_mechanism_word", query=escape(word[:40]),
                                names=tr.join(escape(m.name) for m in offered)))
            else:
                break
            index += 1
    if draft.targets and not target_notes:
        draft.targets_done = True
    subject = rules.clean_line(" ".join(words[index:]))
    if subject:
        if problem := rules.text_problem(subject, rules.SUBJECT_MAX):
            notes.append(tr(f"requests.new.subject_{problem.value}", length=len(subject),
                            limit=rules.SUBJECT_MAX))
        else:
            draft.subject = subject
    return notes


async def _add_target(session: Any, turn: Turn, query: str) -> list[str]:
    """Add the unit `query` names; notes when it names none, several, or one's own."""
    tr = turn.tr
    units = await store.resolve_units(session, query)
    if not units:
        return [tr("requests.new.unknown_unit", query=escape(query))]
    if len(units) > 1:
        turn.draft.candidates = [u.id for u in units]
        return [tr("requests.new.ambiguous_unit", query=escape(query)) + " " +
                tr.join(escape(tr.name(u.name)) for u in units)]
    return _toggle_target(turn, units[0], add_only=True)


def _toggle_target(turn: Turn, unit: Unit, *, add_only: bool = False) -> list[str]:
    tr, targets, user = turn.tr, turn.draft.targets, turn.actor.user
    if user is not None and unit.id == user.unit_id:
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


async def target_typed(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    notes: list[str] = []
    async with turn.svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(message_text(turn.update)) if p]:
            notes += await _add_target(session, turn, part)
    if draft.candidates:
        units = await _unit_names(turn.svc, draft.candidates)
        draft.candidates = []
        rows = [[(u.name, f"{NEW}:t:{u.id}")] for u in units.values()]
        rows.append([Button(tr("requests.button.next"), f"{NEW}:next", Style.primary),
                     turn.quit_button()])
        await reply(turn.update, "\n".join(notes), keyboard(rows))
        return await handled(TARGET)
    return await turn.ask(TARGET, notes)


async def target_pressed(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    query = turn.update.callback_query
    assert query is not None
    data = turn.query_data
    if data == f"{NEW}:next":
        if not draft.targets:
            await query.answer(tr("requests.new.no_target_yet"), show_alert=True)
            return await handled(TARGET)
        draft.targets_done = True
        units = await _unit_names(svc, draft.targets)
        await turn.closing(tr.join(escape(tr.name(u.name)) for u in units.values()))
        return await turn.advance()
    match = re.fullmatch(rf"{NEW}:t:{DB_ID}", data)
    unit = (await _unit_names(svc, [int(match.group(1))])).get(int(match.group(1))) \
        if match else None
    if unit is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return await handled(TARGET)
    notes = _toggle_target(turn, unit)
    await query.answer(notes[0] if notes else None, show_alert=bool(notes))
    prompt = await ask_target(turn)
    await edit_query_message(turn.update, prompt.text, keyboard(prompt.buttons),
                             courtesy=True)
    return await handled(TARGET)


async def mechanism_chosen(turn: Turn) -> int:
    tr, update = turn.tr, turn.update
    query = update.callback_query
    match = re.fullmatch(rf"{NEW}:m:{DB_ID}", turn.query_data) if query else None
    async with turn.svc.db.session() as session:
        if query is not None:
            mechanism = await session.get(Mechanism, int(match.group(1))) if match else None
        else:
            mechanism = await store.find_mechanism(session, message_text(update))
    if mechanism is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(MECHANISM)
        return await turn.ask(MECHANISM, [
            tr("requests.new.unknown_mechanism", query=escape(message_text(update)[:40]))])
    turn.draft.mechanism = mechanism.id
    await turn.closing(escape(mechanism.name))
    return await turn.advance()


async def urgency_chosen(turn: Turn) -> int:
    tr, query = turn.tr, turn.update.callback_query
    raw = turn.query_data.removeprefix(f"{NEW}:u:") if query else message_text(turn.update)
    urgency = Urgency(raw) if query and raw in Urgency.__members__ else (
        None if query else rules.parse_urgency(raw))
    if urgency is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(URGENCY)
        return await turn.ask(URGENCY, [
            tr("requests.new.unknown_urgency", query=escape(raw[:40]))])
    turn.draft.urgency = urgency.value
    await turn.closing(render.urgency_label(tr, urgency))
    return await turn.advance()


async def subject_typed(turn: Turn) -> int:
    subject = rules.clean_line(message_text(turn.update))
    problem = rules.text_problem(subject, rules.SUBJECT_MAX)
    if problem is not None:
        return await turn.stay(SUBJECT, turn.tr(f"requests.new.subject_{problem.value}",
                                                length=len(subject), limit=rules.SUBJECT_MAX))
    turn.draft.subject = subject
    return await turn.advance()


async def details_given(turn: Turn) -> int:
    tr = turn.tr
    if turn.update.callback_query is not None:
        turn.draft.details = ""
        await turn.closing(tr("requests.button.skip"))
        return await turn.advance()
    details = rules.clean_block(message_text(turn.update))
    if len(details) > rules.DETAILS_MAX:
        return await turn.stay(DETAILS, tr("requests.new.details_too_long", length=len(details),
                                           limit=rules.DETAILS_MAX))
    if not details:
        return await turn.stay(DETAILS, tr("requests.new.text_expected"))
    turn.draft.details = details
    return await turn.advance()


def _attachment_handler(state: int) -> Any:
    """A photo or document for the draft (in the attachment step, or at the summary)."""

    async def attach(turn: Turn) -> int:
        tr, attachments = turn.tr, turn.draft.attachments
        attachment = flow.attachment_of(turn.update.effective_message)
        if attachment is None:
            return await turn.stay(state, tr("requests.new.attachment_expected"))
        if len(attachments) >= rules.ATTACHMENTS_MAX:
            return await turn.stay(state, tr("requests.new.too_many_attachments",
                                             limit=rules.ATTACHMENTS_MAX))
        attachments.append(attachment)
        return await turn.stay(state, tr("requests.new.attachment_added", n=len(attachments)))

    return NEW_REQUEST.on(attach)


async def attachments_done(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    draft.attachments_done = True
    count = len(draft.attachments)
    await turn.closing(tr("requests.new.attachment_added", n=count) if count
                       else tr("requests.button.skip"))
    return await turn.advance()


async def deadline_given(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    if turn.update.callback_query is not None:
        draft.reply_due, draft.deadline_done = None, True
        await turn.closing(tr("requests.button.no_deadline"))
        return await turn.advance()
    text = message_text(turn.update).strip()
    try:
        due = parse_deadline(text, svc.now(), flow.reader_zone_name(svc, turn.actor))
    except DeadlineError as error:
        key = {"in_the_past": "deadline_past", "too_far": "deadline_too_far"}.get(
            error.code, "deadline_invalid")
        return await turn.stay(DEADLINE, tr(f"requests.new.{key}", text=escape(text[:40])))
    draft.reply_due, draft.deadline_done = due.isoformat(), True
    return await turn.advance()


async def confirm_pressed(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    query = turn.update.callback_query
    assert query is not None
    data, _, token = turn.query_data.rpartition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, SUBMIT):
        return await handled(CONFIRM)
    if data in (f"{NEW}:edit:details", f"{NEW}:edit:deadline"):
        draft.editing = True
        await query.answer()
        return await turn.ask(DETAILS if data.endswith("details") else DEADLINE)
    if data != f"{NEW}:submit" or token != draft.token:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return await handled(CONFIRM)
    return await _submit(turn)


async def _submit(turn: Turn) -> int:
    svc, tr, draft, actor = turn.svc, turn.tr, turn.draft, turn.actor
    query = turn.update.callback_query
    assert query is not None and draft.urgency is not None and draft.subject is not None
    request_draft = Draft(
        target_unit_ids=list(draft.targets), mechanism_id=draft.mechanism,
        urgency=Urgency(draft.urgency), subject=draft.subject,
        details=draft.details or "", attachments=list(draft.attachments),
        reply_due_at=datetime.fromisoformat(draft.reply_due) if draft.reply_due else None,
        submission_key=draft.id,
    )

    async def create(session: AsyncSession) -> tuple[service.Created, dict[int, str | None]]:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        created = await service.create_requests(session, request_draft, actor=user,
                                                now=svc.now(), policy=_policy(svc))
        return created, {r.to_unit_id: r.to_unit.duty_phone for r, _ in created.undelivered}

    try:
        created, phones = await NEW_REQUEST.submit(turn, create)
    except DraftProblem as problem:
        await query.answer()
        return await turn.ask(CONFIRM, [
            tr(f"requests.new.problem.{problem.code}", **problem.values)])
    except AlreadySubmitted as done:
        end_draft(turn.context, draft.token, NEW_REQUEST.draft_key)
        await query.answer()
        await reply(turn.update, tr("requests.new.already_submitted", numbers=tr.join(
            f"<code>{number}</code>" for number in done.numbers)))
        return await turn.end()
    svc.wake_delivery()
    await svc.rescheduled("requests")
    await turn.closing(tr("requests.button.submit"))
    lines = [tr("requests.new.created")]
    lines += [tr("requests.new.created_line", number=f"<code>{r.number}</code>",
                 unit=escape(r.to_unit.name)) for r in created.requests]
    first = created.requests[0]
    lines.append(tr("requests.new.ack_hint",
                    ack=render.duration(tr, first.ack_due_at - first.created_at)))
    for request, told in created.undelivered:
        lines.append(tr("requests.new.created_undelivered", unit=escape(request.to_unit.name),
                        count=told, phone=escape(phones.get(request.to_unit_id) or "—")))
    await reply(turn.update, "\n".join(lines))
    return await turn.end()


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
    markup = keyboard(render.action_rows(tr, request, actions)) if actions else None
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
    with warnings.catch_warnings():
        # Buttons inside a per-chat conversation are intended (not tracked per message).
        warnings.simplefilter("ignore", PTBUserWarning)
        on, not_text = NEW_REQUEST.on, NEW_REQUEST.not_text
        new_flow = NEW_REQUEST.conversation(
            entry_points=[CommandHandler("request", request_command)],
            states={
                TARGET: [MessageHandler(text, on(target_typed)),
                         CallbackQueryHandler(on(target_pressed),
                                              pattern=rf"^{NEW}:(t:\d+|next)$"),
                         MessageHandler(other, not_text(TARGET))],
                MECHANISM: [MessageHandler(text, on(mechanism_chosen)),
                            CallbackQueryHandler(on(mechanism_chosen), pattern=rf"^{NEW}:m:"),
                            MessageHandler(other, not_text(MECHANISM))],
                URGENCY: [MessageHandler(text, on(urgency_chosen)),
                          CallbackQueryHandler(on(urgency_chosen), pattern=rf"^{NEW}:u:"),
                          MessageHandler(other, not_text(URGENCY))],
                SUBJECT: [MessageHandler(text, on(subject_typed)),
                          MessageHandler(other, not_text(SUBJECT))],
                DETAILS: [MessageHandler(text, on(details_given)),
                          CallbackQueryHandler(on(details_given), pattern=rf"^{NEW}:skip$"),
                          MessageHandler(other, not_text(DETAILS))],
                ATTACH: [MessageHandler(files | text, _attachment_handler(ATTACH)),
                         CallbackQueryHandler(on(attachments_done), pattern=rf"^{NEW}:done$")],
                DEADLINE: [MessageHandler(text, on(deadline_given)),
                           CallbackQueryHandler(on(deadline_given), pattern=rf"^{NEW}:nodl$"),
                           MessageHandler(other, not_text(DEADLINE))],
                CONFIRM: [MessageHandler(files, _attachment_handler(CONFIRM)),
                          MessageHandler(text, NEW_REQUEST.typed_at_confirm),
                          CallbackQueryHandler(on(confirm_pressed),
                                               pattern=rf"^{NEW}:(submit|edit:\w+)(:{TOKEN})?$")],
            },
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
    application.add_handler(CallbackQueryHandler(NEW_REQUEST.stale_button,
                                                 pattern=rf"^({NEW}|{ACT}):"))

