"""Meeting reminders: to each participant's duty room at the meeting's offsets, with RSVP.

An occurrence is one reminder offset of one meeting at its current start time:
`meeting:<id>:<offset>m:<start>`. Moving a meeting gives its reminders new keys (they
fire again for the new time); cancelling it removes them. A reminder goes to every
participant's duty room (one outbox row per room, keyed by the occurrence and the room);
a participant without a registered room is reported to the coordinator, never skipped
silently.

The renderers here are shared with handlers/meeting_*.py (announcements, RSVP edits).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import FeaturePlanner
from bot.scheduler import Occurrence
from bot.scheduler import claim_occurrence
from core.enums import MeetingStatus
from core.enums import Rsvp
from core.schedule import offset_label
from core.schedule import reminders_before
from i18n import Translator
from i18n.formats import fmt_minutes
from i18n.formats import fmt_span
from i18n.formats import fmt_when
from storage import outbox
from storage.access import audit
from storage.meetings import get_meeting
from storage.meetings import meetings_starting_between
from storage.models import DutyRoom
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import Unit
from storage.models import User
from storage.schedules import rooms_for_units
from views import HTML
from views.buttons import Button
from views.buttons import Markup
from views.buttons import Style
from views.buttons import keyboard

if TYPE_CHECKING:
    from bot.services import Services

NAME = "meetings"
# Offsets are limited to this, so the planner knows how far ahead to look for meetings.
MAX_OFFSET = timedelta(days=30)
CALLBACK = "mtg"
RSVP_CODES = {"a": Rsvp.attend, "d": Rsvp.decline, "g": Rsvp.delegate}
RSVP_MARKS = {Rsvp.pending: "⏳", Rsvp.attend: "✅", Rsvp.decline: "❌", Rsvp.delegate: "👤"}


def reminder_key(meeting_id: int, offset: int, starts_at: datetime) -> str:
    return f"meeting:{meeting_id}:{offset_label(offset)}:{starts_at:%Y%m%dT%H%MZ}"


def tally_key(meeting_id: int) -> str:
    return f"meeting:{meeting_id}:tally"


def reminder_occurrences(
    meeting_id: int, starts_at: datetime, offsets: Sequence[int], title: str,
    since: datetime | None = None,
) -> list[Occurrence]:
    return [
        Occurrence(
            reminder_key(meeting_id, planned.offset_minutes, starts_at),
            planned.due_at,
            {"what": "meeting_reminder", "meeting_id": meeting_id,
             "offset": planned.offset_minutes, "title": title,
             "starts_at": starts_at.isoformat()},
            since,
        )
        for planned in reminders_before(starts_at, offsets)
    ]


async def skip_past_reminders(session: AsyncSession, meeting: Meeting, now: datetime) -> int:
    """Reminders already due when a meeting is created or moved are not "missed": claim
    them as skipped in the same transaction, so the scheduler never fires or reports them."""
    skipped = 0
    for occurrence in reminder_occurrences(
        meeting.id, meeting.starts_at, meeting.reminder_offsets or [], meeting.title
    ):
        if occurrence.due_at <= now and await claim_occurrence(
            session, occurrence, "skipped", now
        ):
            skipped += 1
    return skipped


# --------------------------------------------------------------------------- rendering


def room_zone(room: DutyRoom | None, default: str) -> str:
    if room is None:
        return default
    return room.timezone or (room.unit.timezone if room.unit else None) or default


def meeting_zone(meeting: Meeting, default: str) -> str:
    return meeting.timezone or default


def kind_label(tr: Translator, meeting: Meeting) -> str:
    return tr(f"meetings.kinds.{meeting.kind.value}")


def unit_names(tr: Translator, meeting: Meeting) -> str:
    return tr.join(tr.name(p.unit.short_name or p.unit.name) for p in meeting.participants)


def card(
    tr: Translator, meeting: Meeting, zone_name: str, *, now: datetime | None = None,
    agenda: bool = True,
) -> str:
    """The meeting in a few phone-sized lines (user text escaped)."""
    lines = [tr("meetings.card.head", id=meeting.id, title=escape(meeting.title),
                kind=kind_label(tr, meeting)),
             tr("meetings.card.when", when=fmt_span(tr, meeting.starts_at, meeting.ends_at,
                                                     zone_name, now=now))]
    if meeting.place:
        lines.append(tr("meetings.card.place", place=escape(meeting.place)))
    if meeting.video_link:
        lines.append(tr("meetings.card.link", link=escape(meeting.video_link)))
    if meeting.participants:
        lines.append(tr("meetings.card.units", units=escape(unit_names(tr, meeting))))
    if agenda and meeting.agenda:
        lines.append(tr("meetings.card.agenda", agenda=escape(meeting.agenda)))
    return "\n".join(lines)


def rsvp_line(tr: Translator, meeting: Meeting, unit_id: int) -> str:
    participant = next((p for p in meeting.participants if p.unit_id == unit_id), None)
    if participant is None:
        return ""
    answer = RSVP_MARKS[participant.rsvp] + " " + tr(f"meetings.rsvp.{participant.rsvp.value}")
    if participant.rsvp is Rsvp.delegate and participant.delegate:
        answer += f"（{escape(participant.delegate)}）"
    return tr("meetings.rsvp.line", answer=answer)


def rsvp_rows(tr: Translator, meeting_id: int, context: str) -> list[list[Button]]:
    """RSVP buttons (attending green, declining red); `context` says which message they
    sit on, so an answer can re-render it (i: invitation, c: change, r<minutes>: a
    reminder)."""
    def button(code: str, key: str, style: Style | None = None) -> Button:
        return Button(tr(f"meetings.buttons.{key}"),
                      f"{CALLBACK}:r:{meeting_id}:{code}:{context}", style)

    return [[button("a", "attend", Style.success), button("d", "decline", Style.danger),
             button("g", "delegate")],
            [Button(tr("meetings.buttons.ics"), f"{CALLBACK}:ics:{meeting_id}")]]


def rsvp_keyboard(tr: Translator, meeting_id: int, context: str) -> Markup:
    return keyboard(rsvp_rows(tr, meeting_id, context))


def room_message(
    tr: Translator, meeting: Meeting, unit_id: int, zone_name: str, context: str, *,
    now: datetime, late_due: datetime | None = None,
) -> str:
    """The text of an invitation/reminder/change notice in one participant's room."""
    if context == "i":
        head = tr("meetings.notify.invitation")
    elif context == "c":
        head = tr("meetings.notify.changed")
    else:
        offset = int(context[1:])
        head = tr("meetings.notify.reminder", lead=fmt_minutes(tr, offset))
    parts = [head]
    if late_due is not None:
        parts.append(tr("meetings.notify.late", due=fmt_when(tr, late_due, zone_name, now=now)))
    parts.append(card(tr, meeting, zone_name, now=now))
    line = rsvp_line(tr, meeting, unit_id)
    if line:
        parts.append(line)
    return "\n".join(parts)


