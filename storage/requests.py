"""Assistance requests as named queries: loading, units, mechanisms and who to tell,
numbering, history rows, escalation candidates, lists, exports and statistics.

services/requests.py combines them with the rules, the texts and the outbox into units
of work; nothing here decides, renders or translates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core import requests as rules
from core.enums import RequestStatus
from core.enums import Role
from core.periods import Period
from core.requests import Filters
from core.requests import Scope
from core.requests import StatsRow
from storage.db import dialect_insert
from storage.models import AssistanceRequest
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import RequestCounter
from storage.models import RequestEvent
from storage.models import Unit
from storage.models import User
from storage.models import ZoneMembership
from storage.units import SENIOR_FIRST
from storage.units import folded_names
from storage.units import zone_ids_of

PAGE_SIZE = 8
EXPORT_LIMIT = 20_000


# --------------------------------------------------------------------------- loading

_FULL = (
    selectinload(AssistanceRequest.from_unit),
    selectinload(AssistanceRequest.to_unit),
    selectinload(AssistanceRequest.mechanism),
    selectinload(AssistanceRequest.created_by).selectinload(User.unit),
    selectinload(AssistanceRequest.events).selectinload(RequestEvent.actor),
    selectinload(AssistanceRequest.transferred_to).selectinload(AssistanceRequest.to_unit),
)


async def load_request(
    session: AsyncSession, *, request_id: int | None = None, number: str | None = None,
    for_update: bool = False,
) -> AssistanceRequest | None:
    """One request with its units, mechanism, creator and history loaded."""
    statement = select(AssistanceRequest).options(*_FULL)
    if request_id is not None:
        statement = statement.where(AssistanceRequest.id == request_id)
    elif number is not None:
        statement = statement.where(AssistanceRequest.number == number)
    else:
        raise ValueError("request_id or number is required")
    if for_update:
        statement = statement.with_for_update(of=AssistanceRequest)
    statement = statement.execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def mechanisms(session: AsyncSession) -> list[Mechanism]:
    return list((await session.execute(select(Mechanism).order_by(Mechanism.id))).scalars())


async def mechanism_by_id(session: AsyncSession, mechanism_id: int) -> Mechanism | None:
    return await session.get(Mechanism, mechanism_id)


async def units_by_id(session: AsyncSession, unit_ids: Sequence[int]) -> dict[int, Unit]:
    """The units of these ids that exist, by id."""
    return {unit.id: unit for unit in (await session.execute(
        select(Unit).where(Unit.id.in_(list(unit_ids))))).scalars()}


async def find_mechanism(session: AsyncSession, text: str) -> Mechanism | None:
    """By name, code, English name or alias, ignoring case and width."""
    wanted = rules.fold(text)
    if not wanted:
        return None
    for mechanism in await mechanisms(session):
        if wanted in folded_names(mechanism):
            return mechanism
    return None


async def mechanism_meant(session: AsyncSession, word: str, *, before_urgency: bool
                          ) -> list[Mechanism] | None:
    """When `word`, in the one-shot form's mechanism place, names no mechanism but was
    meant as one (rules.meant_as_mechanism): every mechanism, to list. Else None."""
    found = await mechanisms(session)
    names = [name for mechanism in found for name in folded_names(mechanism)]
    return found if rules.meant_as_mechanism(word, names, before_urgency=before_urgency) \
        else None


async def peer_units(session: AsyncSession, unit_id: int | None, *, limit: int = 12) -> list[Unit]:
    """Units to offer as targets: those sharing a zone with `unit_id` (provinces first);
    province-level units when there are none."""
    statement = select(Unit).order_by(*SENIOR_FIRST)
    if unit_id is not None:
        peers = select(ZoneMembership.unit_id).where(
            ZoneMembership.zone_id.in_(zone_ids_of(unit_id)))
        found = list((await session.execute(
            statement.where(Unit.id.in_(peers), Unit.id != unit_id).limit(limit))).scalars())
        if found:
            return found
    return list((await session.execute(
        statement.where(Unit.parent_id.is_(None), Unit.id != (unit_id or 0)).limit(limit)
    )).scalars())


async def active_duty_room(session: AsyncSession, unit_id: int) -> DutyRoom | None:
    return (
        await session.execute(
            select(DutyRoom)
            .where(DutyRoom.unit_id == unit_id, DutyRoom.active.is_(True),
                   DutyRoom.chat_id.is_not(None))
            .order_by(DutyRoom.id)
        )
    ).scalars().first()


async def linked_liaisons(session: AsyncSession, unit_id: int) -> list[tuple[Liaison, int]]:
    """The unit's active liaisons who have a Telegram account, one per account, each with
    that account's id (the private chat to write to)."""
    rows = await session.execute(
        select(Liaison)
        .where(Liaison.unit_id == unit_id, Liaison.active.is_(True),
               Liaison.telegram_user_id.is_not(None))
        .order_by(Liaison.role, Liaison.id)
    )
    found: dict[int, Liaison] = {}
    for liaison in rows.scalars():
        if liaison.telegram_user_id is not None:
            found.setdefault(liaison.telegram_user_id, liaison)
    return [(liaison, chat_id) for chat_id, liaison in found.items()]


