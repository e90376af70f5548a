"""The lookup quotas at every path that shows a card or a duty line: /contact and its
buttons, plain-text and mention lookups, inline mode, /oncall.

A lookup builds its answer and its audit rows in its read, then `admit`s them there
(services/quota.py decides); after the read, `settle` records what is shown — or the
refusal — before the answer goes out, and writes the alerts due.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.services import Actor
from bot.services import services
from core.quota import Policy
from handlers.common import Context
from handlers.common import record_views
from handlers.common import reply
from services import quota
from storage.access import audit_row
from storage.quota import REFUSED
from views import quota as render


@dataclass(frozen=True)
class Admission:
    assessment: quota.Assessment
    policy: Policy
    rows: Sequence[dict[str, Any]]
    now: datetime

    @property
    def allowed(self) -> bool:
        return self.assessment.verdict.allowed


async def admit(session: AsyncSession, context: Context, actor: Actor,
                rows: Sequence[dict[str, Any]]) -> Admission:
    """May the answer whose audit rows are `rows` be shown to `actor`? (In the lookup's
    own read, so the answer and its quota see the same moment.)"""
    svc = services(context)
    now = svc.now()
    policy = svc.settings.lookup_policy(actor.role)
    assessment = await quota.assess(session, actor.telegram_id, rows, policy, now)
    return Admission(assessment, policy, rows, now)


def refusal(context: Context, actor: Actor, admission: Admission, *,
            short: bool = False) -> str:
    """The refusal in the reader's language, with when new contacts can be shown (in
    the reader's time zone)."""
    default_zone = services(context).settings.bot_timezone
    return render.refusal(actor.tr, admission.assessment.verdict,
                          render.zone_name(actor.user, default_zone), default_zone,
                          short=short)


async def refuse(update: Update, context: Context, actor: Actor, admission: Admission) -> None:
    """Say so, showing nothing: in a button's pop-up (the page pressed stays as it
    was), else as the answer."""
    query = update.callback_query
    if query is not None:
        await query.answer(refusal(context, actor, admission, short=True), show_alert=True)
    else:
        await reply(update, refusal(context, actor, admission))


async def settle(context: Context, actor: Actor, admission: Admission) -> None:
    """On record before the answer: what it shows, or that it was refused; then the
    coordinators' alerts, if one is due."""
    judged = admission.assessment.verdict
    if judged.allowed:
        rows = [{**row, "at": admission.now} for row in admission.rows]
    else:
        queries = {row["detail"].get("query") for row in admission.rows} - {None}
        rows = [{**audit_row(REFUSED, actor=actor.user, subject_type="user",
                             subject_id=actor.telegram_id, window=str(judged.window),
                             count=judged.count, limit=judged.limit,
                             query=next(iter(queries), None)), "at": admission.now}]
    await record_views(context, rows)
    if admission.assessment.alerts and actor.user is not None:
        svc = services(context)
        async with svc.db.session() as session:
            await quota.send_alerts(session, actor.user, admission.assessment,
                                    admission.policy, now=admission.now,
                                    language=svc.settings.default_language,
                                    default_zone=svc.settings.bot_timezone)
        svc.wake_delivery()


async def cleared(update: Update, context: Context, actor: Actor, admission: Admission) -> bool:
    """`settle`, then whether the answer may go out: when it may not, the refusal is
    said (`refuse`) and nothing is to be shown."""
    await settle(context, actor, admission)
    if admission.allowed:
        return True
    await refuse(update, context, actor, admission)
    return False
