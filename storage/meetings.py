"""Named queries and changes behind meetings: the upcoming ones, creation, edits,
cancellation and each unit's answer.

Every change records an AuditEntry in the caller's unit of work; outbox rows are
written by the callers (handlers, planners) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from core.enums import MeetingKind
from core.enums import MeetingStatus
from core.enums import Rsvp
from storage.access import audit
from storage.access import audit_value
from storage.db import AlreadySubmitted
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import User


def _meeting_query() -> Select[tuple[Meeting]]:
    return select(Meeting).options(
        selectinload(Meeting.participants).selectinload(MeetingParticipant.unit),
        selectinload(Meeting.zone),
    )


async def get_meeting(session: AsyncSession, meeting_id: int) -> Meeting | None:
    """With its participants, their units and its zone, in one query (every reminder
    that fires reads one meeting: a query each for those would triple the reads)."""
    query = select(Meeting).options(
        joinedload(Meeting.participants).joinedload(MeetingParticipant.unit),
        joinedload(Meeting.zone),
    ).where(Meeting.id == meeting_id)
    return (await session.execute(query)).unique().scalar_one_or_none()


async def upcoming_meetings(
    session: AsyncSession,
    now: datetime,
    *,
    unit_ids: Iterable[int] | None = None,
    until: datetime | None = None,
    include_cancelled: bool = False,
    limit: int = 50,
) -> list[Meeting]:
    """Meetings not yet over, soonest first; only those `unit_ids` take part in, if given."""
    query = _meeting_query().where(Meeting.ends_at > now)
    if until is not None:
        query = query.where(Meeting.starts_at < until)
    if not include_cancelled:
        query = query.where(Meeting.status == MeetingStatus.scheduled)
    if unit_ids is not None:
        ids = list(set(unit_ids))
        query = query.where(
            Meeting.id.in_(
                select(MeetingParticipant.meeting_id).where(MeetingParticipant.unit_id.in_(ids))
            )
        )
    rows = await session.execute(query.order_by(Meeting.starts_at, Meeting.id).limit(limit))
    return list(rows.scalars())


async def meetings_starting_between(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[int, datetime, list[int], str, datetime | None]]:
    """(id, starts_at, reminder offsets in minutes, title, created_at) of scheduled
    meetings; light rows for the planner."""
    rows = await session.execute(
        select(Meeting.id, Meeting.starts_at, Meeting.reminder_offsets, Meeting.title,
               Meeting.created_at)
        .where(
            Meeting.status == MeetingStatus.scheduled,
            Meeting.starts_at >= start,
            Meeting.starts_at < end,
        )
        .order_by(Meeting.starts_at, Meeting.id)
    )
    return [(i, s, list(o or []), t, c) for i, s, o, t, c in rows]


async def create_meeting(
    session: AsyncSession,
    *,
    kind: MeetingKind,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    timezone: str,
    unit_ids: Sequence[int],
    actor: User | None,
    zone_id: int | None = None,
    place: str | None = None,
    video_link: str | None = None,
    agenda: str | None = None,
    offsets: Sequence[int],
    code: str | None = None,
    now: datetime | None = None,
    submission_key: str | None = None,
) -> Meeting:
    """Store a meeting and audit it. `submission_key` is the identity of the guided flow's
    draft: when a meeting already carries it, AlreadySubmitted (with its id) is raised and
    nothing is stored (a second confirmation of the same draft)."""
    if submission_key and (done := await meeting_by_submission(session, submission_key)):
        raise AlreadySubmitted([str(done[0])])
    meeting = Meeting(
        code=code,
        submission_key=submission_key,
        created_at=now,
        kind=kind,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        timezone=timezone,
        zone_id=zone_id,
        place=place,
        video_link=video_link,
        agenda=agenda,
        reminder_offsets=list(offsets),
        created_by_id=actor.id if actor else None,
        status=MeetingStatus.scheduled,
        revision=1,
        participants=[MeetingParticipant(unit_id=u) for u in dict.fromkeys(unit_ids)],
    )
    session.add(meeting)
    await session.flush()
    await audit(session, "meeting.create", actor=actor, subject_type="meeting",
                subject_id=meeting.id, title=title, kind=kind.value,
                starts_at=starts_at.isoformat(), units=list(dict.fromkeys(unit_ids)))
    loaded = await get_meeting(session, meeting.id)
    assert loaded is not None
    return loaded


async def meeting_by_submission(session: AsyncSession, key: str) -> tuple[int, str] | None:
    """The id and title of the meeting a draft with this submission key created."""
    row = (await session.execute(select(Meeting.id, Meeting.title)
                                 .where(Meeting.submission_key == key))).first()
    return (row[0], row[1]) if row else None


MEETING_FIELDS = ("title", "kind", "starts_at", "ends_at", "timezone", "place", "video_link",
                  "agenda", "reminder_offsets", "zone_id")


async def update_meeting(
    session: AsyncSession,
    meeting: Meeting,
    *,
    actor: User | None,
    unit_ids: Sequence[int] | None = None,
    **changes: Any,
) -> dict[str, tuple[Any, Any]]:
    """Apply field changes (and a new participant list); returns {field: (old, new)}.

    The revision goes up when anything changed. RSVPs of units still taking part are
    kept; a change of start time resets nobody's answer (the announcement asks them to
    check it).
    """
    unknown = set(changes) - set(MEETING_FIELDS)
    if unknown:
        raise ValueError(f"unknown meeting fields: {sorted(unknown)}")
    changed: dict[str, tuple[Any, Any]] = {}
    for name, value in changes.items():
        old = getattr(meeting, name)
        if old != value:
            changed[name] = (old, value)
            setattr(meeting, name, value)
    if unit_ids is not None:
        wanted = list(dict.fromkeys(unit_ids))
        current = {p.unit_id: p for p in meeting.participants}
        if set(wanted) != set(current):
            changed["units"] = (sorted(current), sorted(wanted))
            for unit_id, participant in current.items():
                if unit_id not in wanted:
                    meeting.participants.remove(participant)
            for unit_id in wanted:
                if unit_id not in current:
                    meeting.participants.append(MeetingParticipant(unit_id=unit_id))
    if changed:
        meeting.revision = (meeting.revision or 1) + 1
        await session.flush()
        await audit(session, "meeting.update", actor=actor, subject_type="meeting",
                    subject_id=meeting.id, revision=meeting.revision,
                    changes={k: [audit_value(o), audit_value(n)] for k, (o, n) in changed.items()})
    return changed


async def cancel_meeting(
    session: AsyncSession, meeting: Meeting, *, actor: User | None, reason: str | None
) -> bool:
    """False when it was already cancelled."""
    if meeting.status is MeetingStatus.cancelled:
        return False
    meeting.status = MeetingStatus.cancelled
    meeting.revision = (meeting.revision or 1) + 1
    await audit(session, "meeting.cancel", actor=actor, subject_type="meeting",
                subject_id=meeting.id, reason=reason, revision=meeting.revision)
    return True


async def set_rsvp(
    session: AsyncSession,
    meeting: Meeting,
    unit_id: int,
    answer: Rsvp,
    *,
    actor: User | None,
    now: datetime,
    delegate: str | None = None,
    chat_id: int | None = None,
) -> MeetingParticipant | None:
    """Record a unit's answer; None when the unit does not take part."""
    participant = next((p for p in meeting.participants if p.unit_id == unit_id), None)
    if participant is None:
        return None
    previous = participant.rsvp
    participant.rsvp = answer
    participant.delegate = delegate if answer is Rsvp.delegate else None
    participant.responded_by_id = actor.id if actor else None
    participant.responded_at = now
    await audit(session, "meeting.rsvp", actor=actor, chat_id=chat_id, subject_type="meeting",
                subject_id=meeting.id, unit_id=unit_id, previous=previous.value,
                rsvp=answer.value, delegate=participant.delegate)
    return participant


async def meetings_for_unit_between(
    session: AsyncSession, unit_id: int, start: datetime, end: datetime
) -> list[Meeting]:
    """Scheduled meetings the unit takes part in that start in [start, end)."""
    rows = await session.execute(
        _meeting_query()
        .where(
            Meeting.status == MeetingStatus.scheduled,
            Meeting.starts_at >= start,
            Meeting.starts_at < end,
            Meeting.id.in_(
                select(MeetingParticipant.meeting_id).where(MeetingParticipant.unit_id == unit_id)
            ),
        )
        .order_by(Meeting.starts_at, Meeting.id)
    )
    return list(rows.scalars())
