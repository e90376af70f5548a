"""Notices in chat: /notice (guided or one-shot, optionally scheduled), the 收到 button
in duty rooms, /notices (list, view, correct, withdraw, CSV report).

Handlers decide inside one unit of work and talk to Telegram only after it commits;
everything for duty rooms and the coordinator's status message is written to the outbox
by services/notices.py in that unit of work. The guided flow and the correction prompt
are persistent conversations: a restart in the middle loses nothing.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import reports
from bot.commands import CommandInfo, Where
from bot.plans import notices as plan
from bot.services import SERVICES_KEY, Actor, Services, services
from core import requests as rules
from core.clock import time_zone
from core.enums import NoticeKind, NoticeStatus, Role, Severity
from core.notices import (
    CALLBACK,
    KIND_ORDER,
    SEVERITY_ORDER,
    TEXT_MAX,
    NoticeDraft,
    NoticePolicy,
    NoticeProblem,
    Verdict,
    clean_text,
    parse_id,
    text_problem,
)
from core.timeparse import DeadlineError, parse_deadline
from handlers import flow
from handlers.common import (
    CANCELLED,
    USED,
    Context,
    close_confirmation,
    confirmation_open,
    edit_query_message,
    end_draft,
    escape,
    guarded,
    handled,
    keyboard,
    offer_confirmation,
    reply,
)
from handlers.flow import Draft
from i18n import Translator
from services import notices as service
from storage import notices as store
from storage.access import audit, user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.models import Unit, Zone
from storage.requests import resolve_units
from storage.schedules import all_zones, find_zones
from views import requests as render
from views.buttons import Button, Style
from views.notices import first_line, kind_label, report_table, severity_label

COMMANDS = [
    CommandInfo("notice", Role.coordinator, Where.private, "notices.command"),
    CommandInfo("notices", Role.coordinator, Where.private, "notices.list_command"),
]

CORRECTING = "notice_correct"  # the correction prompt (the draft: NEW_NOTICE.draft_key)
KIND, SEVERITY, AUDIENCE, TEXT, WHEN, CONFIRM, CORRECT = range(7)
END = ConversationHandler.END
NEW, MANAGE = "ntn", "ntm"
# Confirmation kinds (handlers/common.py) and the token their buttons carry.
WITHDRAW, CORRECTION = "notice_withdraw", "notice_correct"
TOKEN = "[0-9a-f]{8}"
DRAFT_TTL = timedelta(hours=6)
VIEW_TEXT = 1500  # of the notice's text under its status in a view (a message has 4096)
SPLIT = re.compile(r"[\s、，,;；/+]+")
ALL_WORDS = {"全部", "全部值班室", "所有", "all"}
EXPORT_WORDS = {"export", "导出", "csv"}
KIND_WORDS = {
    "形势通报": NoticeKind.situation, "通报": NoticeKind.situation,
    "situation": NoticeKind.situation, "预警": NoticeKind.warning,
    "warning": NoticeKind.warning, "情报指令": NoticeKind.instruction,
    "指令": NoticeKind.instruction, "instruction": NoticeKind.instruction,
    "工作通知": NoticeKind.work, "通知": NoticeKind.work, "work": NoticeKind.work,
}
SEVERITY_WORDS = {
    "一般": Severity.info, "info": Severity.info, "重要": Severity.important,
    "important": Severity.important, "紧急": Severity.critical, "critical": Severity.critical,
}


def _policy(svc: Services) -> NoticePolicy:
    return NoticePolicy.from_settings(svc.settings)


def _text(update: Update) -> str:
    message = update.effective_message
    return (message.text or message.caption or "") if message else ""


def _cancel_button(tr: Translator, token: str | None) -> tuple[str, str]:
    """✖️ 取消 of one draft or correction prompt: it cancels that one only."""
    return tr("notices.button.cancel"), f"{NEW}:quit:{token}" if token else f"{NEW}:quit"


def _word(text: str) -> str:
    return rules.fold(text).strip()


# =========================================================================== the draft


@dataclass
class NoticeFlowDraft(Draft):
    """A notice as the coordinator answers: codes of its kind and severity, the chosen
    audience ({"all": true} or zone and unit ids), its text, attachment and send time."""

    kind: str | None = None
    severity: str | None = None
    audience: dict[str, Any] = field(default_factory=dict)
    audience_done: bool = False
    text: str | None = None
    attachment: dict[str, Any] | None = None
    scheduled_for: str | None = None


Turn = flow.Turn[NoticeFlowDraft]


def _chosen(audience: dict[str, Any]) -> bool:
    return bool(audience.get("all") or audience.get("zones") or audience.get("units"))


async def _audience_label(svc: Services, tr: Translator, audience: dict[str, Any]) -> str:
    if audience.get("all"):
        return tr("notices.new.all_rooms")
    async with svc.db.session() as session:
        zones = [await session.get(Zone, z) for z in audience.get("zones") or []]
        units = [await session.get(Unit, u) for u in audience.get("units") or []]
    names = [z.name for z in zones if z] + [u.name for u in units if u]
    return tr.join(escape(n) for n in names) or tr("notices.new.none")


async def ask_audience(turn: Turn) -> flow.Prompt:
    svc, tr, audience = turn.svc, turn.tr, turn.draft.audience
    async with svc.db.session() as session:
        zones = await all_zones(session)
        units = await store.units_with_rooms(session)
    lines = [*turn.notes, tr("notices.new.ask_audience")]
    if _chosen(audience):
        lines.append(tr("notices.new.audience_chosen",
                        audience=await _audience_label(svc, tr, audience)))
    chosen_zones = set(audience.get("zones") or [])
    rows = [[(("✅ " if audience.get("all") else "") + tr("notices.new.all_rooms"),
              f"{NEW}:a:all")]]
    buttons = [(("✅ " if z.id in chosen_zones else "") + (z.short_name or z.name),
                f"{NEW}:a:z:{z.id}") for z in zones[:9]]
    rows += [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    chosen_units = set(audience.get("units") or [])
    offered = units + [u for u in await _units(svc, chosen_units)
                       if u.id not in {o.id for o in units}]
    buttons = [(("✅ " if u.id in chosen_units else "") + u.short_name, f"{NEW}:a:u:{u.id}")
               for u in offered]
    rows += [buttons[i:i + 4] for i in range(0, len(buttons), 4)]
    rows.append([Button(tr("notices.button.next"), f"{NEW}:a:next", Style.primary),
                 turn.quit_button()])
    return flow.Prompt("\n".join(lines), rows, with_notes=True)


async def _units(svc: Services, ids: set[int]) -> list[Unit]:
    async with svc.db.session() as session:
        return [u for i in sorted(ids) if (u := await session.get(Unit, i)) is not None]


async def ask_kind(turn: Turn) -> flow.Prompt:
    buttons = [(kind_label(turn.tr, k), f"{NEW}:k:{k.value}") for k in KIND_ORDER]
    return flow.Prompt(turn.tr("notices.new.ask_kind"),
                       [buttons[:2], buttons[2:], [turn.quit_button()]])


async def ask_severity(turn: Turn) -> flow.Prompt:
    buttons = [(severity_label(turn.tr, s), f"{NEW}:s:{s.value}") for s in SEVERITY_ORDER]
    return flow.Prompt(turn.tr("notices.new.ask_severity"), [buttons, [turn.quit_button()]])


async def ask_text(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("notices.new.ask_text", limit=TEXT_MAX), [[turn.quit_button()]])


async def ask_when(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("notices.new.ask_when", zone=flow.reader_zone_name(turn.svc, turn.actor)),
                       [[(tr("notices.button.send_now"), f"{NEW}:now")], [turn.quit_button()]])


async def ask_confirm(turn: Turn) -> flow.Prompt:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    assert draft.kind is not None and draft.severity is not None and draft.text is not None
    async with svc.db.session() as session:
        rooms = await store.audience_rooms(session, draft.audience)
    when, attachment = draft.scheduled_for, draft.attachment
    text = tr(
        "notices.new.preview",
        kind=kind_label(tr, NoticeKind(draft.kind)),
        severity=severity_label(tr, Severity(draft.severity)),
        audience=await _audience_label(svc, tr, draft.audience), rooms=len(rooms),
        attachment=tr(f"notices.new.attachment_{attachment['type']}") if attachment
        else tr("notices.new.none"),
        when=render.local_time(datetime.fromisoformat(when), time_zone(
            flow.reader_zone_name(svc, turn.actor), svc.settings.bot_timezone),
            with_year=True) if when else tr("notices.new.now"),
        text=escape(draft.text),
    )
    token = draft.token
    return flow.Prompt(text, [
        [Button(tr("notices.button.send"), f"{NEW}:send:{token}", Style.success),
         (tr("notices.button.schedule"), f"{NEW}:when:{token}")],
        [turn.quit_button()],
    ])


NEW_NOTICE = flow.GuidedFlow(
    name="notices_flow", draft_key="notice_draft", draft_type=NoticeFlowDraft,
    kind="notice_send", callback=NEW, role=Role.coordinator, ttl=DRAFT_TTL,
    steps=[
        flow.Step(KIND, lambda d: d.kind is not None, ask_kind),
        flow.Step(SEVERITY, lambda d: d.severity is not None, ask_severity),
        flow.Step(AUDIENCE, lambda d: d.audience_done and _chosen(d.audience), ask_audience),
        flow.Step(TEXT, lambda d: bool(d.text), ask_text),
    ],
    side_steps=[flow.Step(WHEN, lambda d: False, ask_when)],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    expired_key="notices.new.expired", cancelled_key="notices.new.cancelled",
    quit_key="notices.button.cancel", text_expected_key="notices.new.text_expected",
    confirm_expects_key="notices.new.review_expects_button", also_closes=(CORRECTING,),
)


# --------------------------------------------------------------------------- /notice


@guarded(Role.coordinator, Where.private)
async def notice_command(update: Update, context: Context, actor: Actor) -> int:
    turn = NEW_NOTICE.start(update, context, actor)
    words = list(context.args or [])
    if not words:
        return await turn.ask(KIND)
    return await turn.advance(await _one_shot(turn, words))


async def _one_shot(turn: Turn, words: list[str]) -> list[str]:
    """`/notice 预警 紧急 全部 今晚有大风…`: type, severity and audience words in any
    order first, the rest is the text. What is missing is then asked for."""
    draft, index = turn.draft, 0
    async with turn.svc.db.session() as session:
        while index < len(words):
            word = _word(words[index])
            if draft.kind is None and word in KIND_WORDS:
                draft.kind = KIND_WORDS[word].value
            elif draft.severity is None and word in SEVERITY_WORDS:
                draft.severity = SEVERITY_WORDS[word].value
            elif not await _add_exact_audience(session, draft, words[index]):
                break
            index += 1
    if _chosen(draft.audience):
        draft.audience_done = True
    text = clean_text(" ".join(words[index:]))
    notes: list[str] = []
    if text:
        if problem := text_problem(text):
            notes.append(turn.tr(f"notices.new.text_{problem}", limit=TEXT_MAX,
                                 length=len(text)))
        else:
            draft.text = text
    return notes


async def _add_exact_audience(session: Any, draft: NoticeFlowDraft, word: str) -> bool:
    """`全部`, a zone's name or exactly one unit's name: added; else False."""
    audience = draft.audience
    if _word(word) in ALL_WORDS:
        audience.clear()
        audience["all"] = True
        return True
    zones = await find_zones(session, word)
    if len(zones) == 1:
        _toggle(audience, "zones", zones[0].id, add_only=True)
        return True
    units = await resolve_units(session, word, exact_only=True)
    if len(units) == 1:
        _toggle(audience, "units", units[0].id, add_only=True)
        return True
    return False


def _toggle(audience: dict[str, Any], part: str, item: int, *, add_only: bool = False) -> None:
    audience.pop("all", None)
    chosen: list[int] = audience.setdefault(part, [])
    if item in chosen:
        if not add_only:
            chosen.remove(item)
    else:
        chosen.append(item)


# --------------------------------------------------------------------------- steps


async def kind_chosen(turn: Turn) -> int:
    tr, query = turn.tr, turn.update.callback_query
    raw = turn.query_data.removeprefix(f"{NEW}:k:") if query else _word(_text(turn.update))
    kind = NoticeKind(raw) if query and raw in NoticeKind.__members__ else (
        None if query else KIND_WORDS.get(raw))
    if kind is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(KIND)
        return await turn.ask(KIND, [
            tr("notices.new.unknown_kind", text=escape(_text(turn.update)[:40]))])
    turn.draft.kind = kind.value
    await turn.closing(kind_label(tr, kind))
    return await turn.advance()


async def severity_chosen(turn: Turn) -> int:
    tr, query = turn.tr, turn.update.callback_query
    raw = turn.query_data.removeprefix(f"{NEW}:s:") if query else _word(_text(turn.update))
    severity = Severity(raw) if query and raw in Severity.__members__ else (
        None if query else SEVERITY_WORDS.get(raw))
    if severity is None:
        if query is not None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(SEVERITY)
        return await turn.ask(SEVERITY, [
            tr("notices.new.unknown_severity", text=escape(_text(turn.update)[:40]))])
    turn.draft.severity = severity.value
    await turn.closing(severity_label(tr, severity))
    return await turn.advance()


async def audience_typed(turn: Turn) -> int:
    """Zone or unit names (search by any name or alias), or 全部."""
    tr, draft = turn.tr, turn.draft
    notes: list[str] = []
    candidates: list[Unit] = []
    async with turn.svc.db.session() as session:
        for word in [w for w in SPLIT.split(_text(turn.update)) if w]:
            if await _add_exact_audience(session, draft, word):
                continue
            units = await resolve_units(session, word)
            if len(units) == 1:
                _toggle(draft.audience, "units", units[0].id, add_only=True)
            elif units:
                candidates += units
                notes.append(tr("notices.new.ambiguous_unit", text=escape(word[:40]),
                                units=tr.join(escape(tr.name(u.name)) for u in units)))
            else:
                notes.append(tr("notices.new.unknown_unit", text=escape(word[:40])))
    if candidates:
        rows = [[(u.name, f"{NEW}:a:u:{u.id}")] for u in candidates]
        rows.append([Button(tr("notices.button.next"), f"{NEW}:a:next", Style.primary),
                     turn.quit_button()])
        await reply(turn.update, "\n".join(notes), keyboard(rows))
        return await handled(AUDIENCE)
    return await turn.ask(AUDIENCE, notes)


async def audience_pressed(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    query = turn.update.callback_query
    assert query is not None
    data, audience = turn.query_data, draft.audience
    if data == f"{NEW}:a:next":
        if not _chosen(audience):
            await query.answer(tr("notices.new.no_audience_yet"), show_alert=True)
            return await handled(AUDIENCE)
        draft.audience_done = True
        await turn.closing(await _audience_label(svc, tr, audience))
        return await turn.advance()
    if data == f"{NEW}:a:all":
        was = audience.get("all")
        audience.clear()
        if not was:
            audience["all"] = True
    else:
        match = re.fullmatch(rf"{NEW}:a:([zu]):(\d+)", data)
        model = {"z": Zone, "u": Unit}.get(match.group(1)) if match else None
        item = parse_id(match.group(2)) if match else None
        async with svc.db.session() as session:
            found = await session.get(model, item) if model and item else None
        if found is None or match is None:
            await query.answer(tr("errors.stale_button"), show_alert=True)
            return await handled(AUDIENCE)
        _toggle(audience, "zones" if match.group(1) == "z" else "units", found.id)
    await query.answer()
    prompt = await ask_audience(turn)
    await edit_query_message(turn.update, prompt.text, keyboard(prompt.buttons),
                             courtesy=True)
    return await handled(AUDIENCE)


async def text_given(turn: Turn) -> int:
    """The text, or a photo/document (its caption is the text; without one, asked next)."""
    tr, draft, update = turn.tr, turn.draft, turn.update
    message = update.effective_message
    attachment = flow.attachment_of(message)
    if attachment is None and message is not None and not message.text:
        return await turn.stay(TEXT, tr("notices.new.text_expected"))
    text = clean_text(_text(update))
    if attachment is not None:
        draft.attachment = attachment
        if not text and not draft.text:
            return await turn.stay(TEXT, tr("notices.new.attachment_added"))
    if text:
        if problem := text_problem(text):
            return await turn.stay(TEXT, tr(f"notices.new.text_{problem}", limit=TEXT_MAX,
                                            length=len(text)))
        draft.text = text
    elif not draft.text:
        return await turn.stay(TEXT, tr("notices.new.text_empty"))
    return await turn.advance()


async def when_given(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    if turn.update.callback_query is not None:
        draft.scheduled_for = None
        await turn.closing(tr("notices.button.send_now"))
        return await turn.ask(CONFIRM)
    text = _text(turn.update).strip()
    try:
        when = parse_deadline(text, svc.now(), flow.reader_zone_name(svc, turn.actor))
    except DeadlineError as error:
        code = error.code if error.code in {"in_the_past", "too_far"} else "unrecognised"
        return await turn.stay(WHEN, tr(f"notices.new.time_{code}", text=escape(text[:40])))
    draft.scheduled_for = when.isoformat()
    return await turn.ask(CONFIRM)


async def confirm_pressed(turn: Turn) -> int:
    svc, tr, draft, actor = turn.svc, turn.tr, turn.draft, turn.actor
    query = turn.update.callback_query
    assert query is not None
    verb, _, token = turn.query_data.removeprefix(f"{NEW}:").partition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, NEW_NOTICE.kind):
        return await handled(CONFIRM)
    if verb == "when":
        await query.answer()
        return await turn.ask(WHEN)
    if verb != "send" or token != draft.token or NEW_NOTICE.next_state(draft) != CONFIRM:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return await handled(CONFIRM)
    assert draft.kind is not None and draft.severity is not None and draft.text is not None
    when = draft.scheduled_for
    notice_draft = NoticeDraft(
        kind=NoticeKind(draft.kind), severity=Severity(draft.severity), text=draft.text,
        audience=dict(draft.audience), attachment=draft.attachment,
        scheduled_for=datetime.fromisoformat(when) if when else None,
        submission_key=draft.id)

    async def create(session: AsyncSession) -> tuple[str, int]:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        notice = await service.create_notice(session, notice_draft, actor=user, now=svc.now(),
                                             policy=_policy(svc))
        return notice.number, len(await store.room_states(session, notice))

    try:
        number, rooms = await NEW_NOTICE.submit(turn, create)
    except AlreadySubmitted as done:
        end_draft(turn.context, token, NEW_NOTICE.draft_key)
        await query.answer()
        await reply(turn.update, tr("notices.new.already_sent", number=done.numbers[0]))
        return await turn.end()
    except NoticeProblem as problem:
        await query.answer()
        notes = [tr(f"notices.problem.{problem.code}", **problem.values)]
        if problem.code in ("no_rooms", "no_audience"):
            draft.audience_done = False
        step = {"time_past": WHEN, "no_rooms": AUDIENCE, "no_audience": AUDIENCE}.get(
            problem.code, CONFIRM)
        return await turn.ask(step, notes)
    svc.wake_delivery()
    await svc.rescheduled(plan.NAME)
    await turn.closing(tr("notices.button.send"))
    if when:
        zone = time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)
        await reply(turn.update, tr("notices.new.scheduled", number=number,
                                    when=render.local_time(datetime.fromisoformat(when), zone,
                                                           with_year=True)))
    else:
        await reply(turn.update, tr("notices.new.sent", number=number, rooms=rooms))
    return await turn.end()


@guarded(Role.coordinator, Where.private)
async def correction_not_text(update: Update, context: Context, actor: Actor) -> int:
    """A photo or sticker where the corrected text is expected: say so, stay."""
    await reply(update, actor.tr("notices.new.text_expected"))
    return await handled(CORRECT)


# =========================================================================== 收到


@guarded(Role.officer)
async def ack_pressed(update: Update, context: Context, actor: Actor) -> None:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    chat = update.effective_chat
    now = svc.now()
    async with svc.db.session() as session:
        user = await user_by_telegram_id(session, actor.telegram_id)
        outcome = await service.acknowledge(session, query.data, actor=user,
                                            chat_id=chat.id if chat else None, now=now,
                                            policy=_policy(svc))
        first_at = outcome.delivery.acknowledged_at if outcome.delivery else None
        first_revision = (outcome.delivery.acknowledged_revision or 1) \
            if outcome.delivery else 1
        who = render.person(outcome.acknowledger)
    zone = time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)
    if outcome.verdict is Verdict.done:
        svc.wake_delivery()
        await query.answer(tr("notices.ack.done", number=outcome.notice.number
                              if outcome.notice else ""))
    elif outcome.verdict is Verdict.already:
        await query.answer(tr("notices.ack.already", who=who, revision=first_revision,
                              at=render.local_time(first_at or now, zone)), show_alert=True)
    else:
        await query.answer(tr(f"notices.ack.{outcome.verdict.value}"), show_alert=True)


# =========================================================================== /notices


async def _list_page(svc: Services, actor: Actor, page: int
                     ) -> tuple[str, InlineKeyboardMarkup | None]:
    tr = actor.tr
    zone = time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)
    async with svc.db.session() as session:
        found, total = await store.recent_notices(session, page=page)
        counts = await store.tallies(session, [n.id for n in found])
    pages = max((total + store.PAGE_SIZE - 1) // store.PAGE_SIZE, 1)
    lines = [tr("notices.list.title", total=total, page=min(page + 1, pages), pages=pages)]
    if not found:
        lines.append(tr("notices.list.empty"))
    for notice in found:
        tally = counts[notice.id]
        moment = notice.sent_at or notice.scheduled_for or notice.created_at
        lines.append(tr("notices.list.line", number=notice.number,
                        kind=kind_label(tr, notice.kind),
                        severity=severity_label(tr, notice.severity),
                        status=tr(f"notices.state.{notice.status.value}"),
                        at=render.local_time(moment, zone), rooms=tally.rooms,
                        delivered=tally.delivered, acknowledged=tally.acknowledged,
                        failed=tally.failed, text=escape(first_line(notice.text))))
    rows: list[list[tuple[str, str]]] = []
    view = [(n.number.rsplit("-", 1)[1].lstrip("0") or "0", f"{MANAGE}:v:{n.id}")
            for n in found]
    rows += [view[i:i + 4] for i in range(0, len(view), 4)]
    paging = []
    if page > 0:
        paging.append((tr("notices.button.previous"), f"{MANAGE}:p:{page - 1}"))
    if page + 1 < pages:
        paging.append((tr("notices.button.following"), f"{MANAGE}:p:{page + 1}"))
    if paging:
        rows.append(paging)
    return "\n".join(lines), keyboard(rows) if rows else None


@guarded(Role.coordinator, Where.private)
async def notices_command(update: Update, context: Context, actor: Actor) -> None:
    args = list(context.args or [])
    if args and _word(args[0]) in EXPORT_WORDS:
        await _export(update, context, actor, args[1] if len(args) > 1 else None)
        return
    if args:
        async with services(context).db.session() as session:
            notice = await store.get_notice(session, number=args[0])
        if notice is None:
            await reply(update, actor.tr("notices.view.not_found", number=escape(args[0][:40])))
            return
        await _show(update, context, actor, notice.id)
        return
    text, markup = await _list_page(services(context), actor, 0)
    await reply(update, text, markup)


async def _show(update: Update, context: Context, actor: Actor, notice_id: int) -> None:
    svc, tr = services(context), actor.tr
    async with svc.db.session() as session:
        notice = await store.get_notice(session, notice_id=notice_id)
        if notice is None:
            await reply(update, tr("notices.view.not_found", number=str(notice_id)))
            return
        text = await service.render_status(session, notice, now=svc.now(),
                                            policy=_policy(svc))
        if notice.status is NoticeStatus.scheduled and notice.scheduled_for:
            zone = time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)
            text += "\n" + tr("notices.view.scheduled", when=render.local_time(
                notice.scheduled_for, zone, with_year=True))
        body = notice.text if len(notice.text) <= VIEW_TEXT else notice.text[:VIEW_TEXT] + "…"
        text += "\n\n" + escape(body)
        status = notice.status
    rows = []
    if status is not NoticeStatus.withdrawn:
        rows.append([(tr("notices.button.correct"), f"{MANAGE}:c:{notice_id}"),
                     Button(tr("notices.button.withdraw"), f"{MANAGE}:w:{notice_id}",
                            Style.danger)])
    rows.append([(tr("notices.button.export"), f"{MANAGE}:x:{notice_id}")])
    await reply(update, text, keyboard(rows))


@guarded(Role.coordinator, Where.private)
async def manage_pressed(update: Update, context: Context, actor: Actor) -> None:
    """View, page, export, and the withdrawal's confirmation."""
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    match = re.fullmatch(rf"{MANAGE}:([vpxw]):(\d+)|{MANAGE}:([yn]):(\d+):({TOKEN})",
                         query.data or "")
    raw = (match.group(2) or match.group(4)) if match else None
    number = parse_id(raw) if raw and raw != "0" else 0
    if match is None or number is None:
        await query.answer(tr("errors.stale_button"), show_alert=True)
        return
    action, token = match.group(1) or match.group(3), match.group(5)
    if token is not None and not await confirmation_open(
            update, context, tr, token, WITHDRAW):
        return
    if action == "p":
        await query.answer()
        text, markup = await _list_page(svc, actor, number)
        await edit_query_message(update, text, markup, courtesy=True)
    elif action == "v":
        await query.answer()
        await _show(update, context, actor, number)
    elif action == "x":
        await query.answer()
        await _export(update, context, actor, None, notice_id=number)
    elif action == "w":
        await query.answer()
        token = offer_confirmation(context, WITHDRAW, number)
        await reply(update, tr("notices.withdraw.confirm"), keyboard([[
            Button(tr("notices.button.withdraw_yes"), f"{MANAGE}:y:{number}:{token}",
                   Style.danger),
            (tr("notices.button.cancel"), f"{MANAGE}:n:{number}:{token}")]]))
    elif action == "n":
        close_confirmation(context, token, CANCELLED)
        await query.answer()
        await edit_query_message(update, tr("notices.withdraw.kept"), courtesy=True)
    else:
        await _withdraw(update, context, actor, number, token)


