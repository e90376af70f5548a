"""Shift handovers and officers' shift reminders, computed from each duty room's roster.

Occurrences:
- `handover:room<id>:<shift start>` — at every shift change the room gets a brief:
  outgoing and incoming officer, open incoming requests with their deadlines, notices not
  yet acknowledged, meetings in the next 24 hours;
- `shiftrem:room<id>:<shift start>:m<member>:<offset>` — the incoming officer's private
  reminders, at the offsets each officer chose (default 1 day and 1 hour before).

Both are computed with overrides and confirmed swaps applied, so a brief names whoever
really takes the shift, and an officer whose shift was swapped away has no reminder
occurrence at all (the member id is part of the key). Changing a roster claims the
occurrences that are already due as "skipped", so an edit never produces a burst of
late or "missed" messages for shifts that were planned differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import DEFAULT_LOOKBACK
from bot.scheduler import FeaturePlanner
from bot.scheduler import Occurrence
from bot.scheduler import claim_occurrence
from core.enums import RequestStatus
from core.rotation import Shift
from core.schedule import DEFAULT_SHIFT_OFFSETS
from core.schedule import offset_label
from core.schedule import reminders_before
from i18n import Translator
from i18n.formats import fmt_clock
from i18n.formats import fmt_minutes
from i18n.formats import fmt_when
from storage import outbox
from storage.access import audit
from storage.duty import RosterView
from storage.duty import load_view
from storage.duty import view_of
from storage.meetings import meetings_for_unit_between
from storage.models import AssistanceRequest
from storage.models import Notice
from storage.models import Roster
from storage.models import RosterMember
from storage.models import ShiftOverride
from storage.models import User
from storage.roster import active_rosters
from storage.roster import get_roster
from storage.roster import member_preferences
from storage.roster import member_telegram_ids
from storage.roster import overrides_between
from storage.schedules import open_incoming_requests
from storage.schedules import unacknowledged_notices
from views import HTML

if TYPE_CHECKING:
    from bot.services import Services

NAME = "roster"
PREFERENCE = "shift_reminders"
MAX_SHIFT_OFFSET = timedelta(days=7)
SUBJECT_LIMIT = 40
BRIEF_ITEMS = 8


def stamp(instant: datetime) -> str:
    return f"{instant:%Y%m%dT%H%MZ}"


def handover_key(room_id: int, start: datetime) -> str:
    return f"handover:room{room_id}:{stamp(start)}"


def reminder_key(room_id: int, start: datetime, member_id: int, offset: int) -> str:
    return f"shiftrem:room{room_id}:{stamp(start)}:m{member_id}:{offset_label(offset)}"


def shift_offsets(preferences: dict[str, Any]) -> list[int]:
    """An officer's reminder offsets in minutes ([] = no reminders)."""
    value = preferences.get(PREFERENCE)
    if value is None:
        return list(DEFAULT_SHIFT_OFFSETS)
    return [int(v) for v in value if 0 < int(v) <= MAX_SHIFT_OFFSET.total_seconds() // 60]


# --------------------------------------------------------------------------- occurrences


async def roster_occurrences(
    session: AsyncSession, rosters: Sequence[Roster], start: datetime, end: datetime
) -> list[Occurrence]:
    found: list[Occurrence] = []
    if not rosters:
        return found
    margin = timedelta(days=8)
    every = await overrides_between(session, [r.id for r in rosters], start - margin,
                                    end + MAX_SHIFT_OFFSET + margin)
    by_roster: dict[int, list[ShiftOverride]] = {}
    for override in every:
        by_roster.setdefault(override.roster_id, []).append(override)
    all_members = [m for r in rosters for m in r.members]
    telegram = await member_telegram_ids(session, all_members)
    preferences = await member_preferences(session, all_members)
    for roster in rosters:
        view = view_of(roster, by_roster.get(roster.id, []))
        if view is None:
            continue
        room = roster.duty_room
        for shift in view.shifts(start, end):
            member = view.member(shift)
            found.append(Occurrence(
                handover_key(view.room_id, shift.start), shift.start,
                {"what": "handover", "roster_id": roster.id, "room_id": view.room_id,
                 "room": room.title, "shift_start": shift.start.isoformat(),
                 "member_id": member.id},
                roster.created_at,
            ))
        for shift in view.shifts(start, end + MAX_SHIFT_OFFSET):
            member = view.member(shift)
            if member.id not in telegram:
                continue
            for planned in reminders_before(shift.start,
                                            shift_offsets(preferences.get(member.id, {}))):
                if start <= planned.due_at < end:
                    found.append(Occurrence(
                        reminder_key(view.room_id, shift.start, member.id,
                                     planned.offset_minutes),
                        planned.due_at,
                        {"what": "shift_reminder", "roster_id": roster.id,
                         "room_id": view.room_id, "room": room.title,
                         "shift_start": shift.start.isoformat(), "member_id": member.id,
                         "offset": planned.offset_minutes},
                        roster.created_at,
                    ))
    return found


async def skip_due(
    session: AsyncSession, roster_id: int, now: datetime,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> int:
    """After a roster change: what is already due was planned on the old roster; claim it
    as skipped so it is neither sent late nor reported missed."""
    roster = await get_roster(session, roster_id)
    if roster is None:
        return 0
    skipped = 0
    for occurrence in await roster_occurrences(session, [roster], now - lookback,
                                               now + timedelta(seconds=1)):
        if await claim_occurrence(session, occurrence, "skipped", now):
            skipped += 1
    return skipped


# --------------------------------------------------------------------------- rendering


def member_label(member: RosterMember | None) -> str:
    if member is None:
        return "—"
    text = escape(member.name)
    if member.phone:
        text += f" 📞{escape(member.phone)}"
    return text


def _short(text: str, limit: int = SUBJECT_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def request_line(
    tr: Translator, request: AssistanceRequest, zone_name: str, now: datetime
) -> str:
    due = request.ack_due_at if request.status is RequestStatus.open else request.reply_due_at
    due = due or request.reply_due_at or request.ack_due_at
    what = "ack" if request.status is RequestStatus.open else "reply"
    if due is None:
        deadline = tr("roster.brief.no_deadline")
    else:
        deadline = tr(f"roster.brief.due_{what}", when=fmt_when(tr, due, zone_name, now=now,
                                                                with_zone=False))
        if due <= now:
            deadline += " " + tr("roster.brief.overdue")
    source = request.from_unit.short_name if request.from_unit else ""
    return tr("roster.brief.request", number=escape(request.number),
              urgency=tr(f"roster.urgency.{request.urgency.value}"), source=escape(tr.name(source)),
              subject=escape(_short(request.subject)), deadline=deadline)


def notice_line(tr: Translator, notice: Notice) -> str:
    first = (notice.text or "").strip().splitlines()[0] if notice.text else ""
    return tr("roster.brief.notice", number=escape(notice.number),
              kind=tr(f"roster.notice_kinds.{notice.kind.value}"),
              text=escape(_short(first)))


async def brief_text(
    session: AsyncSession, tr: Translator, view: RosterView, shift: Shift, now: datetime, *,
    default_zone: str, late_due: datetime | None = None,
) -> str:
    room = view.roster.duty_room
    unit = room.unit
    zone_name = view.roster.timezone or default_zone
    previous = view.previous(shift)
    incoming = view.member(shift)
    lines = [tr("roster.brief.head", room=escape(tr.name(room.title)))]
    if late_due is not None:
        lines.append(tr("roster.brief.late", due=fmt_when(tr, late_due, zone_name, now=now)))
    lines.append(tr("roster.brief.when", when=fmt_when(tr, shift.start, zone_name, now=now),
                    until=fmt_when(tr, shift.end, zone_name, now=now, with_zone=False)))
    lines.append(tr("roster.brief.outgoing",
                    officer=member_label(view.member(previous) if previous else None)))
    incoming_text = member_label(incoming)
    if shift.overridden:
        reason = view.reasons.get(shift.start)
        incoming_text += " " + tr("roster.brief.replaced", reason=escape(reason or "")).rstrip()
    lines.append(tr("roster.brief.incoming", officer=incoming_text))

    requests = await open_incoming_requests(session, unit.id, limit=BRIEF_ITEMS + 1)
    lines.append("")
    if requests:
        lines.append(tr("roster.brief.requests", count=len(requests[:BRIEF_ITEMS])))
        lines += [request_line(tr, r, zone_name, now) for r in requests[:BRIEF_ITEMS]]
        if len(requests) > BRIEF_ITEMS:
            lines.append(tr("roster.brief.more"))
    else:
        lines.append(tr("roster.brief.no_requests"))
    notices = await unacknowledged_notices(session, room.id, limit=BRIEF_ITEMS + 1)
    if notices:
        lines.append(tr("roster.brief.notices", count=len(notices[:BRIEF_ITEMS])))
        lines += [notice_line(tr, n) for n in notices[:BRIEF_ITEMS]]
        if len(notices) > BRIEF_ITEMS:
            lines.append(tr("roster.brief.more"))
    else:
        lines.append(tr("roster.brief.no_notices"))
    meetings = await meetings_for_unit_between(session, unit.id, shift.start,
                                               shift.start + timedelta(hours=24))
    if meetings:
        lines.append(tr("roster.brief.meetings", count=len(meetings)))
        for meeting in meetings[:BRIEF_ITEMS]:
            lines.append(tr("roster.brief.meeting",
                            when=fmt_when(tr, meeting.starts_at, zone_name, now=now,
                                          with_zone=False),
                            kind=tr(f"meetings.kinds.{meeting.kind.value}"),
                            title=escape(_short(meeting.title)), id=meeting.id))
    else:
        lines.append(tr("roster.brief.no_meetings"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the planner


class RosterPlanner(FeaturePlanner):
    name = NAME

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        return await roster_occurrences(session, await active_rosters(session), start, end)

    async def _current(
        self, session: AsyncSession, occurrence: Occurrence
    ) -> tuple[RosterView, Shift] | None:
        """The roster now, and the shift the occurrence is about — None when the roster
        changed so that it no longer applies (the new plan has its own occurrences)."""
        roster = await get_roster(session, occurrence.data["roster_id"])
        if roster is None or not roster.duty_room.active or roster.duty_room.chat_id is None:
            return None
        start = datetime.fromisoformat(occurrence.data["shift_start"])
        view = await load_view(session, roster, start, start)
        if view is None:
            return None
        shift = view.shift_at(start)
        if shift.start != start or shift.index < 0:
            return None
        if occurrence.data["what"] == "shift_reminder" and \
                view.member(shift).id != occurrence.data["member_id"]:
            return None  # swapped or overridden away: nobody is reminded of it
        return view, shift

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        current = await self._current(session, occurrence)
        if current is None:
            return
        view, shift = current
        if occurrence.data["what"] == "handover":
            await self._handover(session, occurrence, view, shift, now, late)
        else:
            await self._remind(session, occurrence, view, shift, now, late)

    async def _handover(
        self, session: AsyncSession, occurrence: Occurrence, view: RosterView, shift: Shift,
        now: datetime, late: bool,
    ) -> None:
        tr = Translator(self.language)
        text = brief_text(session, tr, view, shift, now,
                          default_zone=self.svc.settings.bot_timezone,
                          late_due=occurrence.due_at if late else None)
        room = view.roster.duty_room
        await outbox.enqueue(session, chat_id=room.chat_id, kind="handover", text=await text,
                             payload=HTML, dedup_key=occurrence.key, now=now)
        previous = view.previous(shift)
        await audit(session, "roster.handover", chat_id=room.chat_id, subject_type="roster",
                    subject_id=view.roster.id, shift_start=shift.start.isoformat(),
                    outgoing=view.member(previous).name if previous else None,
                    incoming=view.member(shift).name, late=late)

    async def _remind(
        self, session: AsyncSession, occurrence: Occurrence, view: RosterView, shift: Shift,
        now: datetime, late: bool,
    ) -> None:
        member = view.member(shift)
        telegram = (await member_telegram_ids(session, [member])).get(member.id)
        if telegram is None:
            return
        language = await self._member_language(session, member)
        tr = Translator(language)
        zone_name = view.roster.timezone or self.svc.settings.bot_timezone
        lines = [tr("roster.remind.text", name=escape(member.name),
                    room=escape(tr.name(view.roster.duty_room.title)),
                    when=fmt_when(tr, shift.start, zone_name, now=now),
                    until=fmt_clock(shift.end, zone_name),
                    lead=fmt_minutes(tr, int(occurrence.data["offset"])))]
        if late:
            lines.insert(0, tr("roster.brief.late", due=fmt_when(tr, occurrence.due_at,
                                                                 zone_name, now=now)))
        previous = view.previous(shift)
        if previous is not None:
            lines.append(tr("roster.remind.from", officer=member_label(view.member(previous))))
        lines.append(tr("roster.remind.hint"))
        await outbox.enqueue(session, chat_id=telegram, kind="shift_reminder",
                             text="\n".join(lines), payload=HTML, dedup_key=occurrence.key,
                             now=now)

    async def _member_language(self, session: AsyncSession, member: RosterMember) -> str:
        user = await session.get(User, member.user_id) if member.user_id else None
        return (user.language if user else None) or self.language

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        await audit(session, "schedule.missed", subject_type="roster",
                    subject_id=occurrence.data.get("roster_id"), key=occurrence.key,
                    what=occurrence.data.get("what"), due_at=occurrence.due_at.isoformat())


def planner(svc: Services) -> RosterPlanner:
    return RosterPlanner(svc)
