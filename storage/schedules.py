"""Named queries and changes behind meetings, duty rosters, handovers and chair rotation.

Every change records an AuditEntry in the caller's unit of work. Nothing here talks to
Telegram; outbox rows are written by the callers (handlers, planners) in the same
transaction as the change that causes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from core.enums import (
    MeetingKind,
    MeetingStatus,
    NoticeStatus,
    RequestStatus,
    RosterChangeStatus,
    Rsvp,
    ShiftPattern,
    SwapStatus,
)
from core.normalize import name_key, normalize
from storage.access import audit
from storage.db import AlreadySubmitted
from storage.models import (
    AssistanceRequest,
    ChairRotation,
    ChairRotationEntry,
    DutyRoom,
    Liaison,
    Meeting,
    MeetingParticipant,
    Notice,
    NoticeDelivery,
    Roster,
    RosterChange,
    RosterMember,
    ScheduleMark,
    SchedulerHeartbeat,
    ShiftOverride,
    ShiftSwap,
    Unit,
    User,
    Zone,
    ZoneMembership,
)
from storage.search.vocabulary import load_vocabulary

OPEN_REQUEST_STATES = (RequestStatus.open, RequestStatus.accepted)


# --------------------------------------------------------------------------- rooms and units


async def rooms_for_units(
    session: AsyncSession, unit_ids: Iterable[int], *, with_unit: bool = True
) -> dict[int, DutyRoom]:
    """The active, registered duty room of each unit that has one (`room.unit` loaded
    unless `with_unit` is off)."""
    ids = set(unit_ids)
    if not ids:
        return {}
    query = select(DutyRoom)
    if with_unit:
        query = query.options(selectinload(DutyRoom.unit))
    rows = await session.execute(
        query
        .where(DutyRoom.unit_id.in_(ids), DutyRoom.active.is_(True), DutyRoom.chat_id.is_not(None))
        .order_by(DutyRoom.id)
    )
    rooms: dict[int, DutyRoom] = {}
    for room in rows.scalars():
        rooms.setdefault(room.unit_id, room)
    return rooms


async def unit_with_ancestors(session: AsyncSession, unit_id: int) -> list[Unit]:
    """The unit, its parent, its parent's parent…: whose meetings an officer may see."""
    chain: list[Unit] = []
    seen: set[int] = set()
    current: int | None = unit_id
    while current is not None and current not in seen:
        seen.add(current)
        unit = await session.get(Unit, current)
        if unit is None:
            break
        chain.append(unit)
        current = unit.parent_id
    return chain


async def units_by_ids(session: AsyncSession, unit_ids: Iterable[int]) -> dict[int, Unit]:
    ids = set(unit_ids)
    if not ids:
        return {}
    rows = await session.execute(select(Unit).where(Unit.id.in_(ids)))
    return {unit.id: unit for unit in rows.scalars()}


async def users_by_ids(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, User]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = await session.execute(select(User).where(User.id.in_(ids)))
    return {user.id: user for user in rows.scalars()}


# --------------------------------------------------------------------------- zones


async def find_zones(session: AsyncSession, text: str) -> list[Zone]:
    """Zones whose code or one of whose names (full, short, English, alias; in either
    script) is `text`; failing that, zones whose full name contains it."""
    folded = text.strip()
    key = name_key(folded)
    if not key:
        return []
    ids = (await load_vocabulary(session)).named("zone", folded)
    every = list((await session.execute(select(Zone).order_by(Zone.id))).scalars())
    found = [z for z in every if z.code == folded or z.id in ids]
    return found or [z for z in every if len(key) > 1 and key in name_key(z.name)]


async def zones_of_unit(session: AsyncSession, unit_id: int) -> list[Zone]:
    rows = await session.execute(
        select(Zone)
        .join(ZoneMembership, ZoneMembership.zone_id == Zone.id)
        .where(ZoneMembership.unit_id == unit_id)
        .order_by(Zone.id)
    )
    return list(rows.scalars())


async def zone_member_ids(session: AsyncSession, zone_id: int) -> list[int]:
    rows = await session.execute(
        select(ZoneMembership.unit_id)
        .where(ZoneMembership.zone_id == zone_id)
        .order_by(ZoneMembership.id)
    )
    return list(rows.scalars())


async def all_zones(session: AsyncSession) -> list[Zone]:
    return list((await session.execute(select(Zone).order_by(Zone.id))).scalars())


