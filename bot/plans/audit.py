"""Audit retention, once a day at 03:30 in the bot's time zone (`audit:retention:<day>`).

Entries older than AUDIT_RETENTION_DAYS are written to a dated gzip file of JSON lines
in AUDIT_ARCHIVE_DIR, then removed; the head keeps the last removed entry's sequence
number and hash, so `python -m bot audit verify` still verifies what stays
(storage/audit_retention.py). Entries whose chain does not hold are never archived: they stay,
as evidence, and the error is logged every day until someone looks. Each run logs the
chain's head (sequence number and hash), an anchor kept outside the database.

The scheduler claims each day's run once (fenced by the leader's lease). A run missed
while the bot was down runs at the next start; removing what is old is the same
whenever it runs, and a second run the same day finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import FeaturePlanner
from bot.scheduler import Occurrence
from core.clock import local_instant
from core.clock import time_zone
from storage.access import audit
from storage.audit_chain import locked_head
from storage.audit_retention import ArchiveRefused
from storage.audit_retention import archive_before

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

NAME = "audit"
RUN_AT = time(3, 30)


class AuditRetention(FeaturePlanner):
    name = NAME
    catches_up = True

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        zone = time_zone(self.default_zone)
        found: list[Occurrence] = []
        day = start.astimezone(zone).date()
        while (due := local_instant(day, RUN_AT, zone)) < end:
            if due >= start:
                found.append(Occurrence(f"audit:retention:{day.isoformat()}", due,
                                        {"what": "audit_retention"}))
            day += timedelta(days=1)
        return found

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        settings = self.svc.settings
        cutoff = now - timedelta(days=settings.audit_retention_days)
        try:
            archived = await archive_before(session, cutoff, Path(settings.audit_archive_dir),
                                            now)
        except ArchiveRefused as refused:
            log.error("audit retention: nothing archived, the entries to archive do not "
                      "form a sound chain (%s); run `python -m bot audit verify`", refused)
            return
        head = await locked_head(session)
        # Once a day, the head in the logs: kept apart from the database, it shows whether
        # entries sealed before it were later removed from the end, or the log restored.
        log.info("audit chain head: seq %d, hash %s", head.seq, head.hash)
        if archived is None:
            return
        await audit(session, "audit.archive", subject_type="audit_log",
                    subject_id=archived.path.name[-60:], first_seq=archived.first,
                    last_seq=archived.last, entries=archived.count,
                    before=cutoff.isoformat())
        log.info("audit retention: %d entries (seq %d to %d) older than %d days archived "
                 "to %s and removed", archived.count, archived.first, archived.last,
                 settings.audit_retention_days, archived.path)

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        await self.fire(session, occurrence, now, late=True)


def planner(svc: Services) -> AuditRetention:
    return AuditRetention(svc)