async def _withdraw(update: Update, context: Context, actor: Actor, notice_id: int,
                    token: str) -> None:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            notice = await store.get_notice(session, notice_id=notice_id, for_update=True)
            if notice is None or user is None:
                raise NoticeProblem("not_found")
            edited = await service.withdraw_notice(session, notice, actor=user,
                                                   now=svc.now(), policy=_policy(svc))
            number = notice.number
    except NoticeProblem as problem:
        await query.answer(tr(f"notices.problem.{problem.code}", **problem.values),
                           show_alert=True)
        return
    close_confirmation(context, token, USED)
    svc.wake_delivery()
    await svc.rescheduled(plan.NAME)
    await query.answer()
    await edit_query_message(update, tr("notices.withdraw.done", number=number, rooms=edited),
                             courtesy=True)


async def _export(update: Update, context: Context, actor: Actor, number: str | None, *,
                  notice_id: int | None = None) -> None:
    """The final report of one notice (the latest sent by default) as CSV."""
    svc, tr = services(context), actor.tr
    zone = time_zone(flow.reader_zone_name(svc, actor), svc.settings.bot_timezone)
    async with svc.db.session() as session:
        if notice_id is not None:
            notice = await store.get_notice(session, notice_id=notice_id)
        elif number:
            notice = await store.get_notice(session, number=number)
        else:
            notice = await store.latest_notice(session)
        if notice is None:
            await reply(update, tr("notices.view.not_found", number=escape((number or "")[:40])))
            return
        states = await store.room_states(session, notice)
        header, rows = report_table(tr, notice, states, zone)
        user = await user_by_telegram_id(session, actor.telegram_id)
        await audit(session, "notice.export", actor=user, subject_type="notice",
                    subject_id=notice.number, rooms=len(rows))
        label = notice.number
    data = await asyncio.to_thread(reports.to_csv, header, rows)
    message = update.effective_message
    assert message is not None
    await message.reply_document(document=data, filename=f"{label}.csv",
                                 caption=tr("notices.report.caption", number=label,
                                            rooms=len(rows)))