async def liaison_reader(session: AsyncSession, liaison: Liaison) -> User | None:
    """The registered user behind a liaison's Telegram account, with their unit."""
    return (await session.execute(
        select(User).options(selectinload(User.unit))
        .where(User.telegram_id == liaison.telegram_user_id))).scalar_one_or_none()


async def zone_coordinators(session: AsyncSession, unit_id: int) -> list[User]:
    """Active coordinators (and administrators) of units sharing a zone with `unit_id`
    (a city bureau: its province's zones); every active coordinator when there are none."""
    peers = select(ZoneMembership.unit_id).where(
        ZoneMembership.zone_id.in_(zone_ids_of(unit_id)))
    senior = [Role.coordinator, Role.admin]
    base = (
        select(User).options(selectinload(User.unit))
        .where(User.active.is_(True), User.role.in_(senior)).order_by(User.id)
    )
    found = list((await session.execute(
        base.where(or_(User.unit_id.in_(peers), User.unit_id == unit_id))
    )).scalars())
    if not found:
        found = list((await session.execute(
            base.where(User.role == Role.coordinator)
        )).scalars()) or list((await session.execute(base)).scalars())
    return found


# --------------------------------------------------------------------------- numbering


async def next_number(session: AsyncSession, year: int) -> str:
    """The next readable number of the year, atomically (concurrent creators never
    share one): an upsert that increments the year's counter and returns it."""
    statement = dialect_insert(session)(RequestCounter).values(year=year, last=1)
    statement = statement.on_conflict_do_update(
        index_elements=["year"], set_={"last": RequestCounter.last + 1}
    ).returning(RequestCounter.last)
    sequence = (await session.execute(statement)).scalar_one()
    return rules.format_number(year, sequence)


async def number_of_sequence(session: AsyncSession, sequence: int) -> str | None:
    """The newest request numbered `sequence` in its year (what a /requests button shows)."""
    suffix = rules.format_number(0, sequence).rsplit("-", 1)[1]
    return (await session.execute(
        select(AssistanceRequest.number)
        .where(AssistanceRequest.number.like(f"{rules.NUMBER_PREFIX}-%-{suffix}"))
        .order_by(AssistanceRequest.created_at.desc(), AssistanceRequest.id.desc()).limit(1)
    )).scalar_one_or_none()


async def submitted_numbers(session: AsyncSession, key: str) -> list[str]:
    """The numbers of the requests stored from the draft whose identity is `key`."""
    return list((await session.execute(
        select(AssistanceRequest.number).where(AssistanceRequest.submission_key == key)
        .order_by(AssistanceRequest.id))).scalars())


# --------------------------------------------------------------------------- history


def add_event(
    request: AssistanceRequest, action: str, *, actor: User | None, now: datetime,
    from_status: RequestStatus | None = None, to_status: RequestStatus | None = None,
    note: str | None = None,
) -> RequestEvent:
    """A row of the request's history, stored with the request (its events cascade)."""
    event = RequestEvent(
        request_id=request.id, at=now, actor_id=actor.id if actor else None, action=action,
        from_status=from_status.value if from_status else None,
        to_status=to_status.value if to_status else None, note=note,
    )
    event.actor = actor
    request.events.append(event)
    return event


# --------------------------------------------------------------------------- escalations