# --------------------------------------------------------------------------- meetings


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
                    changes={k: [_plain(o), _plain(n)] for k, (o, n) in changed.items()})
    return changed


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


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


# --------------------------------------------------------------------------- rosters


def _roster_query() -> Select[tuple[Roster]]:
    return select(Roster).options(
        selectinload(Roster.members),
        selectinload(Roster.duty_room).selectinload(DutyRoom.unit),
    )


async def roster_for_room(session: AsyncSession, room_id: int) -> Roster | None:
    return (
        await session.execute(_roster_query().where(Roster.duty_room_id == room_id))
    ).scalar_one_or_none()


async def get_roster(session: AsyncSession, roster_id: int) -> Roster | None:
    return (
        await session.execute(_roster_query().where(Roster.id == roster_id))
    ).scalar_one_or_none()


async def active_rosters(session: AsyncSession) -> list[Roster]:
    """Rosters of active, registered duty rooms that have at least one officer."""
    rows = await session.execute(
        _roster_query()
        .join(DutyRoom, DutyRoom.id == Roster.duty_room_id)
        .where(DutyRoom.active.is_(True), DutyRoom.chat_id.is_not(None))
        .where(Roster.id.in_(select(RosterMember.roster_id)))
        .order_by(Roster.id)
    )
    return list(rows.scalars())


async def rooms_of_unit(session: AsyncSession, unit_id: int) -> list[DutyRoom]:
    """Every active, registered duty room of a unit (a unit may have several)."""
    rows = await session.execute(
        select(DutyRoom).options(selectinload(DutyRoom.unit))
        .where(DutyRoom.unit_id == unit_id, DutyRoom.active.is_(True),
               DutyRoom.chat_id.is_not(None))
        .order_by(DutyRoom.id)
    )
    return list(rows.scalars())


async def rooms_named(
    session: AsyncSession, text: str, *, partial: bool = True, registered: bool = True
) -> list[DutyRoom]:
    """Active duty rooms (`registered`: with their group) whose title is `text` (either
    script, any punctuation, the trailing 值班室 optional), or failing that and when
    `partial`, whose title contains it."""
    wanted = _room_key(text)
    if len(wanted) < 2:
        return []
    query = select(DutyRoom).options(selectinload(DutyRoom.unit)) \
        .where(DutyRoom.active.is_(True)).order_by(DutyRoom.id)
    if registered:
        query = query.where(DutyRoom.chat_id.is_not(None))
    rooms = list((await session.execute(query)).scalars())
    exact = [r for r in rooms if _room_key(r.title) == wanted]
    if exact or not partial:
        return exact
    return [r for r in rooms if wanted in _room_key(r.title)]


def _room_key(text: str) -> str:
    return name_key(text).replace(" ", "").removesuffix("值班室")


async def people_of_unit(
    session: AsyncSession, unit_id: int
) -> tuple[list[User], list[Liaison]]:
    """The unit's active users and liaisons: who may be put on its rosters."""
    users = await session.execute(
        select(User).where(User.unit_id == unit_id, User.active.is_(True)).order_by(User.id))
    liaisons = await session.execute(
        select(Liaison).where(Liaison.unit_id == unit_id, Liaison.active.is_(True))
        .order_by(Liaison.id))
    return list(users.scalars()), list(liaisons.scalars())