# --------------------------------------------------------------------------- correction


@guarded(Role.coordinator, Where.private)
async def correct_pressed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None and context.user_data is not None
    match = re.fullmatch(rf"{MANAGE}:c:(\d+)", query.data or "")
    notice_id = parse_id(match.group(1)) if match else None
    async with svc.db.session() as session:
        notice = await store.get_notice(session, notice_id=notice_id) if notice_id else None
    if notice is None or notice.status is NoticeStatus.withdrawn:
        await query.answer(tr("notices.problem.already_withdrawn") if notice
                           else tr("errors.stale_button"), show_alert=True)
        return await handled(END)
    await query.answer()
    token = offer_confirmation(context, CORRECTION)
    context.user_data[CORRECTING] = {"id": notice.id, "at": svc.now().isoformat(),
                                     "token": token}
    await reply(update, tr("notices.correct.ask", number=notice.number, limit=TEXT_MAX),
                keyboard([[_cancel_button(tr, token)]]))
    return await handled(CORRECT)


@guarded(Role.coordinator, Where.private)
async def correction_typed(update: Update, context: Context, actor: Actor) -> int:
    svc, tr = services(context), actor.tr
    assert context.user_data is not None
    pending = context.user_data.get(CORRECTING)
    if not pending or svc.now() - datetime.fromisoformat(pending["at"]) > DRAFT_TTL:
        context.user_data.pop(CORRECTING, None)
        return END
    try:
        async with svc.db.session() as session:
            user = await user_by_telegram_id(session, actor.telegram_id)
            notice = await store.get_notice(session, notice_id=pending["id"], for_update=True)
            if notice is None or user is None:
                raise NoticeProblem("not_found")
            edited = await service.correct_notice(session, notice, _text(update), actor=user,
                                                  now=svc.now(), policy=_policy(svc))
            number, revision = notice.number, notice.revision
    except NoticeProblem as problem:
        await reply(update, tr(f"notices.problem.{problem.code}", **problem.values))
        return await handled(CORRECT)
    context.user_data.pop(CORRECTING, None)
    close_confirmation(context, pending.get("token") or "", USED)
    svc.wake_delivery()
    await reply(update, tr("notices.correct.done", number=number, revision=revision,
                           rooms=edited))
    return await handled(END)


