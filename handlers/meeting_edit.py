"""/meeting edit and /meeting cancel (coordinators).

This module writes the change and cancellation notices (outbox rows in the same
transaction as the change) and asks the scheduler to re-place the meeting jobs after
each commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.plans import meetings as plan
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.enums import MeetingStatus
from core.enums import Role
from core.meetings import parse_meeting_kind
from core.meetings import parse_offsets
from handlers.common import CANCELLED
from handlers.common import USED
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import close_confirmation
from handlers.common import confirmation
from handlers.common import confirmation_open
from handlers.common import escape
from handlers.common import guarded
from handlers.common import keyboard
from handlers.common import offer_confirmation
from handlers.common import reply
from handlers.meeting_common import AGENDA_LIMIT
from handlers.meeting_common import CB
from handlers.meeting_common import MAX_OFFSET_MINUTES
from handlers.meeting_common import PLACE_LIMIT
from handlers.meeting_common import SKIP
from handlers.meeting_common import TITLE_LIMIT
from handlers.meeting_common import URL
from handlers.meeting_common import acting_user
from handlers.meeting_common import actor_zone
from handlers.meeting_common import check_text
from handlers.meeting_common import default_zone
from handlers.meeting_common import end_problem
from handlers.meeting_common import invited_units
from handlers.meeting_common import is_coordinator
from handlers.meeting_common import parse_end
from handlers.meeting_common import parse_meeting_id
from handlers.meeting_common import parse_time
from i18n import Translator
from i18n.formats import fmt_span
from storage import outbox
from storage.meetings import cancel_meeting
from storage.meetings import get_meeting
from storage.meetings import update_meeting
from storage.models import Meeting
from storage.schedules import rooms_for_units
from views.buttons import Button
from views.buttons import Style

# Confirmation kind (handlers/common.py) of /meeting cancel's question.
CANCEL = "meeting_cancel"

EDIT_FIELDS = {
    "title": "title", "名称": "title", "标题": "title", "名稱": "title", "標題": "title",
    "kind": "kind", "类型": "kind", "類型": "kind",
    "start": "start", "time": "start", "时间": "start", "開始": "start", "开始": "start",
    "時間": "start",
    "end": "end", "结束": "end", "結束": "end",
    "place": "place", "地点": "place", "地點": "place",
    "link": "link", "video": "link", "链接": "link", "連結": "link", "鏈接": "link",
    "agenda": "agenda", "议程": "agenda", "議程": "agenda",
    "units": "units", "单位": "units", "單位": "units", "参会单位": "units", "參會單位": "units",
    "reminders": "reminders", "提醒": "reminders",
}


def _require_coordinator(actor: Actor) -> None:
    if not is_coordinator(actor):
        raise Refusal(actor.tr("errors.not_allowed"))


def _meeting_id(tr: Translator, text: str | None) -> int:
    meeting_id = parse_meeting_id(text)
    if meeting_id is None:
        raise Refusal(tr("meetings.manage.usage"))
    return meeting_id


async def _live_meeting(session: AsyncSession, tr: Translator, meeting_id: int) -> Meeting:
    """The meeting to edit or to cancel: it exists and is not cancelled already."""
    meeting = await get_meeting(session, meeting_id)
    if meeting is None:
        raise Refusal(tr("meetings.errors.not_found"))
    if meeting.status is MeetingStatus.cancelled:
        raise Refusal(tr("meetings.errors.cancelled"))
    return meeting


async def announce_change(
    session: AsyncSession, svc: Services, meeting: Meeting, changed: dict[str, Any],
    removed_units: list[int], now: datetime,
) -> list[str]:
    """Change notice to every participant's room (and a farewell to removed units)."""
    tr = Translator(svc.settings.default_language)
    names = tr.join(tr(f"meetings.fields.{name}") for name in changed if name != "zone_id")
    key = f"meeting:{meeting.id}:rev{meeting.revision}"
    reachable, unreachable = await plan.participant_rooms(session, meeting, default_zone(svc))
    for participant, room, zone_name in reachable:
        text = plan.room_message(tr, meeting, participant.unit_id, zone_name, "c", now=now)
        text += "\n" + tr("meetings.notify.what_changed", fields=names)
        await outbox.enqueue(session, chat_id=room.chat_id, kind="meeting_change", text=text,
                             payload={**plan.HTML,
                                      "reply_markup": plan.rsvp_keyboard(tr, meeting.id, "c")},
                             dedup_key=f"{key}:room{room.id}", now=now)
    for unit_id, room in (await rooms_for_units(session, removed_units)).items():
        zone_name = plan.room_zone(room, plan.meeting_zone(meeting, default_zone(svc)))
        await outbox.enqueue(
            session, chat_id=room.chat_id, kind="meeting_change",
            text=tr("meetings.notify.removed", title=escape(meeting.title),
                    when=fmt_span(tr, meeting.starts_at, meeting.ends_at, zone_name, now=now)),
            payload=plan.HTML, dedup_key=f"{key}:removed:unit{unit_id}", now=now)
    return unreachable


