"""Escalation of unanswered assistance requests, planned from the database.

For an open request: at its acknowledgement deadline the duty room is reminded
(`request:<number>:escalate:remind_room`), at twice the deadline the zone's coordinators
are alerted (`request:<number>:escalate:alert_coordinators`). For an open or accepted
request with a reply deadline: when it passes both sides are told
(`request:<number>:reply_overdue`). The deadlines come from the stored request (its
`ack_due_at` was fixed by the settings when it was created), so changing the settings
never moves the escalation of a request already made.

The scheduler claims each key once. Firing re-reads the request under a lock: a
request answered meanwhile escalates no further. An escalation missed while the bot was
down is still sent (marked late): an unanswered request must not go quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.scheduler import Occurrence
from bot.scheduler import RowPlanner
from core.enums import RequestStatus
from core.request_checks import Policy
from core.requests import ACTIVE_STATUSES
from core.schedule import escalation_plan
from services import requests as service
from storage import requests as store
from storage.models import AssistanceRequest

if TYPE_CHECKING:
    from bot.services import Services

NAME = "requests"
REPLY_OVERDUE = "reply_overdue"


def request_occurrences(request: AssistanceRequest) -> list[Occurrence]:
    """Every escalation step of this request in its current state, due or not."""
    found: list[Occurrence] = []
    if request.status is RequestStatus.open and request.ack_due_at is not None:
        window = max(int((request.ack_due_at - request.created_at) / timedelta(minutes=1)), 1)
        urgency = request.urgency.value
        for step in escalation_plan(request.created_at, urgency, {urgency: window}):
            found.append(Occurrence(
                f"request:{request.number}:escalate:{step.step}", step.due_at,
                {"what": "request_escalation", "request_id": request.id, "number": request.number,
                 "step": step.step},
            ))
    if request.status in ACTIVE_STATUSES and request.reply_due_at is not None:
        found.append(Occurrence(
            f"request:{request.number}:{REPLY_OVERDUE}", request.reply_due_at,
            {"what": "request_escalation", "request_id": request.id, "number": request.number,
             "step": REPLY_OVERDUE},
        ))
    return found


class RequestEscalations(RowPlanner):
    name = NAME
    occurrences_of = staticmethod(request_occurrences)

    @property
    def policy(self) -> Policy:
        return Policy.from_settings(self.svc.settings)

    async def candidates(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[AssistanceRequest]:
        """Requests with an escalation step that may be due before `end`; the query has no
        lower bound, the window leaves out what was due before `start`."""
        return await store.escalation_candidates(session, end)

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        request = await store.load_request(
            session, request_id=int(occurrence.data["request_id"]), for_update=True
        )
        if request is None:
            return
        # The job may have been placed before the request was answered: check again.
        if occurrence.key not in {o.key for o in request_occurrences(request)}:
            return
        step = occurrence.data["step"]
        if step == "remind_room":
            await service.remind_room(session, request, now=now, policy=self.policy, late=late)
        elif step == "alert_coordinators":
            await service.alert_coordinators(session, request, now=now, policy=self.policy,
                                           late=late)
        elif step == REPLY_OVERDUE:
            await service.flag_reply_overdue(session, request, now=now, policy=self.policy,
                                           late=late)

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        await self.fire(session, occurrence, now, late=True)


def planner(svc: Services) -> RequestEscalations:
    return RequestEscalations(svc)