def tally_text(
    tr: Translator, meeting: Meeting, rooms: dict[int, DutyRoom], zone_name: str, *,
    now: datetime,
) -> str:
    """What the coordinator sees: answers by kind, and who cannot be reached."""
    groups: dict[Rsvp, list[str]] = {answer: [] for answer in Rsvp}
    unreachable: list[str] = []
    for p in meeting.participants:
        name = escape(tr.name(p.unit.short_name or p.unit.name))
        if p.rsvp is Rsvp.delegate and p.delegate:
            name += f"（{escape(p.delegate)}）"
        groups[p.rsvp].append(name)
        if p.unit_id not in rooms:
            unreachable.append(escape(tr.name(p.unit.short_name or p.unit.name)))
    answered = sum(len(v) for k, v in groups.items() if k is not Rsvp.pending)
    lines = [tr("meetings.tally.head", id=meeting.id, title=escape(meeting.title),
                answered=answered, total=len(meeting.participants)),
             tr("meetings.card.when", when=fmt_span(tr, meeting.starts_at, meeting.ends_at,
                                                     zone_name, now=now))]
    if meeting.status is MeetingStatus.cancelled:
        lines.append(tr("meetings.tally.cancelled"))
    for answer in (Rsvp.attend, Rsvp.delegate, Rsvp.decline, Rsvp.pending):
        if groups[answer]:
            lines.append(tr("meetings.tally.group", mark=RSVP_MARKS[answer],
                            label=tr(f"meetings.rsvp.{answer.value}"),
                            units=tr.join(groups[answer])))
    if unreachable:
        lines.append(tr("meetings.tally.unreachable", units=tr.join(unreachable)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- outbox writers


def _coordinator_language(user: User | None, default: str) -> str:
    return (user.language if user else None) or default


async def participant_rooms(
    session: AsyncSession, meeting: Meeting, default_zone: str
) -> tuple[list[tuple[MeetingParticipant, DutyRoom, str]], list[str]]:
    """(participant, its duty room, the zone its times are shown in) for every
    participant with a room, and the names of those without one: whom a reminder, a
    change or a cancellation reaches, and whom the coordinator is told it does not."""
    rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants],
                                  with_unit=False)
    reachable, unreachable = [], []
    for participant in meeting.participants:
        room = rooms.get(participant.unit_id)
        if room is None or room.chat_id is None:
            unreachable.append(participant.unit.short_name or participant.unit.name)
            continue
        zone_name = room.timezone or participant.unit.timezone or meeting_zone(
            meeting, default_zone)
        reachable.append((participant, room, zone_name))
    return reachable, unreachable


async def notify_rooms(
    session: AsyncSession,
    meeting: Meeting,
    *,
    context: str,
    key: str,
    now: datetime,
    default_zone: str,
    language: str,
    late_due: datetime | None = None,
) -> tuple[list[DutyRoom], list[str]]:
    """One message per participant's duty room; returns (rooms, names of unreachable units)."""
    tr = Translator(language)
    reachable, unreachable = await participant_rooms(session, meeting, default_zone)
    for participant, room, zone_name in reachable:
        await outbox.enqueue(
            session,
            chat_id=room.chat_id,
            kind="meeting_" + ("reminder" if context.startswith("r") else "notice"),
            text=room_message(tr, meeting, participant.unit_id, zone_name, context, now=now,
                              late_due=late_due),
            payload={**HTML, "reply_markup": rsvp_keyboard(tr, meeting.id, context)},
            dedup_key=f"{key}:room{room.id}",
            now=now,
        )
    return [room for _, room, _ in reachable], unreachable