async def roster_fingerprint(session: AsyncSession, room_id: int, since: datetime) -> str:
    """A digest of a room's roster as it bears on shifts from `since` on: its settings,
    officers (with phones and accounts) and overrides. A preview made on one digest is
    applied only while the roster still has it."""
    roster = await roster_for_room(session, room_id)
    if roster is None:
        return "none"
    overrides = (await session.execute(
        select(ShiftOverride).where(ShiftOverride.roster_id == roster.id,
                                    ShiftOverride.shift_start >= since)
        .order_by(ShiftOverride.shift_start)
    )).scalars()
    state = {
        "roster": [roster.id, roster.pattern.value, roster.anchor_date.isoformat(),
                   roster.timezone, list(roster.shift_starts or [])],
        "members": [[m.id, m.position, m.name, m.phone, m.user_id, m.telegram_user_id]
                    for m in sorted(roster.members, key=lambda m: m.position)],
        "overrides": [[o.shift_start.isoformat(), o.member_id] for o in overrides],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


async def propose_roster_change(
    session: AsyncSession,
    room: DutyRoom,
    change: dict[str, Any],
    *,
    basis: str,
    actor: User | None,
    now: datetime,
    chat_id: int | None = None,
) -> RosterChange:
    """Record a previewed change; an older preview for the same room still pending is
    superseded (its buttons are dead from now on)."""
    older = await session.execute(
        select(RosterChange).where(RosterChange.duty_room_id == room.id,
                                   RosterChange.status == RosterChangeStatus.pending)
        .with_for_update())
    for previous in older.scalars():
        previous.status, previous.decided_at = RosterChangeStatus.superseded, now
        previous.decided_by_id = actor.id if actor else None
        await audit(session, "roster.change.superseded", actor=actor, chat_id=chat_id,
                    subject_type="roster_change", subject_id=previous.id, room_id=room.id)
    proposed = RosterChange(duty_room_id=room.id, status=RosterChangeStatus.pending,
                            change=change, basis=basis,
                            created_by_id=actor.id if actor else None, created_at=now)
    session.add(proposed)
    await session.flush()
    await audit(session, "roster.change.preview", actor=actor, chat_id=chat_id,
                subject_type="roster_change", subject_id=proposed.id, room_id=room.id,
                change=change)
    return proposed


async def get_roster_change(session: AsyncSession, change_id: int) -> RosterChange | None:
    return (
        await session.execute(
            select(RosterChange).where(RosterChange.id == change_id).with_for_update())
    ).scalar_one_or_none()


async def decide_roster_change(
    session: AsyncSession,
    change: RosterChange,
    status: RosterChangeStatus,
    *,
    actor: User | None,
    now: datetime,
    chat_id: int | None = None,
) -> None:
    """Mark a pending change confirmed (the caller applies it) or cancelled."""
    change.status, change.decided_at = status, now
    change.decided_by_id = actor.id if actor else None
    await audit(session, f"roster.change.{status.value}", actor=actor, chat_id=chat_id,
                subject_type="roster_change", subject_id=change.id,
                room_id=change.duty_room_id)


async def swaps_touching(
    session: AsyncSession, roster_id: int, starts: Iterable[datetime]
) -> list[ShiftSwap]:
    """Proposed or confirmed swaps of a roster that involve a shift starting at one of
    `starts` (either side of the swap)."""
    wanted = list(set(starts))
    rows = await session.execute(
        select(ShiftSwap).where(
            ShiftSwap.roster_id == roster_id,
            ShiftSwap.status.in_((SwapStatus.proposed, SwapStatus.confirmed)),
            or_(ShiftSwap.requester_shift_start.in_(wanted),
                ShiftSwap.counterpart_shift_start.in_(wanted)),
        ).order_by(ShiftSwap.id)
    )
    return list(rows.scalars())


async def overrides_between(
    session: AsyncSession, roster_ids: Iterable[int], start: datetime, end: datetime
) -> list[ShiftOverride]:
    ids = list(set(roster_ids))
    if not ids:
        return []
    rows = await session.execute(
        select(ShiftOverride)
        .where(
            ShiftOverride.roster_id.in_(ids),
            ShiftOverride.shift_start >= start,
            ShiftOverride.shift_start < end,
        )
        .order_by(ShiftOverride.shift_start)
    )
    return list(rows.scalars())


async def member_telegram_ids(
    session: AsyncSession, members: Iterable[RosterMember]
) -> dict[int, int]:
    """member id → the Telegram account to remind privately (linked user first)."""
    members = list(members)
    users = await users_by_ids(session, (m.user_id for m in members if m.user_id))
    found: dict[int, int] = {}
    for member in members:
        user = users.get(member.user_id) if member.user_id else None
        telegram_id = user.telegram_id if user and user.active else member.telegram_user_id
        if telegram_id:
            found[member.id] = telegram_id
    return found


async def member_users(
    session: AsyncSession, members: Iterable[RosterMember]
) -> dict[int, User]:
    """member id → the officer's user account (linked, else found by Telegram id);
    officers without an account are absent."""
    members = list(members)
    by_telegram: dict[int, User] = {}
    telegram_ids = {m.telegram_user_id for m in members if m.telegram_user_id and not m.user_id}
    if telegram_ids:
        rows = await session.execute(select(User).where(User.telegram_id.in_(telegram_ids)))
        by_telegram = {u.telegram_id: u for u in rows.scalars()}
    users = await users_by_ids(session, (m.user_id for m in members if m.user_id))
    found: dict[int, User] = {}
    for member in members:
        user = users.get(member.user_id) if member.user_id else None
        user = user or (by_telegram.get(member.telegram_user_id)
                        if member.telegram_user_id else None)
        if user is not None:
            found[member.id] = user
    return found


async def member_preferences(
    session: AsyncSession, members: Iterable[RosterMember]
) -> dict[int, dict[str, Any]]:
    """member id → the linked user's preferences (officers without an account: none)."""
    members = list(members)
    users = await member_users(session, members)
    return {m.id: dict(users[m.id].preferences or {}) if m.id in users else {}
            for m in members}


async def save_roster(
    session: AsyncSession,
    room: DutyRoom,
    *,
    actor: User | None,
    pattern: ShiftPattern | None = None,
    anchor_date: date | None = None,
    timezone: str | None = None,
    shift_starts: Sequence[str] | None = None,
    now: datetime | None = None,
) -> tuple[Roster, dict[str, tuple[Any, Any]]]:
    """Create the room's roster (existing from `now`) or change its settings; returns it
    and what changed."""
    roster = await roster_for_room(session, room.id)
    changed: dict[str, tuple[Any, Any]] = {}
    if roster is None:
        roster = Roster(
            duty_room_id=room.id,
            pattern=pattern or ShiftPattern.daily,
            anchor_date=anchor_date or date.today(),
            timezone=timezone or room.timezone or (room.unit.timezone if room.unit else None)
            or "Asia/Shanghai",
            shift_starts=list(shift_starts or []),
            members=[],
            created_at=now,
        )
        session.add(roster)
        await session.flush()
        changed["created"] = (None, True)
    else:
        for name, value in (("pattern", pattern), ("anchor_date", anchor_date),
                            ("timezone", timezone),
                            ("shift_starts", list(shift_starts) if shift_starts else None)):
            if value is not None and getattr(roster, name) != value:
                changed[name] = (getattr(roster, name), value)
                setattr(roster, name, value)
    if changed:
        await audit(session, "roster.update", actor=actor, chat_id=room.chat_id,
                    subject_type="roster", subject_id=roster.id,
                    changes={k: [_plain(o), _plain(n)] for k, (o, n) in changed.items()})
    loaded = await roster_for_room(session, room.id)
    assert loaded is not None
    return loaded, changed


async def set_roster_members(
    session: AsyncSession,
    roster: Roster,
    officers: Sequence[dict[str, Any]],
    *,
    actor: User | None,
    chat_id: int | None = None,
) -> None:
    """Replace the order of officers: dicts of name, user_id, telegram_user_id, phone and
    optionally member_id.

    Existing members are matched by member_id, else by name in either script, so their
    overrides, swaps, phones and accounts survive a reordering or a name retyped in the
    other script; members no longer listed are removed (with their overrides).
    """
    current = {m.id: m for m in roster.members}
    by_name = {normalize(m.name): m.id for m in roster.members}
    keep: list[RosterMember] = []
    for index, officer in enumerate(officers):
        member = current.pop(officer.get("member_id") or by_name.get(
            normalize(officer["name"]), -1), None)
        if member is None:  # a unique placeholder position until the renumbering below
            member = RosterMember(roster_id=roster.id, position=-100_000 - index,
                                  name=officer["name"])
            session.add(member)
        member.user_id = officer.get("user_id") or member.user_id
        member.telegram_user_id = officer.get("telegram_user_id") or member.telegram_user_id
        member.phone = officer.get("phone") or member.phone
        keep.append(member)
    if current:
        gone_ids = [m.id for m in current.values()]
        swaps = await session.execute(
            select(ShiftSwap).where(
                or_(ShiftSwap.requester_member_id.in_(gone_ids),
                    ShiftSwap.counterpart_member_id.in_(gone_ids))
            )
        )
        for swap in swaps.scalars():
            await session.delete(swap)
        await session.flush()
    for gone in current.values():
        await session.delete(gone)
    await session.flush()
    # Two passes so the (roster, position) uniqueness never sees two rows at one position.
    for index, member in enumerate(keep):
        member.position = -1000 - index
    await session.flush()
    for index, member in enumerate(keep):
        member.position = index
    await session.flush()
    await session.refresh(roster, ["members"])
    await audit(session, "roster.members", actor=actor, chat_id=chat_id, subject_type="roster",
                subject_id=roster.id, officers=[m.name for m in keep],
                removed=sorted(m.name for m in current.values()))


async def set_override(
    session: AsyncSession,
    roster: Roster,
    shift_start: datetime,
    member: RosterMember | None,
    *,
    actor: User | None,
    reason: str | None = None,
    swap_id: int | None = None,
    chat_id: int | None = None,
) -> ShiftOverride | None:
    """Give one shift to `member` (None: remove the override, back to the rotation)."""
    existing = (
        await session.execute(
            select(ShiftOverride).where(
                ShiftOverride.roster_id == roster.id, ShiftOverride.shift_start == shift_start
            )
        )
    ).scalar_one_or_none()
    if member is None:
        if existing is not None:
            await session.delete(existing)
    elif existing is None:
        existing = ShiftOverride(
            roster_id=roster.id, shift_start=shift_start, member_id=member.id, reason=reason,
            swap_id=swap_id, created_by_id=actor.id if actor else None,
        )
        session.add(existing)
    else:
        existing.member_id, existing.reason, existing.swap_id = member.id, reason, swap_id
        existing.created_by_id = actor.id if actor else None
    await session.flush()
    await audit(session, "roster.override", actor=actor, chat_id=chat_id, subject_type="roster",
                subject_id=roster.id, shift_start=shift_start.isoformat(),
                member=member.name if member else None, reason=reason, swap_id=swap_id)
    return existing if member is not None else None


async def create_swap(
    session: AsyncSession,
    roster: Roster,
    *,
    requester: RosterMember,
    requester_shift_start: datetime,
    counterpart: RosterMember,
    counterpart_shift_start: datetime,
    actor: User | None,
    now: datetime,
    chat_id: int | None = None,
) -> ShiftSwap:
    swap = ShiftSwap(
        roster_id=roster.id,
        requester_member_id=requester.id,
        requester_shift_start=requester_shift_start,
        counterpart_member_id=counterpart.id,
        counterpart_shift_start=counterpart_shift_start,
        status=SwapStatus.proposed,
        created_by_id=actor.id if actor else None,
        created_at=now,
    )
    session.add(swap)
    await session.flush()
    await audit(session, "roster.swap.propose", actor=actor, chat_id=chat_id,
                subject_type="shift_swap", subject_id=swap.id, requester=requester.name,
                requester_shift=requester_shift_start.isoformat(), counterpart=counterpart.name,
                counterpart_shift=counterpart_shift_start.isoformat())
    return swap


async def get_swap(session: AsyncSession, swap_id: int) -> ShiftSwap | None:
    return (
        await session.execute(select(ShiftSwap).where(ShiftSwap.id == swap_id).with_for_update())
    ).scalar_one_or_none()


async def decide_swap(
    session: AsyncSession,
    swap: ShiftSwap,
    status: SwapStatus,
    *,
    actor: User | None,
    now: datetime,
    overrides: Sequence[tuple[datetime, int]] = (),
    chat_id: int | None = None,
) -> None:
    """Confirm (writing the overrides: (shift start, member id)), reject or cancel."""
    swap.status = status
    swap.decided_by_id = actor.id if actor else None
    swap.decided_at = now
    if status is SwapStatus.confirmed:
        roster = await get_roster(session, swap.roster_id)
        assert roster is not None
        members = {m.id: m for m in roster.members}
        for shift_start, member_id in overrides:
            await set_override(session, roster, shift_start, members[member_id], actor=actor,
                               reason=f"swap #{swap.id}", swap_id=swap.id, chat_id=chat_id)
    await audit(session, f"roster.swap.{status.value}", actor=actor, chat_id=chat_id,
                subject_type="shift_swap", subject_id=swap.id)


# --------------------------------------------------------------------------- handover brief


async def open_incoming_requests(
    session: AsyncSession, unit_id: int, *, limit: int = 20
) -> list[AssistanceRequest]:
    """Requests to the unit still waiting for it (open or accepted), nearest deadline first."""
    deadline = func.coalesce(AssistanceRequest.ack_due_at, AssistanceRequest.reply_due_at)
    rows = await session.execute(
        select(AssistanceRequest)
        .options(selectinload(AssistanceRequest.from_unit))
        .where(
            AssistanceRequest.to_unit_id == unit_id,
            AssistanceRequest.status.in_(OPEN_REQUEST_STATES),
        )
        .order_by(deadline.is_(None), deadline, AssistanceRequest.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def unacknowledged_notices(
    session: AsyncSession, room_id: int, *, limit: int = 20
) -> list[Notice]:
    """Notices sent to the room that it has not acknowledged (in their latest revision)."""
    rows = await session.execute(
        select(Notice)
        .join(NoticeDelivery, NoticeDelivery.notice_id == Notice.id)
        .where(
            NoticeDelivery.duty_room_id == room_id,
            Notice.status == NoticeStatus.sent,
            or_(
                NoticeDelivery.acknowledged_at.is_(None),
                and_(
                    NoticeDelivery.acknowledged_revision.is_not(None),
                    NoticeDelivery.acknowledged_revision < Notice.revision,
                ),
            ),
        )
        .order_by(Notice.sent_at, Notice.id)
        .limit(limit)
    )
    return list(rows.scalars())


# --------------------------------------------------------------------------- chair rotation


def _rotation_query() -> Select[tuple[ChairRotation]]:
    return select(ChairRotation).options(
        selectinload(ChairRotation.zone),
        selectinload(ChairRotation.entries).selectinload(ChairRotationEntry.unit),
    )


async def chair_rotations(session: AsyncSession) -> list[ChairRotation]:
    rows = await session.execute(
        _rotation_query()
        .where(ChairRotation.id.in_(select(ChairRotationEntry.rotation_id)))
        .order_by(ChairRotation.id)
    )
    return list(rows.scalars())


async def chair_rotation_for_zone(session: AsyncSession, zone_id: int) -> ChairRotation | None:
    return (
        await session.execute(_rotation_query().where(ChairRotation.zone_id == zone_id))
    ).scalar_one_or_none()


async def save_chair_rotation(
    session: AsyncSession,
    zone: Zone,
    *,
    unit_ids: Sequence[int],
    term_months: int,
    anchor_date: date,
    actor: User | None,
    now: datetime | None = None,
) -> ChairRotation:
    rotation = await chair_rotation_for_zone(session, zone.id)
    if rotation is None:
        rotation = ChairRotation(zone_id=zone.id, term_months=term_months,
                                 anchor_date=anchor_date, entries=[], created_at=now)
        session.add(rotation)
    rotation.term_months, rotation.anchor_date = term_months, anchor_date
    for entry in list(rotation.entries):
        rotation.entries.remove(entry)
    await session.flush()
    for index, unit_id in enumerate(unit_ids):
        rotation.entries.append(ChairRotationEntry(position=index, unit_id=unit_id))
    await session.flush()
    await audit(session, "chair.rotation.save", actor=actor, subject_type="zone",
                subject_id=zone.id, units=list(unit_ids), term_months=term_months,
                anchor_date=anchor_date.isoformat())
    loaded = await chair_rotation_for_zone(session, zone.id)
    assert loaded is not None
    return loaded


# --------------------------------------------------------------------------- heartbeat


async def beat(
    session: AsyncSession, now: datetime, process: str | None = None
) -> tuple[datetime | None, datetime | None]:
    """Record that the scheduler is alive at `now`; returns when it first ran on this
    database and when it last beat before this, (None, None) the first time ever."""
    row = await session.get(SchedulerHeartbeat, 1, with_for_update=True)
    if row is None:
        session.add(SchedulerHeartbeat(id=1, first_alive_at=now, alive_at=now, process=process))
        await session.flush()
        return None, None
    first, last = row.first_alive_at, row.alive_at
    row.alive_at, row.process = now, process
    return first, last


# --------------------------------------------------------------------------- missed occurrences


async def missed_marks(
    session: AsyncSession, since: datetime, *, limit: int = 30
) -> list[ScheduleMark]:
    """Occurrences the bot did not send because it was down past the grace period."""
    rows = await session.execute(
        select(ScheduleMark)
        .where(ScheduleMark.outcome == "missed", ScheduleMark.due_at >= since)
        .order_by(ScheduleMark.due_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def marks_with_prefix(session: AsyncSession, prefix: str) -> list[ScheduleMark]:
    rows = await session.execute(
        select(ScheduleMark).where(ScheduleMark.key.startswith(prefix)).order_by(ScheduleMark.id)
    )
    return list(rows.scalars())
