"""Chair rotation (轮值): reminders before each handover and the handover itself.

Each zone's rotation is an order of units and a term in months from an anchor date
(core/chair.py). Occurrences, per zone and handover:
- `chair:zone<id>:<date>:<offset>` — both units' duty rooms are reminded (default 7 days
  and 1 day before);
- `chair:zone<id>:<date>:handover` — at the handover both rooms are told that the chair
  has passed, and the advance is recorded in the audit log.
The current chair is always computed from the stored order and term, so "the rotation
advances at the handover" needs no stored pointer that could drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import DEFAULT_LOOKBACK
from bot.scheduler import FeaturePlanner
from bot.scheduler import Occurrence
from bot.scheduler import claim_occurrence
from core.chair import ChairSpec
from core.chair import ChairTerm
from core.chair import chair_at
from core.chair import handover_reminder_instants
from core.chair import term_start
from core.schedule import offset_label
from i18n import Translator
from i18n.formats import fmt_minutes
from i18n.formats import fmt_when
from storage import outbox
from storage.access import audit
from storage.chair import chair_rotation_for_zone
from storage.chair import chair_rotations
from storage.models import ChairRotation
from storage.models import Unit
from storage.schedules import rooms_for_units
from views import HTML

if TYPE_CHECKING:
    from bot.services import Services

NAME = "chair"
MAX_OFFSET = timedelta(days=8)


def spec_of(rotation: ChairRotation, timezone: str) -> ChairSpec:
    return ChairSpec(anchor_date=rotation.anchor_date, term_months=rotation.term_months,
                     unit_count=len(rotation.entries), timezone=timezone)


def unit_at(rotation: ChairRotation, term: ChairTerm) -> Unit:
    entries = sorted(rotation.entries, key=lambda e: e.position)
    return entries[term.position].unit


def handovers_between(
    spec: ChairSpec, start: datetime, end: datetime
) -> list[tuple[ChairTerm, ChairTerm]]:
    """(outgoing term, incoming term) for every handover in [start, end)."""
    found = []
    term = chair_at(spec, start)
    while term.end < end:
        incoming = chair_at(spec, term.end)
        if term.end >= start and term.index >= 0:
            found.append((term, incoming))
        term = incoming
    return found


def key(zone_id: int, handover: datetime, what: str) -> str:
    return f"chair:zone{zone_id}:{handover:%Y%m%dT%H%MZ}:{what}"


def unit_name(unit: Unit) -> str:
    return unit.short_name or unit.name


# --------------------------------------------------------------------------- the planner


class ChairPlanner(FeaturePlanner):
    name = NAME

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        found: list[Occurrence] = []
        for rotation in await chair_rotations(session):
            spec = spec_of(rotation, self.default_zone)
            for _outgoing, incoming in handovers_between(spec, start, end + MAX_OFFSET):
                handover = incoming.start
                data = {"zone_id": rotation.zone_id, "zone": rotation.zone.short_name,
                        "handover": handover.isoformat(), "index": incoming.index}
                if start <= handover < end:
                    found.append(Occurrence(key(rotation.zone_id, handover, "handover"),
                                            handover, {**data, "what": "chair_handover"},
                                            rotation.created_at))
                for planned in handover_reminder_instants(incoming):
                    if start <= planned.due_at < end:
                        found.append(Occurrence(
                            key(rotation.zone_id, handover, offset_label(planned.offset_minutes)),
                            planned.due_at,
                            {**data, "what": "chair_reminder",
                             "offset": planned.offset_minutes}, rotation.created_at))
        return found

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        rotation = await chair_rotation_for_zone(session, occurrence.data["zone_id"])
        if rotation is None or not rotation.entries:
            return
        spec = spec_of(rotation, self.default_zone)
        index = int(occurrence.data["index"])
        handover = datetime.fromisoformat(occurrence.data["handover"])
        if term_start(spec, index) != handover:
            return  # the rotation was changed; its new handovers have their own keys
        outgoing = unit_at(rotation, chair_at(spec, handover - timedelta(seconds=1)))
        incoming = unit_at(rotation, chair_at(spec, handover))
        following = unit_at(rotation, chair_at(spec, term_start(spec, index + 1)))
        tr = Translator(self.svc.settings.default_language)
        rooms = await rooms_for_units(session, [outgoing.id, incoming.id])
        values = {key: escape(tr.name(name)) for key, name in (
            ("zone", rotation.zone.name), ("outgoing", unit_name(outgoing)),
            ("incoming", unit_name(incoming)), ("next", unit_name(following)))}
        reminder = occurrence.data["what"] == "chair_reminder"
        for unit in dict.fromkeys([outgoing, incoming]):
            room = rooms.get(unit.id)
            if room is None or room.chat_id is None:
                await audit(session, "chair.unreachable", subject_type="zone",
                            subject_id=rotation.zone_id, unit=unit.code, key=occurrence.key)
                continue
            zone_name = room.timezone or unit.timezone or self.default_zone
            when = fmt_when(tr, handover, zone_name, now=now)
            until = fmt_when(tr, term_start(spec, index + 1), zone_name, now=now,
                             with_zone=False)
            if reminder:
                text = tr("chair.notify.reminder", when=when,
                          lead=fmt_minutes(tr, int(occurrence.data["offset"])), **values)
            else:
                text = tr("chair.notify.handover", when=when, until=until, **values)
            if late:
                text = tr("chair.notify.late", due=fmt_when(tr, occurrence.due_at, zone_name,
                                                             now=now)) + "\n" + text
            await outbox.enqueue(session, chat_id=room.chat_id, kind=occurrence.data["what"],
                                 text=text, payload=HTML,
                                 dedup_key=f"{occurrence.key}:room{room.id}", now=now)
        if not reminder:
            await audit(session, "chair.advance", subject_type="zone",
                        subject_id=rotation.zone_id, outgoing=outgoing.code,
                        incoming=incoming.code, at=handover.isoformat(), late=late)

    async def skip_due(self, session: AsyncSession, zone_id: int, now: datetime) -> int:
        """After a rotation changes: what is already due on the new plan is history, not a
        message to send late or report missed."""
        skipped = 0
        for occurrence in await self.occurrences(session, now - DEFAULT_LOOKBACK,
                                                 now + timedelta(seconds=1)):
            if occurrence.data["zone_id"] == zone_id and await claim_occurrence(
                session, occurrence, "skipped", now
            ):
                skipped += 1
        return skipped

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        await audit(session, "schedule.missed", subject_type="zone",
                    subject_id=occurrence.data.get("zone_id"), key=occurrence.key,
                    what=occurrence.data.get("what"), due_at=occurrence.due_at.isoformat())
        if occurrence.data.get("what") == "chair_handover":
            # The chair passed anyway (it is computed); record the advance all the same.
            await audit(session, "chair.advance", subject_type="zone",
                        subject_id=occurrence.data.get("zone_id"),
                        at=occurrence.data.get("handover"), missed=True)


def planner(svc: Services) -> ChairPlanner:
    return ChairPlanner(svc)
