"""What the database already holds, loaded once per import (and export): its rows keyed
by identity (`State`), and as far as validating a file needs to know (`Existing`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.dataio.catalog import agreement_tiers
from storage.dataio.catalog import named_tiers
from storage.dataio.catalog import unit_tiers
from storage.dataio.catalog import zone_tiers
from storage.dataio.resolve import Existing
from storage.dataio.resolve import LiaisonInfo
from storage.dataio.resolve import RoomInfo
from storage.models import Agreement
from storage.models import Branch
from storage.models import ChairRotation
from storage.models import Clause
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Meeting
from storage.models import Roster
from storage.models import Unit
from storage.models import Zone


@dataclass
class State:
    """The database's rows, loaded once, keyed by identity."""

    zones: dict[str, Zone]
    units: dict[str, Unit]
    branches: dict[str, Branch]
    mechanisms: dict[str, Mechanism]
    rooms: dict[str, DutyRoom]
    rotations: dict[int, ChairRotation]
    agreements: dict[str, Agreement]
    meetings: list[Meeting]
    liaisons: list[tuple[int, str, str | None, int | None]]


def room_key(room: DutyRoom) -> str:
    return f"db:{room.id}"


async def load_state(session: AsyncSession) -> State:
    async def all_of(statement: Any) -> list[Any]:
        return list((await session.execute(statement)).scalars().unique())

    return State(
        units={u.code: u for u in await all_of(select(Unit).order_by(Unit.id))},
        zones={z.code: z for z in await all_of(
            select(Zone).options(selectinload(Zone.memberships)).order_by(Zone.id))},
        branches={b.code: b for b in await all_of(select(Branch).order_by(Branch.id))},
        mechanisms={m.code: m for m in await all_of(select(Mechanism).order_by(Mechanism.id))},
        rooms={room_key(r): r for r in await all_of(
            select(DutyRoom).options(selectinload(DutyRoom.roster).selectinload(Roster.members))
            .order_by(DutyRoom.id))},
        rotations={r.zone_id: r for r in await all_of(
            select(ChairRotation).options(selectinload(ChairRotation.entries)))},
        agreements={a.code: a for a in await all_of(
            select(Agreement).options(
                selectinload(Agreement.parties),
                selectinload(Agreement.clauses).selectinload(Clause.mechanisms),
            ).order_by(Agreement.id))},
        meetings=await all_of(
            select(Meeting).options(selectinload(Meeting.participants)).order_by(Meeting.id)),
        liaisons=[tuple(row) for row in await session.execute(
            select(Liaison.unit_id, Liaison.name, Liaison.key, Liaison.telegram_user_id))],
    )


def existing_from(state: State) -> Existing:
    code_of = {u.id: u.code for u in state.units.values()}
    existing = Existing()
    for u in state.units.values():
        existing.units[u.code] = unit_tiers(
            u.code, u.name, u.short_name, u.abbreviation, u.english, u.aliases)
        existing.unit_parents[u.code] = code_of.get(u.parent_id) if u.parent_id else None
        existing.unit_timezones[u.code] = u.timezone
    for z in state.zones.values():
        existing.zones[z.code] = zone_tiers(z.code, z.name, z.short_name, z.english, z.aliases)
    for b in state.branches.values():
        existing.branches[b.code] = named_tiers(b.code, b.name, b.english, b.aliases)
    for m in state.mechanisms.values():
        existing.mechanisms[m.code] = named_tiers(m.code, m.name, m.english, m.aliases)
    for a in state.agreements.values():
        existing.agreements[a.code] = agreement_tiers(a.code, a.title, a.short_title)
    for key, r in state.rooms.items():
        existing.duty_rooms[key] = RoomInfo(key, code_of[r.unit_id], r.title, r.chat_id,
                                            r.timezone)
    existing.liaisons = [LiaisonInfo(code_of[unit_id], name, key, telegram_id)
                         for unit_id, name, key, telegram_id in state.liaisons]
    return existing
