"""Meetings: /meetings (list, .ics), /meeting (details; coordinators: new, edit, cancel),
and /missed for coordinators; register() wires every meeting handler: the new-meeting
flow (meeting_new.py), edits and cancellations (meeting_edit.py), the buttons on
invitations and reminders (meeting_rsvp.py).

Reminders themselves are written by bot/plans/meetings.py when they fall due.
"""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timedelta

from telegram import Update
from telegram.ext import Application
from telegram.ext import ApplicationHandlerStop
from telegram.ext import CallbackQueryHandler
from telegram.ext import CommandHandler
from telegram.ext import MessageHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.plans import meetings as plan
from bot.services import SERVICES_KEY
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.enums import MeetingStatus
from core.enums import Role
from handlers.common import Context
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import reply
from handlers.flow import TYPED
from handlers.flow import side_conversation
from handlers.meeting_common import CB
from handlers.meeting_common import Scope
from handlers.meeting_common import actor_zone
from handlers.meeting_common import is_coordinator
from handlers.meeting_common import may_see
from handlers.meeting_common import parse_meeting_id
from handlers.meeting_common import reader_scope
from handlers.meeting_common import send_calendar
from handlers.meeting_edit import cancel_command
from handlers.meeting_edit import cancel_pressed
from handlers.meeting_edit import edit_meeting
from handlers.meeting_new import AGENDA
from handlers.meeting_new import CONFIRM
from handlers.meeting_new import END
from handlers.meeting_new import KIND
from handlers.meeting_new import NEW_MEETING
from handlers.meeting_new import PLACE
from handlers.meeting_new import START
from handlers.meeting_new import TITLE
from handlers.meeting_new import UNITS
from handlers.meeting_new import ZONE
from handlers.meeting_new import got_agenda
from handlers.meeting_new import got_confirm
from handlers.meeting_new import got_end
from handlers.meeting_new import got_kind
from handlers.meeting_new import got_place
from handlers.meeting_new import got_start
from handlers.meeting_new import got_title
from handlers.meeting_new import got_units
from handlers.meeting_new import got_zone
from handlers.meeting_new import start_new
from handlers.meeting_new import zone_typed
from handlers.meeting_rsvp import DELEGATE
from handlers.meeting_rsvp import delegate_named
from handlers.meeting_rsvp import delegate_pressed
from handlers.meeting_rsvp import rsvp_pressed
from handlers.meeting_rsvp import tally_pressed
from i18n import Translator
from i18n.formats import fmt_minutes
from i18n.formats import fmt_when
from storage.meetings import get_meeting
from storage.meetings import upcoming_meetings
from storage.models import Meeting
from storage.schedules import missed_marks
from storage.schedules import rooms_for_units

COMMANDS = [
    CommandInfo("meetings", Role.officer, Where.anywhere, "meetings.list"),
    CommandInfo("meeting", Role.coordinator, Where.private, "meetings.manage"),
    CommandInfo("missed", Role.coordinator, Where.anywhere, "meetings.missed"),
]

LIST_LIMIT = 15  # meetings listed by /meetings, each with its 📅 button
HORIZON = timedelta(days=120)


# --------------------------------------------------------------------------- /meetings


def list_text(
    tr: Translator, meetings: list[Meeting], scope: Scope, now: datetime, missed: int
) -> str:
    if not meetings:
        lines = [tr("meetings.list.empty")]
    else:
        lines = [tr("meetings.list.head", count=len(meetings))]
        for meeting in meetings:
            zone_name = scope.zone_name
            lines.append(tr("meetings.list.item", id=meeting.id,
                            when=fmt_when(tr, meeting.starts_at, zone_name, now=now),
                            title=escape(meeting.title), kind=plan.kind_label(tr, meeting)))
            details = []
            if meeting.place:
                details.append("📍 " + escape(meeting.place))
            elif meeting.video_link:
                details.append("🔗 " + tr("meetings.list.video"))
            if scope.rsvp_unit is not None:
                line = plan.rsvp_line(tr, meeting, scope.rsvp_unit)
                if line:
                    details.append(line)
            if details:
                lines.append("    " + " · ".join(details))
    if missed:
        lines += ["", tr("meetings.list.missed", count=missed)]
    lines += ["", tr("meetings.list.hint")]
    return "\n".join(lines)


