"""Notices planned from the database: scheduled sends, the reminder of rooms that have
not acknowledged, and a status check after a broadcast.

- `notice:<number>:send` at `scheduled_for`: the notice is fanned out (once: the
  scheduler claims the key, and `send_notice` keys every row by notice and room);
- `notice:<number>:remind` at `remind_at` (fixed when it went out, from
  NOTICE_ACK_REMIND_MINUTES): rooms still pending are reminded once, the coordinator told;
- `notice:<number>:status:1m` a minute after sending: the status message is refreshed,
  so rooms whose delivery failed (which no delivery hook reports) show up.

Firing re-reads the notice under a lock: one withdrawn meanwhile sends nothing. Like
request escalations, a send or reminder missed while the bot was down is still made,
marked late: a notice must not silently vanish.

`StatusRefresher` is the delivery worker's on_sent hook: room messages delivered
refresh their notice's status message (coalesced twice: here, and in
services.notices.refresh_status).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import Occurrence
from bot.scheduler import RowPlanner
from core.enums import NoticeStatus
from core.notices import NoticePolicy
from core.notices import notice_id_of_key
from services import notices as service
from storage import notices as store
from storage.models import Notice
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

NAME = "notices"
STATUS_CHECK = timedelta(minutes=1)


def notice_occurrences(notice: Notice) -> list[Occurrence]:
    """Everything due for this notice in its current state, due or not."""
    data = {"what": "notice", "notice_id": notice.id, "number": notice.number}
    found: list[Occurrence] = []
    if notice.status is NoticeStatus.scheduled and notice.scheduled_for is not None:
        found.append(Occurrence(f"notice:{notice.number}:send", notice.scheduled_for,
                                {**data, "step": "send"}))
    if notice.status is NoticeStatus.sent and notice.sent_at is not None:
        found.append(Occurrence(f"notice:{notice.number}:status:1m",
                                notice.sent_at + STATUS_CHECK, {**data, "step": "status"}))
        if notice.remind_at is not None:
            found.append(Occurrence(f"notice:{notice.number}:remind", notice.remind_at,
                                    {**data, "step": "remind"}))
    return found


class NoticePlanner(RowPlanner):
    name = NAME
    candidates = staticmethod(store.planner_candidates)
    occurrences_of = staticmethod(notice_occurrences)

    @property
    def policy(self) -> NoticePolicy:
        return NoticePolicy.from_settings(self.svc.settings)

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        notice = await store.get_notice(session, notice_id=int(occurrence.data["notice_id"]),
                                        for_update=True)
        if notice is None or occurrence.key not in {o.key for o in notice_occurrences(notice)}:
            return  # withdrawn or changed since the job was placed
        step = occurrence.data["step"]
        if step == "send":
            await service.send_notice(session, notice, now=now, policy=self.policy, late=late)
        elif step == "remind":
            await service.remind_pending(session, notice, now=now, policy=self.policy, late=late)
        elif step == "status":
            await service.refresh_status(session, notice, now=now, policy=self.policy)

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        await self.fire(session, occurrence, now, late=True)


def planner(svc: Services) -> NoticePlanner:
    return NoticePlanner(svc)


class StatusRefresher:
    """The delivery worker's on_sent hook: a room's notice message was delivered, so its
    notice's status message should say so.

    The hook itself only marks the notice; one background task refreshes marked notices
    (services.notices.refresh_status, itself coalesced in the outbox), at most one round
    every NOTICE_STATUS_EDIT_SECONDS. So a 1,000-room broadcast costs a
    refresh every few seconds, not one per room, and never slows the worker's recording.
    `settle()` waits until nothing is marked (tests and benchmarks).
    """

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.marked: set[int] = set()
        self.refreshes = 0
        self._last_round = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, row: OutboxMessage) -> None:
        if row.kind != "notice":
            return
        notice_id = notice_id_of_key(row.dedup_key)
        if notice_id is None:
            return
        self.marked.add(notice_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        policy = NoticePolicy.from_settings(self.svc.settings)
        await asyncio.sleep(0)  # let the rest of this batch of deliveries mark theirs
        while self.marked:
            rest = self._last_round + policy.status_every_seconds - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
            self._last_round = time.monotonic()
            marked, self.marked = sorted(self.marked), set()
            changed = False
            for notice_id in marked:
                try:
                    async with self.svc.db.session() as session:
                        notice = await store.get_notice(session, notice_id=notice_id)
                        if notice is not None:
                            changed |= await service.refresh_status(
                                session, notice, now=self.svc.now(), policy=policy)
                    self.refreshes += 1
                except Exception:
                    log.exception("could not refresh the status of notice %s", notice_id)
            if changed:
                self.svc.wake_delivery()

    async def settle(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


REFRESHER_KEY = "notice_status_refresher"


def status_refresher(svc: Services) -> StatusRefresher:
    """The process's refresher, attached to its delivery worker once."""
    refresher = svc.extras.get(REFRESHER_KEY)
    if refresher is None:
        refresher = svc.extras[REFRESHER_KEY] = StatusRefresher(svc)
        if svc.delivery is not None:
            svc.delivery.on_sent.append(refresher)
    return refresher
