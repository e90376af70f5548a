"""The database as a data file: the same format the importer reads.

Rows come out in a stable order (by id, meetings by start), references as the
shortest name that resolves back to the same entity, dates as ISO strings and
meeting times in the meeting's own time zone, reminder times as chat commands
write them (`[2d, 1h]`). Empty and default values are left out, and so is a
roster's time zone when it is the one its room (or unit) gives it, so an export
reads like a hand-written file and adds nothing the author did not write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import DEFAULT_ZONE
from core.clock import time_zone
from core.enums import LiaisonRole
from core.enums import MeetingStatus
from core.enums import MembershipKind
from core.enums import Role
from core.enums import UnitLevel
from core.schedule import offset_label
from storage.dataio.catalog import Catalog
from storage.dataio.catalog import fold
from storage.dataio.resolve import Existing
from storage.dataio.schema import DEFAULT_REMINDER_OFFSETS
from storage.dataio.schema import DEFAULT_SHIFT_STARTS
from storage.dataio.schema import DEFAULT_TERM_MONTHS
from storage.dataio.schema import SECTIONS
from storage.dataio.state import existing_from
from storage.dataio.state import load_state
from storage.models import Liaison
from storage.models import User


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None or an empty list/string."""
    return {k: v for k, v in record.items() if v is not None and v != [] and v != ""}


def local_text(moment: datetime, timezone: str | None) -> str:
    local = moment.astimezone(time_zone(timezone))
    fmt = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
    return local.strftime(fmt)


def _catalogs(existing: Existing) -> dict[str, Catalog]:
    catalogs = {
        "zone": Catalog("zone"), "unit": Catalog("unit"), "branch": Catalog("branch"),
        "mechanism": Catalog("mechanism"),
    }
    for kind, entries in (
        ("zone", existing.zones), ("unit", existing.units), ("branch", existing.branches),
        ("mechanism", existing.mechanisms),
    ):
        for code, tiers in entries.items():
            catalogs[kind].put(code, tiers)
    return catalogs