# =========================================================================== wiring


def register(application: Application) -> None:
    svc: Services | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None:
        plan.status_refresher(svc)
    text = filters.TEXT & ~filters.COMMAND
    files = filters.PHOTO | filters.Document.ALL
    other = ~filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # Buttons inside a per-chat conversation are intended (not tracked per message).
        warnings.simplefilter("ignore", PTBUserWarning)
        on, not_text = NEW_NOTICE.on, NEW_NOTICE.not_text
        notice_flow = NEW_NOTICE.conversation(
            entry_points=[CommandHandler("notice", notice_command),
                          CallbackQueryHandler(correct_pressed, pattern=rf"^{MANAGE}:c:")],
            states={
                KIND: [MessageHandler(text, on(kind_chosen)),
                       CallbackQueryHandler(on(kind_chosen), pattern=rf"^{NEW}:k:"),
                       MessageHandler(other, not_text(KIND))],
                SEVERITY: [MessageHandler(text, on(severity_chosen)),
                           CallbackQueryHandler(on(severity_chosen), pattern=rf"^{NEW}:s:"),
                           MessageHandler(other, not_text(SEVERITY))],
                AUDIENCE: [MessageHandler(text, on(audience_typed)),
                           CallbackQueryHandler(on(audience_pressed), pattern=rf"^{NEW}:a:"),
                           MessageHandler(other, not_text(AUDIENCE))],
                TEXT: [MessageHandler(text | files, on(text_given)),
                       MessageHandler(other, not_text(TEXT))],
                WHEN: [MessageHandler(text, on(when_given)),
                       CallbackQueryHandler(on(when_given), pattern=rf"^{NEW}:now$"),
                       MessageHandler(other, not_text(WHEN))],
                CONFIRM: [MessageHandler(text, NEW_NOTICE.typed_at_confirm),
                          CallbackQueryHandler(on(confirm_pressed),
                                               pattern=rf"^{NEW}:(send|when)(:{TOKEN})?$")],
                CORRECT: [MessageHandler(text, correction_typed),
                          MessageHandler(other, correction_not_text)],
            },
        )
    # Group -1: a typed answer inside the flow must not also reach plain-text features.
    application.add_handler(notice_flow, group=-1)
    application.add_handler(CommandHandler("notices", notices_command))
    application.add_handler(CallbackQueryHandler(ack_pressed, pattern=rf"^{CALLBACK}:"))
    application.add_handler(CallbackQueryHandler(manage_pressed, pattern=rf"^{MANAGE}:"))
    application.add_handler(CallbackQueryHandler(NEW_NOTICE.quit,
                                                 pattern=rf"^{NEW}:quit(:{TOKEN})?$"))
    application.add_handler(CallbackQueryHandler(NEW_NOTICE.stale_button, pattern=rf"^{NEW}:"))
