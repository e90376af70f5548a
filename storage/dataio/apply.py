"""Apply a validated plan to the database in one unit of work.

Existing rows are loaded once per section into dictionaries (`state.py`); users
and liaisons, which can number in the hundreds of thousands, are compared as plain
tuples and written with bulk INSERT / UPDATE statements. Nothing is ever deleted
except the nested lists the file states in full (zone members, parties, clauses,
roster members, rotation order, meeting participants).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.enums import MembershipKind
from storage.dataio.catalog import fold
from storage.dataio.resolve import Plan
from storage.dataio.schema import SECTIONS
from storage.dataio.state import State
from storage.models import Agreement
from storage.models import AgreementParty
from storage.models import Branch
from storage.models import ChairRotation
from storage.models import ChairRotationEntry
from storage.models import Clause
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import Roster
from storage.models import RosterMember
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership

COUNTED = (*SECTIONS[:10], "clauses", "meetings")


@dataclass
class SectionCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    def add(self, created: bool, changed: bool) -> None:
        if created:
            self.created += 1
        elif changed:
            self.updated += 1
        else:
            self.unchanged += 1

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


def assign(obj: Any, values: dict[str, Any]) -> bool:
    """Set the attributes that differ; True if any did."""
    changed = False
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def sync_by_unit(links: list[Any], wanted: Mapping[int | None, Mapping[str, Any]],
                 make: Callable[..., Any]) -> bool:
    """Make a record's links to units (zone memberships, agreement parties, meeting
    participants) what the file says: unit id -> the link's other values. Links to other
    units go, missing ones are made (`make(unit_id=…, **values)`); True if any changed."""
    changed = False
    current = {link.unit_id: link for link in links}
    for unit_id, link in current.items():
        if unit_id not in wanted:
            links.remove(link)
            changed = True
        else:
            changed = assign(link, wanted[unit_id]) or changed
    for unit_id, values in wanted.items():
        if unit_id not in current:
            links.append(make(unit_id=unit_id, **values))
            changed = True
    return changed


def sync_in_order(rows: list[Any], wanted: Sequence[Mapping[str, Any]],
                  make: Callable[..., Any]) -> bool:
    """Make a record's ordered rows (roster members, a chair rotation's order) the file's
    list: the n-th row (by `position`) takes the n-th values, rows beyond the list go,
    missing ones are made (`make(**values)`); True if any changed."""
    changed = False
    current = sorted(rows, key=lambda row: row.position)
    for row, values in zip(current, wanted, strict=False):
        changed = assign(row, values) or changed
    for row in current[len(wanted):]:
        rows.remove(row)
        changed = True
    for values in wanted[len(current):]:
        rows.append(make(**values))
        changed = True
    return changed


class Applier:
    def __init__(
        self, session: AsyncSession, state: State, plan: Plan, now: datetime | None = None
    ) -> None:
        self.session = session
        self.now = now  # new rosters, rotations and meetings exist from then (None: unknown)
        self.state = state
        self.plan = plan.sections
        self.counts = {name: SectionCounts() for name in COUNTED}
        # What the search index must look at again (see `search_scope`).
        self.liaisons_before = 0
        self.new_liaisons_after_id: int | None = None
        self.updated_liaison_ids: list[int] = []
        self.changed_agreements: list[Agreement] = []

    def unit_id(self, code: str | None) -> int | None:
        return None if code is None else self.state.units[code].id

    def zone_id(self, code: str | None) -> int | None:
        return None if code is None else self.state.zones[code].id

    def add_new(self, section: str, row: Any) -> None:
        """A row the file adds: into the session, counted as created."""
        self.session.add(row)
        self.counts[section].add(True, True)

    async def refer_within(self, section: str, status: Sequence[tuple[Any, bool, bool]],
                           references: Callable[[dict[str, Any]], dict[str, Any]]) -> list[Any]:
        """The second pass of a section whose rows refer to rows of the same section (a
        unit's parent, an agreement's predecessor): once the first has given every row an
        id, set `references(file row)` on each `status` row (row, created, changed) and
        count it. Returns the rows that changed."""
        await self.session.flush()
        changed_rows = []
        for (row, created, changed), r in zip(status, self.plan[section], strict=True):
            changed = assign(row, references(r)) or changed
            self.counts[section].add(created, changed)
            if changed:
                changed_rows.append(row)
        await self.session.flush()
        return changed_rows

    def update_in_order(self, section: str, record: Any, values: dict[str, Any],
                        rows: list[Any], wanted: Sequence[Mapping[str, Any]],
                        make: Callable[..., Any]) -> None:
        """A record the file keeps, with its ordered rows (a roster's officers, a chair
        rotation's order), made what the file says; counted as updated or unchanged."""
        changed = assign(record, values)
        changed = sync_in_order(rows, wanted, make) or changed
        self.counts[section].add(False, changed)

    async def run(self) -> dict[str, SectionCounts]:
        await self.named("branches", Branch, self.state.branches)
        await self.named("mechanisms", Mechanism, self.state.mechanisms)
        await self.units()
        await self.zones()
        await self.users()
        await self.liaisons()
        rooms = await self.duty_rooms()
        await self.rosters(rooms)
        await self.chair_rotations()
        await self.agreements()
        await self.meetings()
        await self.session.flush()
        return self.counts

    async def named(self, section: str, model: Any, rows: dict[str, Any]) -> None:
        for r in self.plan[section]:
            values = {"name": r["name"], "english": r["english"], "aliases": r["aliases"]}
            row = rows.get(r["code"])
            if row is None:
                row = rows[r["code"]] = model(code=r["code"], **values)
                self.add_new(section, row)
            else:
                self.counts[section].add(False, assign(row, values))
        await self.session.flush()

    async def units(self) -> None:
        status: list[tuple[Unit, bool, bool]] = []
        for r in self.plan["units"]:
            values = {
                "name": r["name"], "short_name": r["short_name"],
                "abbreviation": r["abbreviation"], "english": r["english"],
                "aliases": r["aliases"], "level": r["level"], "timezone": r["timezone"],
                "duty_phone": r["duty_phone"],
            }
            unit = self.state.units.get(r["code"])
            if unit is None:
                unit = self.state.units[r["code"]] = Unit(code=r["code"], **values)
                self.session.add(unit)
                status.append((unit, True, True))
            else:
                status.append((unit, False, assign(unit, values)))
        # Parents second, so ids follow the file's order.
        await self.refer_within("units", status,
                                lambda r: {"parent_id": self.unit_id(r["parent"])})

    async def zones(self) -> None:
        for r in self.plan["zones"]:
            values = {
                "name": r["name"], "short_name": r["short_name"], "english": r["english"],
                "aliases": r["aliases"], "description": r["description"],
            }
            wanted = {self.unit_id(c): MembershipKind.member for c in r["members"]}
            wanted.update({self.unit_id(c): MembershipKind.partner for c in r["partners"]})
            zone = self.state.zones.get(r["code"])
            if zone is None:
                zone = self.state.zones[r["code"]] = Zone(
                    code=r["code"], **values,
                    memberships=[ZoneMembership(unit_id=u, kind=k) for u, k in wanted.items()],
                )
                self.add_new("zones", zone)
                continue
            changed = assign(zone, values)
            changed = sync_by_unit(zone.memberships, {u: {"kind": k} for u, k in wanted.items()},
                                   ZoneMembership) or changed
            self.counts["zones"].add(False, changed)
        await self.session.flush()

    async def users(self) -> None:
        records = self.plan["users"]
        if not records:
            return
        columns = (User.full_name, User.username, User.role, User.unit_id, User.language,
                   User.active)
        names = [c.key for c in columns]
        existing = {
            row[1]: (row[0], tuple(row[2:]))
            for row in await self.session.execute(select(User.id, User.telegram_id, *columns))
        }
        inserts, updates = [], []
        for r in records:
            wanted = (r["name"], r["username"], r["role"], self.unit_id(r["unit"]),
                      r["language"], r["active"])
            found = existing.get(r["telegram_id"])
            if found is None:
                inserts.append({"telegram_id": r["telegram_id"], **dict(zip(names, wanted,
                                                                            strict=True))})
                self.counts["users"].add(True, True)
            elif found[1] != wanted:
                updates.append({"id": found[0], **dict(zip(names, wanted, strict=True))})
                self.counts["users"].add(False, True)
            else:
                self.counts["users"].add(False, False)
        if inserts:
            await self.session.execute(insert(User), inserts)
        if updates:
            await self.session.execute(update(User), updates)

    async def liaisons(self) -> None:
        """Each record updates the row its `key` names, else the row with its unit, branch
        and name, else the one row of its unit and branch with its telegram_id (so a
        corrected name is an update), else it is a new row."""
        records = self.plan["liaisons"]
        if not records:
            return
        columns = (Liaison.unit_id, Liaison.branch_id, Liaison.name, Liaison.key, Liaison.title,
                   Liaison.role, Liaison.phones, Liaison.telegram_user_id,
                   Liaison.telegram_username, Liaison.notes, Liaison.active)
        names = [c.key for c in columns]
        rows = [(row[0], tuple(row[1:])) for row in await self.session.execute(
            select(Liaison.id, *columns))]
        by_key = {values[3]: (ident, values) for ident, values in rows if values[3]}
        by_name = {values[:3]: (ident, values) for ident, values in rows}
        by_account: dict[tuple[Any, ...], list[tuple[int, tuple[Any, ...]]]] = {}
        for ident, values in rows:
            if values[7]:
                by_account.setdefault((values[0], values[1], values[7]), []).append(
                    (ident, values))
        self.liaisons_before = len(rows)
        branch_ids = {code: b.id for code, b in self.state.branches.items()}
        unit_ids = {code: u.id for code, u in self.state.units.items()}
        inserts, updates = [], []
        counts = self.counts["liaisons"]
        for r in records:
            unit_id = unit_ids[r["unit"]]
            branch_id = branch_ids[r["branch"]] if r["branch"] else None
            wanted = (unit_id, branch_id, r["name"], r["key"], r["title"], r["role"],
                      r["phones"], r["telegram_id"], r["username"], r["notes"], r["active"])
            found = (by_key.get(r["key"]) if r["key"] else None) \
                or by_name.get((unit_id, branch_id, r["name"]))
            if found is None and r["telegram_id"]:
                same_account = by_account.get((unit_id, branch_id, r["telegram_id"]), [])
                found = same_account[0] if len(same_account) == 1 else None
            if found is None:
                inserts.append(dict(zip(names, wanted, strict=True)))
                counts.created += 1
            elif found[1] != wanted:
                updates.append({"id": found[0], **dict(zip(names, wanted, strict=True))})
                counts.updated += 1
            else:
                counts.unchanged += 1
        if inserts:
            self.new_liaisons_after_id = max((ident for ident, _ in rows), default=0)
            await self.session.execute(insert(Liaison), inserts)
        if updates:
            self.updated_liaison_ids = [row["id"] for row in updates]
            await self.session.execute(update(Liaison), updates)

    async def duty_rooms(self) -> dict[str, DutyRoom]:
        rooms = dict(self.state.rooms)
        for r in self.plan["duty_rooms"]:
            values = {
                "unit_id": self.unit_id(r["unit"]), "title": r["title"], "chat_id": r["chat_id"],
                "phone": r["phone"], "timezone": r["timezone"], "active": r["active"],
            }
            room = rooms.get(r["_key"])
            if room is None:
                room = rooms[r["_key"]] = DutyRoom(**values)
                self.add_new("duty_rooms", room)
            else:
                self.counts["duty_rooms"].add(False, assign(room, values))
        await self.session.flush()
        return rooms

    async def rosters(self, rooms: dict[str, DutyRoom]) -> None:
        if not self.plan["rosters"]:
            return
        telegram_ids = {m["telegram_id"] for r in self.plan["rosters"] for m in r["members"]
                        if m["telegram_id"]}
        user_ids: dict[int, int] = {}
        if telegram_ids:
            rows = await self.session.execute(
                select(User.telegram_id, User.id).where(User.telegram_id.in_(telegram_ids)))
            user_ids = {tid: uid for tid, uid in rows}
        existing = {room.id: room.roster for room in self.state.rooms.values() if room.roster}
        for r in self.plan["rosters"]:
            room = rooms[r["duty_room"]]
            values = {
                "pattern": r["pattern"], "anchor_date": r["anchor_date"],
                "timezone": r["timezone"], "shift_starts": r["shift_starts"],
            }
            members = [
                {"position": index, "name": m["name"], "phone": m["phone"],
                 "telegram_user_id": m["telegram_id"],
                 "user_id": user_ids.get(m["telegram_id"]) if m["telegram_id"] else None}
                for index, m in enumerate(r["members"])
            ]
            roster = existing.get(room.id)
            if roster is None:
                roster = Roster(duty_room_id=room.id, **values, created_at=self.now,
                                members=[RosterMember(**m) for m in members])
                self.add_new("rosters", roster)
                continue
            self.update_in_order("rosters", roster, values, roster.members, members, RosterMember)
        await self.session.flush()

    async def chair_rotations(self) -> None:
        for r in self.plan["chair_rotations"]:
            zone_id = self.state.zones[r["zone"]].id
            values = {"term_months": r["term_months"], "anchor_date": r["anchor_date"]}
            order = [{"position": index, "unit_id": self.unit_id(code)}
                     for index, code in enumerate(r["order"])]
            rotation = self.state.rotations.get(zone_id)
            if rotation is None:
                rotation = self.state.rotations[zone_id] = ChairRotation(
                    zone_id=zone_id, **values, created_at=self.now,
                    entries=[ChairRotationEntry(**entry) for entry in order],
                )
                self.add_new("chair_rotations", rotation)
                continue
            self.update_in_order("chair_rotations", rotation, values, rotation.entries, order,
                                 ChairRotationEntry)
        await self.session.flush()

    async def agreements(self) -> None:
        status: list[tuple[Agreement, bool, bool]] = []
        for r in self.plan["agreements"]:
            parties = [self.unit_id(code) for code in r["parties"]]
            values = {
                "title": r["title"], "short_title": r["short_title"],
                "zone_id": self.zone_id(r["zone"]), "signed_on": r["signed_on"],
                "signed_at": r["signed_at"], "status": r["status"], "summary": r["summary"],
            }
            agreement = self.state.agreements.get(r["code"])
            if agreement is None:
                agreement = self.state.agreements[r["code"]] = Agreement(
                    code=r["code"], **values,
                    parties=[AgreementParty(unit_id=u) for u in parties],
                    clauses=[self.new_clause(i, c) for i, c in enumerate(r["clauses"])],
                )
                self.session.add(agreement)
                status.append((agreement, True, True))
                continue
            changed = assign(agreement, values)
            changed = sync_by_unit(agreement.parties, {unit_id: {} for unit_id in parties},
                                   AgreementParty) or changed
            changed = self.sync_clauses(agreement, r["clauses"]) or changed
            status.append((agreement, False, changed))
        self.changed_agreements += await self.refer_within("agreements", status, lambda r: {
            "supersedes_id": self.state.agreements[r["supersedes"]].id if r["supersedes"] else None
        })

    async def search_scope(self) -> dict[str, list[int]] | None:
        """The liaisons and agreements whose search rows must be rebuilt, or None for a
        full rebuild (the first import, or most rows changed)."""
        scope_size = len(self.updated_liaison_ids) + self.counts["liaisons"].created
        if self.liaisons_before == 0 or scope_size > max(1000, self.liaisons_before // 2):
            return None
        liaison_ids = list(self.updated_liaison_ids)
        if self.new_liaisons_after_id is not None:
            rows = await self.session.execute(
                select(Liaison.id).where(Liaison.id > self.new_liaisons_after_id))
            liaison_ids += [row[0] for row in rows]
        if self.counts["mechanisms"].updated:  # mechanism names are indexed with clauses
            agreement_ids = [a.id for a in self.state.agreements.values()]
        else:
            agreement_ids = [a.id for a in self.changed_agreements]
        return {"liaison_ids": liaison_ids, "agreement_ids": agreement_ids}

    def new_clause(self, position: int, c: dict[str, Any]) -> Clause:
        self.counts["clauses"].add(True, True)
        return Clause(
            number=c["number"], position=position, heading=c["heading"], text=c["text"],
            mechanisms=[self.state.mechanisms[code] for code in c["mechanisms"]],
        )

    def sync_clauses(self, agreement: Agreement, wanted: list[dict[str, Any]]) -> bool:
        changed = False
        current = {clause.number: clause for clause in agreement.clauses}
        numbers = {c["number"] for c in wanted}
        for number, clause in current.items():
            if number not in numbers:
                agreement.clauses.remove(clause)
                self.counts["clauses"].removed += 1
                changed = True
        for position, c in enumerate(wanted):
            clause = current.get(c["number"])
            if clause is None:
                agreement.clauses.append(self.new_clause(position, c))
                changed = True
                continue
            clause_changed = assign(
                clause, {"position": position, "heading": c["heading"], "text": c["text"]})
            mechanisms = [self.state.mechanisms[code] for code in c["mechanisms"]]
            if {m.id for m in clause.mechanisms} != {m.id for m in mechanisms}:
                clause.mechanisms = mechanisms
                clause_changed = True
            self.counts["clauses"].add(False, clause_changed)
            changed = changed or clause_changed
        return changed

    async def meetings(self) -> None:
        by_code = {m.code: m for m in self.state.meetings if m.code}
        by_title = {(fold(m.title), m.starts_at): m for m in self.state.meetings if not m.code}
        for r in self.plan["meetings"]:
            values = {
                "zone_id": self.zone_id(r["zone"]), "kind": r["kind"], "title": r["title"],
                "starts_at": r["starts_at"], "ends_at": r["ends_at"], "timezone": r["timezone"],
                "place": r["place"], "video_link": r["video_link"], "agenda": r["agenda"],
                "status": r["status"], "reminder_offsets": r["reminder_offsets"],
            }
            participants = [self.unit_id(code) for code in r["participants"]]
            if r["code"]:
                meeting = by_code.get(r["code"])
            else:
                meeting = by_title.get((fold(r["title"]), r["starts_at"]))
            if meeting is None:
                meeting = Meeting(
                    code=r["code"], **values, created_at=self.now,
                    participants=[MeetingParticipant(unit_id=u) for u in participants],
                )
                self.add_new("meetings", meeting)
                continue
            changed = assign(meeting, values)
            changed = sync_by_unit(meeting.participants, {unit_id: {} for unit_id in participants},
                                   MeetingParticipant) or changed
            if changed:
                meeting.revision = (meeting.revision or 1) + 1
            self.counts["meetings"].add(False, changed)


async def apply_plan(
    session: AsyncSession, state: State, plan: Plan, now: datetime | None = None
) -> Applier:
    applier = Applier(session, state, plan, now)
    await applier.run()
    return applier