async def send_tally(
    session: AsyncSession, meeting: Meeting, *, now: datetime, default_zone: str,
    default_language: str, edit_key: str | None = None,
) -> None:
    """The coordinator's tally: sent once, then edited (newest text wins)."""
    creator = await session.get(User, meeting.created_by_id) if meeting.created_by_id else None
    if creator is None or not creator.active:
        return
    tr = Translator(_coordinator_language(creator, default_language))
    rooms = await rooms_for_units(session, [p.unit_id for p in meeting.participants])
    unit = await session.get(Unit, creator.unit_id) if creator.unit_id else None
    zone_name = meeting_zone(meeting, (unit.timezone if unit else None) or default_zone)
    text = tally_text(tr, meeting, rooms, zone_name, now=now)
    markup = keyboard([[(tr("meetings.buttons.refresh"), f"{CALLBACK}:t:{meeting.id}")]])
    if edit_key is None:
        await outbox.enqueue(session, chat_id=creator.telegram_id, kind="meeting_tally",
                             text=text, payload={**HTML, "reply_markup": markup},
                             dedup_key=tally_key(meeting.id), now=now)
        return
    if await outbox.get_message(session, tally_key(meeting.id)) is None:
        return
    await outbox.enqueue_edit(session, reply_to_key=tally_key(meeting.id), dedup_key=edit_key,
                              text=text, payload={**HTML, "reply_markup": markup}, now=now)


async def warn_unreachable(
    session: AsyncSession, meeting: Meeting, names: list[str], *, key: str, now: datetime,
    default_language: str, what: str,
) -> None:
    """Tell the coordinator which participants a message could not reach."""
    if not names:
        return
    creator = await session.get(User, meeting.created_by_id) if meeting.created_by_id else None
    await audit(session, "meeting.unreachable", subject_type="meeting", subject_id=meeting.id,
                units=names, what=what)
    if creator is None or not creator.active:
        return
    tr = Translator(_coordinator_language(creator, default_language))
    await outbox.enqueue(
        session, chat_id=creator.telegram_id, kind="meeting_unreachable",
        text=tr("meetings.notify.unreachable", id=meeting.id, title=escape(meeting.title),
                what=tr(f"meetings.what.{what}"), units=escape(tr.join(names))),
        payload=HTML, dedup_key=f"{key}:unreachable", now=now,
    )


# --------------------------------------------------------------------------- the planner


class MeetingPlanner(FeaturePlanner):
    name = NAME

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        found = []
        for meeting_id, starts_at, offsets, title, created in await meetings_starting_between(
            session, start, end + MAX_OFFSET
        ):
            for occurrence in reminder_occurrences(meeting_id, starts_at, offsets, title,
                                                   created):
                if start <= occurrence.due_at < end:
                    found.append(occurrence)
        return found

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        meeting = await get_meeting(session, occurrence.data["meeting_id"])
        if meeting is None or meeting.status is not MeetingStatus.scheduled:
            return
        if meeting.starts_at.isoformat() != occurrence.data["starts_at"]:
            return  # moved since the job was placed; the new time has its own reminders
        offset = int(occurrence.data["offset"])
        _, unreachable = await notify_rooms(
            session, meeting, context=f"r{offset}", key=occurrence.key, now=now,
            default_zone=self.default_zone, language=self.language,
            late_due=occurrence.due_at if late else None,
        )
        await warn_unreachable(session, meeting, unreachable, key=occurrence.key, now=now,
                               default_language=self.language, what="reminder")

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        """Too late to remind: the coordinator learns it now (and /missed lists it)."""
        await audit(session, "schedule.missed", subject_type="meeting",
                    subject_id=occurrence.data.get("meeting_id"), key=occurrence.key,
                    due_at=occurrence.due_at.isoformat())
        meeting = await get_meeting(session, occurrence.data["meeting_id"])
        if meeting is None or meeting.created_by_id is None:
            return
        creator = await session.get(User, meeting.created_by_id)
        if creator is None or not creator.active:
            return
        tr = Translator(_coordinator_language(creator, self.language))
        zone_name = meeting_zone(meeting, self.default_zone)
        await outbox.enqueue(
            session, chat_id=creator.telegram_id, kind="schedule_missed",
            text=tr("meetings.notify.missed", id=meeting.id, title=escape(meeting.title),
                    lead=fmt_minutes(tr, int(occurrence.data["offset"])),
                    due=fmt_when(tr, occurrence.due_at, zone_name, now=now)),
            payload=HTML, dedup_key=f"{occurrence.key}:missed", now=now,
        )


def planner(svc: Services) -> MeetingPlanner:
    return MeetingPlanner(svc)