@guarded(Role.officer)
async def meetings_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    args = [a.lower() for a in context.args or []]
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        meetings = await upcoming_meetings(session, now, unit_ids=scope.unit_ids,
                                           until=now + HORIZON, limit=LIST_LIMIT)
        missed = (len(await missed_marks(session, now - timedelta(days=7)))
                  if is_coordinator(actor) else 0)
    if args and args[0] in {"ics", "ical", "calendar", "日历", "日曆"}:
        if not meetings:
            await reply(update, tr("meetings.list.empty"))
            return
        await send_calendar(update, context, tr, meetings, scope.zone_name, "meetings.ics", now)
        return
    buttons = [[(f"📅 #{m.id}", f"{CB}:ics:{m.id}") for m in meetings[i:i + 3]]
               for i in range(0, len(meetings), 3)]
    if meetings:
        buttons.append([(tr("meetings.buttons.ics_all"), f"{CB}:icsall")])
    await reply(update, list_text(tr, meetings, scope, now, missed),
                keyboard(buttons) if meetings else None)


@guarded(Role.officer)
async def ics_pressed(update: Update, context: Context, actor: Actor) -> None:
    query = update.callback_query
    assert query is not None
    svc, tr, now = services(context), actor.tr, services(context).now()
    data = query.data or ""
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        if data == f"{CB}:icsall":
            meetings = await upcoming_meetings(session, now, unit_ids=scope.unit_ids,
                                               until=now + HORIZON, limit=100)
            filename = "meetings.ics"
        else:
            # Forged data (no id, a huge one) finds nothing rather than failing.
            found = re.fullmatch(rf"{CB}:ics:(\d{{1,9}})", data)
            meeting = await get_meeting(session, int(found[1])) if found else None
            meetings = [meeting] if meeting is not None and may_see(scope, meeting) else []
            filename = f"meeting-{meeting.id}.ics" if meetings and meeting else "meeting.ics"
            if meetings and meeting and meeting.status is MeetingStatus.cancelled:
                # A button from before the cancellation: no calendar entry for it.
                await query.answer(tr("meetings.errors.cancelled"), show_alert=True)
                return
    if not meetings:
        await query.answer(tr("meetings.errors.not_found"), show_alert=True)
        return
    await query.answer()
    await send_calendar(update, context, tr, meetings, scope.zone_name, filename, now)


# --------------------------------------------------------------------------- /missed


@guarded(Role.coordinator)
async def missed_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    zone_name = actor_zone(svc, actor)
    async with svc.db.session() as session:
        marks = await missed_marks(session, now - timedelta(days=14))
    if not marks:
        await reply(update, tr("meetings.missed.none"))
        return
    lines = [tr("meetings.missed.head", count=len(marks))]
    for mark in marks:
        detail = mark.detail or {}
        what = detail.get("what", "")
        label = tr(f"meetings.missed.what.{what}") if what in MISSED_KINDS else escape(mark.key)
        subject = escape(str(detail.get("title") or detail.get("room") or detail.get("zone")
                             or detail.get("number") or ""))
        lines.append(tr("meetings.missed.item", due=fmt_when(tr, mark.due_at, zone_name, now=now),
                        what=label, subject=subject))
    await reply(update, "\n".join(lines))


MISSED_KINDS = {"meeting_reminder", "handover", "shift_reminder", "chair_reminder",
                "chair_handover", "request_escalation"}


# --------------------------------------------------------------------------- /meeting


@guarded(Role.officer)
async def meeting_command(update: Update, context: Context, actor: Actor) -> int | None:
    args = context.args or []
    tr = actor.tr
    verb = args[0].lower() if args else ""
    if verb in {"new", "新建", "新增", "创建", "建立"}:
        return await start_new(update, context, actor)
    if verb in {"edit", "修改", "变更", "變更"}:
        await edit_meeting(update, context, actor, args[1:])
    elif verb in {"cancel", "取消"}:
        await cancel_command(update, context, actor, args[1:])
    elif (meeting_id := parse_meeting_id(verb)) is not None:
        await show_meeting(update, context, actor, meeting_id)
    else:
        await reply(update, tr("meetings.manage.usage"))
    # Answered: no later handler (the unknown-command fallback) sees it, and a draft in
    # progress stays where it was.
    raise ApplicationHandlerStop


