"""Reading the audit log: the export's entries by time, and /audit's pages of what a
user or a unit did and what was done about them, with the names of actors and subjects.
The chain they are sealed into is storage/audit_chain.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy import cast
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from core.audit import Named
from storage.audit_chain import READ_CHUNK
from storage.models import AssistanceRequest
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Meeting
from storage.models import Unit
from storage.models import User
from storage.models import Zone


async def entries_between(session: AsyncSession, start: datetime,
                          end: datetime) -> AsyncIterator[list[AuditEntry]]:
    """Entries with start <= at < end in id order, a chunk at a time (the export)."""
    after = 0
    while True:
        chunk = list((await session.execute(
            select(AuditEntry).where(AuditEntry.at >= start, AuditEntry.at < end,
                                     AuditEntry.id > after)
            .order_by(AuditEntry.id).limit(READ_CHUNK))).scalars())
        if not chunk:
            return
        yield chunk
        after = chunk[-1].id


def _about_user(user: User) -> Any:
    return or_(AuditEntry.actor_user_id == user.id,
               AuditEntry.actor_telegram_id == user.telegram_id,
               (AuditEntry.subject_type == "user")
               & (AuditEntry.subject_id == str(user.telegram_id)))


def _about_unit(unit: Unit) -> Any:
    members = select(User.id).where(User.unit_id == unit.id)
    member_ids = select(cast(User.telegram_id, String)).where(User.unit_id == unit.id)
    liaisons = select(cast(Liaison.id, String)).where(Liaison.unit_id == unit.id)
    requests = select(AssistanceRequest.number).where(
        or_(AssistanceRequest.from_unit_id == unit.id, AssistanceRequest.to_unit_id == unit.id))
    return or_(
        AuditEntry.actor_user_id.in_(members),
        (AuditEntry.subject_type == "user") & AuditEntry.subject_id.in_(member_ids),
        AuditEntry.detail["unit"].as_string() == unit.code,
        (AuditEntry.subject_type == "liaison") & AuditEntry.subject_id.in_(liaisons),
        (AuditEntry.subject_type == "request") & AuditEntry.subject_id.in_(requests),
        (AuditEntry.subject_type == "units")
        & (literal(",") + AuditEntry.subject_id + ",").like(f"%,{unit.id},%"),
    )


async def entries_about(
    session: AsyncSession, *, user: User | None = None, unit: Unit | None = None,
    start: datetime, end: datetime, upto: int | None = None, offset: int = 0,
    limit: int = 20,
) -> tuple[int, int, list[AuditEntry]]:
    """Entries in [start, end) by or about `user` (what they saw and changed, and what
    was changed about them) or `unit` (by its members and about them, about its
    liaisons, requests and duty lines; members as they are now); newest first.
    Pages of one listing hold still: entries after `upto` (an id; the newest when the
    listing began, when None) are left out. Returns (how many in all, `upto`, this page)."""
    if upto is None:
        upto = int(await session.scalar(select(func.max(AuditEntry.id))) or 0)
    if user is not None:
        about = _about_user(user)
    elif unit is not None:
        about = _about_unit(unit)
    else:
        raise ValueError("entries_about needs a user or a unit")
    where = (AuditEntry.id <= upto, AuditEntry.at >= start, AuditEntry.at < end, about)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*where))
    page = (await session.execute(
        select(AuditEntry).where(*where).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset(offset).limit(limit))).scalars()
    return int(total or 0), upto, list(page)


async def actors_of(session: AsyncSession, entries: Sequence[AuditEntry]) -> dict[int, User]:
    """The users who made `entries`, by user id, with their units."""
    ids = {e.actor_user_id for e in entries if e.actor_user_id is not None}
    if not ids:
        return {}
    users = await session.execute(select(User).options(joinedload(User.unit))
                                  .where(User.id.in_(ids)))
    return {user.id: user for user in users.scalars()}


def _subject_ids(entry: AuditEntry) -> list[str]:
    """The ids an entry is about: several for an on-call view of several units."""
    if not (entry.subject_type and entry.subject_id):
        return []
    return entry.subject_id.split(",") if entry.subject_type == "units" else [entry.subject_id]


# What the subjects of each type are called: (model, its name column).
_NAMED: dict[str, tuple[Any, Any]] = {
    "meeting": (Meeting, Meeting.title), "zone": (Zone, Zone.name),
    "duty_room": (DutyRoom, DutyRoom.title), "units": (Unit, Unit.name)}


async def subjects_of(session: AsyncSession, entries: Sequence[AuditEntry]
                      ) -> dict[tuple[str, str], tuple[Named, ...]]:
    """Names for what `entries` are about (liaisons with their unit, users, meetings,
    zones, duty rooms, units), keyed by (subject_type, subject_id); what has no name
    here (a request's or notice's number) or is gone is named by its id."""
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        for part in _subject_ids(entry):
            if part.lstrip("-").isdigit():
                wanted.setdefault(entry.subject_type or "", set()).add(int(part))
    names: dict[tuple[str, str], Named] = {}
    if ids := wanted.get("liaison"):
        for liaison_id, name, unit in await session.execute(
                select(Liaison.id, Liaison.name, Unit.name)
                .join(Unit, Liaison.unit_id == Unit.id).where(Liaison.id.in_(ids))):
            names["liaison", str(liaison_id)] = Named(name, unit)
    if ids := wanted.get("user"):
        for telegram_id, name in await session.execute(
                select(User.telegram_id, User.full_name).where(User.telegram_id.in_(ids))):
            names["user", str(telegram_id)] = Named(name or str(telegram_id))
    for kind, (model, label) in _NAMED.items():
        if ids := wanted.get(kind):
            for row_id, name in await session.execute(
                    select(model.id, label).where(model.id.in_(ids))):
                names[kind, str(row_id)] = Named(name)
    return {
        (entry.subject_type, entry.subject_id): tuple(
            names.get((entry.subject_type, part), Named(part)) for part in _subject_ids(entry))
        for entry in entries if entry.subject_type and entry.subject_id
    }