async def edit_meeting(update: Update, context: Context, actor: Actor, args: list[str]) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    _require_coordinator(actor)
    if len(args) < 3:
        raise Refusal(tr("meetings.edit.usage"))
    meeting_id = _meeting_id(tr, args[0])
    field = EDIT_FIELDS.get(args[1].lower())
    if field is None:
        raise Refusal(tr("meetings.edit.unknown_field", field=escape(args[1])))
    value = " ".join(args[2:]).strip()
    async with svc.db.session() as session:
        meeting = await _live_meeting(session, tr, meeting_id)
        zone_name = plan.meeting_zone(meeting, actor_zone(svc, actor))
        changes: dict[str, Any] = {}
        unit_ids = None
        if field == "title":
            changes["title"] = check_text(tr, value, TITLE_LIMIT)
        elif field == "kind":
            kind = parse_meeting_kind(value)
            if kind is None:
                raise Refusal(tr("meetings.errors.unknown_kind", kind=escape(value)))
            changes["kind"] = kind
        elif field == "start":
            start = parse_time(tr, value, now, zone_name)
            changes["starts_at"] = start
            changes["ends_at"] = start + (meeting.ends_at - meeting.starts_at)
        elif field == "end":
            end = parse_end(value, meeting.starts_at, now, zone_name)
            if end is None:
                raise Refusal(tr("meetings.errors.time_unrecognised", text=escape(value)))
            if (problem := end_problem(meeting.starts_at, end)) is not None:
                raise Refusal(tr(problem))
            changes["ends_at"] = end
        elif field == "place":
            changes["place"] = None if value.lower() in SKIP else check_text(
                tr, value, PLACE_LIMIT)
        elif field == "link":
            if value.lower() in SKIP:
                changes["video_link"] = None
            elif URL.fullmatch(value):
                changes["video_link"] = value
            else:
                raise Refusal(tr("meetings.errors.bad_link"))
        elif field == "agenda":
            changes["agenda"] = None if value.lower() in SKIP else check_text(
                tr, value, AGENDA_LIMIT)
        elif field == "units":
            unit_ids = [u.id for u in await invited_units(session, tr, value,
                                                          meeting.zone_id)]
        elif field == "reminders":
            offsets = parse_offsets(value, maximum=MAX_OFFSET_MINUTES)
            if offsets is None:
                raise Refusal(tr("meetings.errors.bad_offsets"))
            changes["reminder_offsets"] = offsets
        before_units = [p.unit_id for p in meeting.participants]
        user = await acting_user(session, actor)
        changed = await update_meeting(session, meeting, actor=user, unit_ids=unit_ids,
                                       **changes)
        if not changed:
            raise Refusal(tr("meetings.edit.unchanged"))
        meeting = await get_meeting(session, meeting_id)
        assert meeting is not None
        await plan.skip_past_reminders(session, meeting, now)
        removed = [u for u in before_units if u not in {p.unit_id for p in
                                                        meeting.participants}]
        unreachable = await announce_change(session, svc, meeting, changed, removed, now)
        await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                              default_language=svc.settings.default_language,
                              edit_key=f"meeting:{meeting.id}:tally:rev{meeting.revision}")
        text = tr("meetings.edit.done", id=meeting.id,
                  fields=tr.join(tr(f"meetings.fields.{n}") for n in changed))
        if unreachable:
            text += "\n" + tr("meetings.created.unreachable",
                              units=escape(tr.join(unreachable)))
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await reply(update, text)


