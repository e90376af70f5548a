"""What the lookup quotas read: a person's lookups as the audit log holds them.

Nothing is counted twice: the items a person was shown are the audit log's
`contact.view` (a liaison's card) and `oncall.view` (a unit's duty lines) entries, read
through the index on (actor, action, time) of migration 0014. Lifts (`lookup.unblock`)
and alerts (`lookup.alert`) are audit entries about the person too. The rules are in
core/quota.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.enums import Role
from core.quota import AlertKind, Item, View
from storage.access import audit_many, audit_row
from storage.models import AuditEntry, Unit, User, ZoneMembership
from storage.schedules import unit_with_ancestors

# What counts: a card, a unit's duty lines. `oncall.overview` (the reader's own zones'
# duty rooms, /oncall without arguments) is audited but not counted.
COUNTED = ("contact.view", "oncall.view")
REFUSED, ALERT, UNBLOCK = "lookup.refused", "lookup.alert", "lookup.unblock"

A = AuditEntry


def counted_items(rows: Sequence[dict[str, Any]]) -> set[Item]:
    """The items among audit rows about to be written (`storage.access.audit_row`s)."""
    return {(row["subject_type"], row["subject_id"]) for row in rows
            if row["action"] in COUNTED}


def views_of(rows: Sequence[dict[str, Any]], at: datetime) -> list[View]:
    """Audit rows about to be written, as the pattern rules read them."""
    return [_view(at, row["detail"]) for row in rows if row["action"] in COUNTED]


def _view(at: datetime, detail: dict[str, Any]) -> View:
    unit, offset = detail.get("unit_id"), detail.get("offset")
    return View(at, None if unit is None else str(unit), detail.get("query"),
                offset if isinstance(offset, int) else None)


def _mine(telegram_id: int, since: datetime) -> list[Any]:
    return [A.actor_telegram_id == telegram_id, A.action.in_(COUNTED), A.at > since]


async def seen_items(session: AsyncSession, telegram_id: int,
                     since: datetime) -> dict[Item, datetime]:
    """Each item the person was shown after `since`, with when it was last shown."""
    rows = await session.execute(
        select(A.subject_type, A.subject_id, func.max(A.at))
        .where(*_mine(telegram_id, since)).group_by(A.subject_type, A.subject_id))
    return {(kind or "", subject or ""): at for kind, subject, at in rows}


async def views_since(session: AsyncSession, telegram_id: int, since: datetime) -> list[View]:
    """Every item shown after `since`, one by one (for the pattern rules)."""
    rows = await session.execute(select(A.at, A.detail).where(*_mine(telegram_id, since)))
    return [_view(at, detail or {}) for at, detail in rows]


@dataclass(frozen=True)
class Marks:
    """The person's last lift and the last alert of each kind about them."""

    lifted_at: datetime | None = None
    alerts: dict[AlertKind, datetime] = field(default_factory=dict)


async def marks(session: AsyncSession, telegram_id: int, since: datetime) -> Marks:
    """Lifts and alerts about the person after `since` (the longest quiet period)."""
    rows = await session.execute(
        select(A.action, A.at, A.detail)
        .where(A.action.in_((ALERT, UNBLOCK)), A.subject_type == "user",
               A.subject_id == str(telegram_id), A.at > since)
        .order_by(A.at))
    lifted, alerts = None, {}
    for action, at, detail in rows:
        if action == UNBLOCK:
            lifted = at
        elif (kind := (detail or {}).get("kind")) in AlertKind.__members__:
            alerts[AlertKind(kind)] = at
    return Marks(lifted, alerts)


async def units_browsed(session: AsyncSession, telegram_id: int,
                        since: datetime) -> list[tuple[str, int]]:
    """The units whose items the person was shown after `since`, with how many
    distinct items of each, most first: what an alert names."""
    rows = await session.execute(
        select(A.subject_type, A.subject_id, A.detail).where(*_mine(telegram_id, since)))
    items = {(kind, subject): (detail or {}).get("unit_id") for kind, subject, detail in rows}
    counts = Counter(unit for unit in items.values() if isinstance(unit, int))
    names = {unit: name for unit, name in await session.execute(
        select(Unit.id, Unit.name).where(Unit.id.in_(list(counts))))}
    return [(names[unit], count) for unit, count in counts.most_common() if unit in names]


async def alert_recipients(session: AsyncSession, user: User) -> list[User]:
    """Who is told about the person's lookups: the active coordinators of the zones of
    the person's unit (a member or a partner; a city bureau: its province's);
    administrators when those zones have none (or the person has no unit). Never the
    person themself."""
    base = (select(User).options(selectinload(User.unit))
            .where(User.active.is_(True), User.id != user.id).order_by(User.id))
    if user.unit_id is not None:
        units = [unit.id for unit in await unit_with_ancestors(session, user.unit_id)]
        zones = select(ZoneMembership.zone_id).where(ZoneMembership.unit_id.in_(units))
        peers = select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(zones))
        found = list((await session.execute(base.where(
            User.role == Role.coordinator, User.unit_id.in_(peers)))).scalars())
        if found:
            return found
    return list((await session.execute(base.where(User.role == Role.admin))).scalars())


async def record(session: AsyncSession, action: str, *, now: datetime,
                 **fields: Any) -> None:
    """An audit entry at `now`, the clock the quotas count by."""
    await audit_many(session, [{**audit_row(action, **fields), "at": now}])