async def show_meeting(update: Update, context: Context, actor: Actor, meeting_id: int) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    async with svc.db.session() as session:
        scope = await reader_scope(session, update, actor, svc)
        meeting = await get_meeting(session, meeting_id)
        if meeting is None or not may_see(scope, meeting):
            await reply(update, tr("meetings.errors.not_found"))
            return
        rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    parts = [plan.card(tr, meeting, scope.zone_name, now=now)]
    if meeting.status is MeetingStatus.cancelled:
        parts.insert(0, tr("meetings.tally.cancelled"))
    parts.append(tr("meetings.show.reminders",
                    offsets=tr.join(fmt_minutes(tr, o) for o in meeting.reminder_offsets or [])))
    if is_coordinator(actor):
        parts.append("")
        parts.append(plan.tally_text(tr, meeting, rooms, scope.zone_name, now=now))
    elif scope.rsvp_unit is not None:
        line = plan.rsvp_line(tr, meeting, scope.rsvp_unit)
        if line:
            parts.append(line)
    cancelled = meeting.status is MeetingStatus.cancelled
    rows = [] if cancelled else [[(tr("meetings.buttons.ics"), f"{CB}:ics:{meeting.id}")]]
    await reply(update, "\n".join(parts), keyboard(rows) if rows else None)


# --------------------------------------------------------------------------- wiring


def register(application: Application) -> None:
    svc: Services | None = application.bot_data.get(SERVICES_KEY)
    if svc is not None and svc.scheduler is not None:
        # SCHEDULE_GRACE_MINUTES: how late a catch-up may still send (marked late).
        svc.scheduler.grace = timedelta(minutes=svc.settings.schedule_grace_minutes)
    on, answers = NEW_MEETING.on, NEW_MEETING.answers
    new_flow = NEW_MEETING.conversation(
        entry_points=[CommandHandler("meeting", meeting_command)],
        states={
            TITLE: answers(TITLE, got_title),
            KIND: answers(KIND, got_kind, got_kind, rf"^{CB}:new:kind:"),
            ZONE: answers(ZONE, zone_typed, got_zone, rf"^{CB}:new:zone:"),
            START: answers(START, got_start),
            END: answers(END, got_end),
            PLACE: answers(PLACE, got_place),
            UNITS: answers(UNITS, got_units),
            AGENDA: answers(AGENDA, got_agenda),
            CONFIRM: [MessageHandler(TYPED, NEW_MEETING.typed_at_confirm),
                      CallbackQueryHandler(on(got_confirm),
                                           pattern=rf"^{CB}:new:(ok|no)(:[0-9a-f]{{8}})?$")],
        },
    )
    delegate_flow = side_conversation(
        "meeting_delegate",
        entry_points=[CallbackQueryHandler(delegate_pressed, pattern=rf"^{CB}:r:\d+:g:")],
        states={DELEGATE: [MessageHandler(TYPED, delegate_named)]},
        fallbacks=[CommandHandler("cancel", NEW_MEETING.quit)],
    )
    # Group -1: a typed answer inside these flows must not also reach plain-text features.
    application.add_handler(new_flow, group=-1)
    application.add_handler(delegate_flow, group=-1)
    application.add_handler(CommandHandler("meetings", meetings_command))
    application.add_handler(CommandHandler("missed", missed_command))
    application.add_handler(CallbackQueryHandler(rsvp_pressed, pattern=rf"^{CB}:r:\d+:[ad]:"))
    application.add_handler(CallbackQueryHandler(ics_pressed, pattern=rf"^{CB}:ics"))
    application.add_handler(CallbackQueryHandler(tally_pressed, pattern=rf"^{CB}:t:[0-9]{{1,9}}$"))
    application.add_handler(CallbackQueryHandler(NEW_MEETING.stale_button,
                                                 pattern=rf"^{CB}:new:"))
    application.add_handler(CallbackQueryHandler(cancel_pressed, pattern=rf"^{CB}:mc:[yn]:"))