async def cancel_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    """/meeting cancel ID [REASON]: asks first, naming the meeting and its time."""
    svc, tr, now = services(context), actor.tr, services(context).now()
    _require_coordinator(actor)
    meeting_id = _meeting_id(tr, args[0] if args else None)
    reason = " ".join(args[1:]).strip() or None
    if reason and len(reason) > PLACE_LIMIT:
        raise Refusal(tr("errors.too_long", limit=PLACE_LIMIT))
    async with svc.db.session() as session:
        meeting = await _live_meeting(session, tr, meeting_id)
        question = tr("meetings.cancel.confirm", id=meeting.id, title=escape(meeting.title),
                      when=fmt_span(tr, meeting.starts_at, meeting.ends_at,
                                    plan.meeting_zone(meeting, actor_zone(svc, actor)),
                                    now=now))
    token = offer_confirmation(context, CANCEL, meeting_id, extra={"reason": reason})
    await reply(update, question, keyboard([[
        Button(tr("meetings.buttons.cancel_yes"), f"{CB}:mc:y:{token}", Style.danger),
        (tr("meetings.buttons.cancel_no"), f"{CB}:mc:n:{token}")]]))


@guarded(Role.officer)
async def cancel_pressed(update: Update, context: Context, actor: Actor) -> None:
    """The answer to /meeting cancel's question, checked against the meeting as it is now."""
    svc, tr = services(context), actor.tr
    query = update.callback_query
    assert query is not None
    answer, _, token = (query.data or "").removeprefix(f"{CB}:mc:").partition(":")
    if not await confirmation_open(update, context, tr, token, CANCEL):
        return
    await query.answer()
    if answer != "y":
        close_confirmation(context, token, CANCELLED)
        await query.edit_message_text(tr("meetings.cancel.kept"))
        return
    entry = confirmation(context, token)
    close_confirmation(context, token, USED)
    try:
        text = await _cancel_meeting(svc, actor, int(entry["subject"]),
                                     entry["extra"].get("reason"))
    except Refusal as refusal:
        await query.edit_message_text(refusal.text)
        return
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.edit_message_text(text)


async def _cancel_meeting(svc: Services, actor: Actor, meeting_id: int,
                          reason: str | None) -> str:
    """Cancel, tell every participant's duty room, update the tally; what to answer."""
    tr, now = actor.tr, svc.now()
    _require_coordinator(actor)
    async with svc.db.session() as session:
        meeting = await get_meeting(session, meeting_id)
        if meeting is None:
            raise Refusal(tr("meetings.errors.not_found"))
        user = await acting_user(session, actor)
        if not await cancel_meeting(session, meeting, actor=user, reason=reason):
            raise Refusal(tr("meetings.errors.cancelled"))
        room_tr = Translator(svc.settings.default_language)
        reachable, unreachable = await plan.participant_rooms(session, meeting, default_zone(svc))
        for _, room, zone_name in reachable:
            text = room_tr("meetings.notify.cancelled", title=escape(meeting.title),
                           when=fmt_span(room_tr, meeting.starts_at, meeting.ends_at,
                                         zone_name, now=now))
            if reason:
                text += "\n" + room_tr("meetings.notify.reason", reason=escape(reason))
            await outbox.enqueue(session, chat_id=room.chat_id, kind="meeting_cancel",
                                 text=text, payload=plan.HTML,
                                 dedup_key=f"meeting:{meeting.id}:cancel:room{room.id}",
                                 now=now)
        await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                              default_language=svc.settings.default_language,
                              edit_key=f"meeting:{meeting.id}:tally:cancel")
        text = tr("meetings.cancel.done", id=meeting.id, title=escape(meeting.title))
        if unreachable:
            text += "\n" + tr("meetings.created.unreachable",
                              units=escape(tr.join(unreachable)))
    return text