async def escalation_candidates(
    session: AsyncSession, until: datetime
) -> list[AssistanceRequest]:
    """Requests that may have an escalation due before `until`: open with an
    acknowledgement deadline, or active with a reply deadline, before it."""
    statement = (
        select(AssistanceRequest)
        .where(
            or_(
                (AssistanceRequest.status == RequestStatus.open)
                & (AssistanceRequest.ack_due_at < until),
                AssistanceRequest.status.in_(list(rules.ACTIVE_STATUSES))
                & (AssistanceRequest.reply_due_at < until),
            )
        )
        .order_by(AssistanceRequest.id)
    )
    return list((await session.execute(statement)).scalars())


# --------------------------------------------------------------------------- lists


def _visible(statement: Select[Any], filters: Filters, viewer: User,
             unit_ids: Sequence[int] | None) -> Select[Any]:
    """Members see their unit's incoming and outgoing requests; coordinators see all
    (and narrow to their own unit with `in`/`out`)."""
    R = AssistanceRequest
    own, scope = viewer.unit_id, filters.scope
    if rules.is_coordinator(viewer.role):
        if scope is Scope.incoming and own is not None:
            statement = statement.where(R.to_unit_id == own)
        elif scope is Scope.outgoing and own is not None:
            statement = statement.where(R.from_unit_id == own)
    elif own is None:
        return statement.where(R.id.is_(None))
    elif scope is Scope.incoming:
        statement = statement.where(R.to_unit_id == own)
    elif scope is Scope.outgoing:
        statement = statement.where(R.from_unit_id == own)
    else:
        statement = statement.where(or_(R.to_unit_id == own, R.from_unit_id == own))
    statuses = filters.wanted_statuses()
    if statuses:
        statement = statement.where(R.status.in_(statuses))
    if filters.undelivered:
        statement = statement.where(R.routed_at.is_(None))
    if filters.urgency is not None:
        statement = statement.where(R.urgency == filters.urgency)
    if unit_ids is not None:
        statement = statement.where(or_(R.to_unit_id.in_(unit_ids), R.from_unit_id.in_(unit_ids)))
    if filters.period is not None:
        statement = statement.where(R.created_at >= filters.period.start,
                                    R.created_at < filters.period.end)
    return statement


async def list_requests(
    session: AsyncSession, filters: Filters, *, viewer: User,
    unit_ids: Sequence[int] | None = None, page: int = 0, page_size: int = PAGE_SIZE,
) -> tuple[list[AssistanceRequest], int]:
    """One page of the requests this viewer may see, newest first, and the total."""
    total = (await session.execute(
        _visible(select(func.count(AssistanceRequest.id)), filters, viewer, unit_ids)
    )).scalar_one()
    rows = await session.execute(
        _visible(select(AssistanceRequest), filters, viewer, unit_ids)
        .options(selectinload(AssistanceRequest.from_unit),
                 selectinload(AssistanceRequest.to_unit))
        .order_by(AssistanceRequest.created_at.desc(), AssistanceRequest.id.desc())
        .offset(max(page, 0) * page_size).limit(page_size)
    )
    return list(rows.scalars()), total


async def export_requests(
    session: AsyncSession, filters: Filters, *, viewer: User,
    unit_ids: Sequence[int] | None = None, limit: int = EXPORT_LIMIT,
) -> list[AssistanceRequest]:
    rows = await session.execute(
        _visible(select(AssistanceRequest), filters, viewer, unit_ids)
        .options(*_FULL)
        .order_by(AssistanceRequest.created_at, AssistanceRequest.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def stats_rows(
    session: AsyncSession, period: Period, *, viewer: User, filters: Filters | None = None,
    unit_ids: Sequence[int] | None = None,
) -> list[StatsRow]:
    chosen = dataclasses.replace(filters or Filters(scope=Scope.all), period=period)
    statement = _visible(
        select(AssistanceRequest).options(selectinload(AssistanceRequest.to_unit),
                                          selectinload(AssistanceRequest.mechanism)),
        chosen, viewer, unit_ids,
    )
    return [
        StatsRow(
            mechanism=r.mechanism.name if r.mechanism else None,
            to_unit=r.to_unit.short_name or r.to_unit.name, status=r.status,
            created_at=r.created_at, ack_due_at=r.ack_due_at,
            acknowledged_at=r.acknowledged_at, completed_at=r.completed_at,
            reply_due_at=r.reply_due_at,
        )
        for r in (await session.execute(statement)).scalars()
    ]
