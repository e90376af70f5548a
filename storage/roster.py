"""Named queries and changes behind duty rosters: the roster of a room, its officers,
overrides and swaps, and the previewed changes of /roster edit.

Every change records an AuditEntry in the caller's unit of work; outbox rows are
written by the callers (handlers, planners) in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from collections.abc import Sequence
from datetime import date
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.enums import RosterChangeStatus
from core.enums import ShiftPattern
from core.enums import SwapStatus
from core.normalize import normalize
from storage.access import audit
from storage.access import audit_value
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Roster
from storage.models import RosterChange
from storage.models import RosterMember
from storage.models import ShiftOverride
from storage.models import ShiftSwap
from storage.models import User
from storage.schedules import users_by_ids


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
                    changes={k: [audit_value(o), audit_value(n)] for k, (o, n) in changed.items()})
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