async def export_document(session: AsyncSession) -> dict[str, Any]:
    state = await load_state(session)
    catalogs = _catalogs(existing_from(state))
    units_by_id = {u.id: u for u in state.units.values()}
    zones_by_id = {z.id: z for z in state.zones.values()}
    branches_by_id = {b.id: b for b in state.branches.values()}
    agreements_by_id = {a.id: a for a in state.agreements.values()}

    def unit(unit_id: int | None) -> str | None:
        if unit_id is None:
            return None
        u = units_by_id[unit_id]
        return catalogs["unit"].preferred(u.code, [u.short_name, u.name])

    def zone(zone_id: int | None) -> str | None:
        if zone_id is None:
            return None
        z = zones_by_id[zone_id]
        return catalogs["zone"].preferred(z.code, [z.short_name, z.name])

    def branch(branch_id: int | None) -> str | None:
        if branch_id is None:
            return None
        b = branches_by_id[branch_id]
        return catalogs["branch"].preferred(b.code, [b.name])

    def mechanism(code: str, name: str) -> str:
        return catalogs["mechanism"].preferred(code, [name])

    document: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}

    for z in state.zones.values():
        memberships = sorted(z.memberships, key=lambda m: m.id)
        document["zones"].append(_clean({
            "code": z.code, "name": z.name, "short_name": z.short_name, "english": z.english,
            "aliases": list(z.aliases or []), "description": z.description,
            "members": [unit(m.unit_id) for m in memberships
                        if m.kind is MembershipKind.member],
            "partners": [unit(m.unit_id) for m in memberships
                         if m.kind is MembershipKind.partner],
        }))

    for u in state.units.values():
        document["units"].append(_clean({
            "code": u.code, "name": u.name, "short_name": u.short_name,
            "abbreviation": u.abbreviation, "english": u.english,
            "aliases": list(u.aliases or []),
            "level": None if u.level is UnitLevel.province else u.level.value,
            "parent": unit(u.parent_id), "timezone": u.timezone, "duty_phone": u.duty_phone,
        }))

    for b in state.branches.values():
        document["branches"].append(_clean({
            "code": b.code, "name": b.name, "english": b.english,
            "aliases": list(b.aliases or []),
        }))

    for m in state.mechanisms.values():
        document["mechanisms"].append(_clean({
            "code": m.code, "name": m.name, "english": m.english,
            "aliases": list(m.aliases or []),
        }))

    for user in (await session.execute(select(User).order_by(User.id))).scalars():
        document["users"].append(_clean({
            "telegram_id": user.telegram_id, "name": user.full_name, "username": user.username,
            "role": None if user.role is Role.officer else user.role.value,
            "unit": unit(user.unit_id), "language": user.language,
            "active": None if user.active else False,
        }))

    rows = await session.execute(
        select(Liaison.unit_id, Liaison.branch_id, Liaison.name, Liaison.title, Liaison.role,
               Liaison.phones, Liaison.telegram_user_id, Liaison.telegram_username,
               Liaison.notes, Liaison.active, Liaison.id, Liaison.key)
    )
    unit_rank = {unit_id: rank for rank, unit_id in enumerate(sorted(units_by_id))}
    liaisons = sorted(rows, key=lambda row: (
        unit_rank.get(row[0], 0), row[1] or 0, row[4] is not LiaisonRole.primary, row[10]))
    for (unit_id, branch_id, name, title, role, phones, telegram_id, username, notes, active,
         _id, key) in liaisons:
        document["liaisons"].append(_clean({
            "key": key, "unit": unit(unit_id), "branch": branch(branch_id), "name": name,
            "title": title,
            "role": None if role is LiaisonRole.primary else LiaisonRole(role).value,
            "phones": list(phones or []),
            "telegram_id": telegram_id, "username": username, "notes": notes,
            "active": None if active else False,
        }))

    rooms = list(state.rooms.values())
    title_count: dict[str, int] = {}
    unit_count: dict[int, int] = {}
    for room in rooms:
        title_count[fold(room.title)] = title_count.get(fold(room.title), 0) + 1
        unit_count[room.unit_id] = unit_count.get(room.unit_id, 0) + 1

    def room_ref(room: Any) -> str | int:
        if title_count[fold(room.title)] == 1:  # titles are looked up before units
            return str(room.title)
        if room.chat_id is not None:
            return int(room.chat_id)
        return unit(room.unit_id) if unit_count[room.unit_id] == 1 else str(room.title)

    for room in rooms:
        document["duty_rooms"].append(_clean({
            "unit": unit(room.unit_id), "title": room.title, "chat_id": room.chat_id,
            "phone": room.phone, "timezone": room.timezone,
            "active": None if room.active else False,
        }))
    for room in rooms:
        roster = room.roster
        if roster is None:
            continue
        starts = list(roster.shift_starts or [])
        followed = room.timezone or units_by_id[room.unit_id].timezone or DEFAULT_ZONE
        document["rosters"].append(_clean({
            "duty_room": room_ref(room), "pattern": roster.pattern.value,
            "anchor_date": roster.anchor_date.isoformat(),
            "shift_starts": None if starts == DEFAULT_SHIFT_STARTS[roster.pattern] else starts,
            "timezone": None if roster.timezone == followed else roster.timezone,
            "members": [
                _clean({"name": m.name, "phone": m.phone, "telegram_id": m.telegram_user_id})
                for m in sorted(roster.members, key=lambda m: m.position)
            ],
        }))

    for rotation in sorted(state.rotations.values(), key=lambda r: r.zone_id):
        document["chair_rotations"].append(_clean({
            "zone": zone(rotation.zone_id),
            "term_months": None if rotation.term_months == DEFAULT_TERM_MONTHS
            else rotation.term_months,
            "anchor_date": rotation.anchor_date.isoformat(),
            "order": [unit(e.unit_id) for e in sorted(rotation.entries, key=lambda e: e.position)],
        }))

    for a in state.agreements.values():
        supersedes = agreements_by_id.get(a.supersedes_id) if a.supersedes_id else None
        document["agreements"].append(_clean({
            "code": a.code, "title": a.title, "short_title": a.short_title, "zone": zone(a.zone_id),
            "signed_on": a.signed_on.isoformat() if a.signed_on else None,
            "signed_at": a.signed_at, "status": a.status.value,
            "supersedes": supersedes.code if supersedes else None, "summary": a.summary,
            "parties": [unit(p.unit_id) for p in sorted(a.parties, key=lambda p: p.id)],
            "clauses": [
                _clean({
                    "number": c.number, "heading": c.heading, "text": c.text,
                    "mechanisms": [mechanism(m.code, m.name)
                                   for m in sorted(c.mechanisms, key=lambda m: m.id)],
                })
                for c in sorted(a.clauses, key=lambda c: (c.position, c.id))
            ],
        }))

    for meeting in sorted(state.meetings, key=lambda m: (m.starts_at, m.id)):
        offsets = list(meeting.reminder_offsets or [])
        record = _clean({
            "code": meeting.code, "kind": meeting.kind.value, "title": meeting.title,
            "zone": zone(meeting.zone_id),
            "starts_at": local_text(meeting.starts_at, meeting.timezone),
            "ends_at": local_text(meeting.ends_at, meeting.timezone),
            "timezone": meeting.timezone, "place": meeting.place,
            "video_link": meeting.video_link, "agenda": meeting.agenda,
            "status": None if meeting.status is MeetingStatus.scheduled
            else meeting.status.value,
            "participants": [unit(p.unit_id)
                             for p in sorted(meeting.participants, key=lambda p: p.id)],
        })
        if offsets != DEFAULT_REMINDER_OFFSETS:  # as chat commands write them: [2d, 1h]
            record["reminder_offsets"] = [offset_label(minutes) for minutes in offsets]
        document["meetings"].append(record)

    return document
