"""The lookup quotas as units of work: assess a lookup before it is shown, tell the
coordinators (outbox rows and their audit entry in one transaction), lift a block.

The rules are core/quota.py, the counts storage/quota.py, the words views/quota.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.quota import ALLOWED
from core.quota import DAY
from core.quota import PAGING_WINDOW
from core.quota import AlertKind
from core.quota import Pattern
from core.quota import Policy
from core.quota import Usage
from core.quota import Verdict
from core.quota import Window
from core.quota import alert_due
from core.quota import alert_key
from core.quota import pattern
from core.quota import usage
from core.quota import verdict
from core.quota import window_start
from i18n import Translator
from storage import quota as store
from storage.models import User
from storage.outbox import enqueue
from views import html_message
from views import quota as render


@dataclass(frozen=True)
class Assessment:
    """Whether a lookup may be shown, and the alerts it raises (due now, once)."""

    verdict: Verdict = ALLOWED
    alerts: tuple[AlertKind, ...] = ()
    pattern: Pattern = field(default_factory=Pattern)
    lifted_at: datetime | None = None


async def assess(session: AsyncSession, telegram_id: int, rows: Sequence[dict[str, Any]],
                 policy: Policy, now: datetime) -> Assessment:
    """May the lookup whose audit rows are `rows` be shown? A lookup that shows no
    counted item is never refused and reads nothing."""
    asked = store.counted_items(rows)
    if not asked:
        return Assessment()
    past = await _history(session, telegram_id, policy, now)
    lifted = past.lifted_at
    judged = verdict(past.seen, asked, policy, now, lifted)
    if not judged.allowed:
        assert judged.window is not None
        kind = AlertKind(judged.window.value)
        due = (kind,) if alert_due(kind, past.alerts.get(kind), now, lifted) else ()
        return Assessment(judged, due, lifted_at=lifted)
    kind = AlertKind.pattern
    found = Pattern()
    if alert_due(kind, past.alerts.get(kind), now, lifted):  # else told this episode
        found = pattern([*past.views.values(), *store.views_of(rows, now)], policy, now,
                        lifted)
    store.shown(session, telegram_id, rows, now)  # after: `past` is the memo it adds to
    return Assessment(judged, (kind,) if found.found else (), found, lifted)


async def _history(session: AsyncSession, telegram_id: int, policy: Policy,
                   now: datetime) -> store.History:
    return await store.history(session, telegram_id, now=now, since=now - DAY,
                               views_since=now - max(PAGING_WINDOW, policy.burst_window))


async def send_alerts(session: AsyncSession, person: User, assessment: Assessment,
                      policy: Policy, *, now: datetime, language: str,
                      default_zone: str) -> int:
    """Tell the coordinators of the person's zones (administrators when there are none)
    about each alert due, once per episode: the outbox key is the episode's, and the
    audit entry is what the next lookup reads as "already told". Returns how many
    messages were queued."""
    recipients = await store.alert_recipients(session, person)
    queued = 0
    for kind in assessment.alerts:
        window = Window.hour if kind is AlertKind.pattern else Window(kind.value)
        units = await store.units_browsed(session, person.telegram_id,
                                          window_start(window, now, assessment.lifted_at))
        key = alert_key(person.telegram_id, kind, now, assessment.lifted_at)
        told = []
        for recipient in recipients:
            tr = Translator(recipient.language or language)
            text = render.alert_text(tr, kind, person, verdict=assessment.verdict,
                                     pattern=assessment.pattern, policy=policy, units=units,
                                     zone=render.zone_name(recipient, default_zone),
                                     default_zone=default_zone)
            if await enqueue(session, chat_id=recipient.telegram_id, kind="lookup_alert",
                             dedup_key=f"{key}:to:{recipient.telegram_id}",
                             payload=html_message(text), now=now):
                told.append(recipient.telegram_id)
        if told or not recipients:
            queued += len(told)
            await store.record(session, store.ALERT, now=now, subject_type="user",
                               subject_id=person.telegram_id, kind=kind.value, told=told,
                               units=[name for name, _ in units], **_facts(kind, assessment))
    return queued


def _facts(kind: AlertKind, assessment: Assessment) -> dict[str, Any]:
    """What the alert's audit entry says it was about."""
    if kind is AlertKind.pattern:
        found = assessment.pattern
        return {"burst_units": len(found.burst_units), "paged_query": found.paged_query,
                "pages": found.pages}
    return {"count": assessment.verdict.count, "limit": assessment.verdict.limit}


async def unblock(session: AsyncSession, person: User, admin: User, policy: Policy, *,
                  now: datetime, language: str) -> list[Usage] | None:
    """Start the person's counts afresh (audited), and tell them; returns the counts
    before, or None when nothing counted against them (nothing is changed)."""
    past = await _history(session, person.telegram_id, policy, now)
    before = usage(past.seen, policy, now, past.lifted_at)
    if not any(u.count for u in before):
        return None
    await store.record(session, store.UNBLOCK, now=now, actor=admin, subject_type="user",
                       subject_id=person.telegram_id,
                       **{u.window.value: u.count for u in before})
    tr = Translator(person.language or language)
    await enqueue(session, chat_id=person.telegram_id, kind="lookup_unblock",
                  dedup_key=f"lookup-unblock:{person.telegram_id}:{now.timestamp()}",
                  payload=html_message(tr("quota.lifted")), now=now)
    return before
