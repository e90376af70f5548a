"""What the lookup quotas say: the refusal a person reads, the alert coordinators get."""

from __future__ import annotations

import html
from collections.abc import Sequence

from core.quota import AlertKind
from core.quota import Pattern
from core.quota import Policy
from core.quota import Verdict
from core.quota import Window
from i18n import Translator
from i18n.formats import local_time
from storage.models import User

UNITS_NAMED = 15  # an alert names this many units, then counts the rest


def refusal(tr: Translator, verdict: Verdict, zone: str, default_zone: str, *,
            short: bool = False) -> str:
    """Why a lookup shows nothing, and when new contacts can be shown again (in the
    reader's time zone). `short`: for a button's pop-up (at most 200 characters)."""
    assert verdict.window is not None and verdict.resume_at is not None
    key = "quota.refused_short" if short else "quota.refused"
    return tr(f"{key}.{verdict.window.value}", count=verdict.count, limit=verdict.limit,
              time=local_time(tr, verdict.resume_at, zone, default_zone))


def zone_name(user: User | None, default_zone: str) -> str:
    """The time zone a person reads times in: their unit's, else the bot's."""
    unit = user.unit if user is not None else None
    return (unit.timezone if unit is not None else None) or default_zone


def handle(user: User) -> str:
    """How an administrator names the person in /unblock."""
    return f"@{user.username}" if user.username else str(user.telegram_id)


def who(tr: Translator, user: User) -> str:
    """The person an alert is about: name, role, unit and handle."""
    unit = user.unit.name if user.unit is not None else tr("start.no_unit")
    role = tr(f"roles.{user.role.value}") if user.role else "—"
    return tr("quota.alert.who", name=html.escape(user.full_name or str(user.telegram_id)),
              role=role, unit=html.escape(tr.name(unit)), handle=html.escape(handle(user)))


def units_line(tr: Translator, units: Sequence[tuple[str, int]]) -> str:
    """The units browsed, most contacts first, each with how many."""
    named = [tr("quota.alert.unit", unit=html.escape(tr.name(name)), count=count)
             for name, count in units[:UNITS_NAMED]]
    if len(units) > UNITS_NAMED:
        named.append(tr("quota.alert.more", count=len(units) - UNITS_NAMED))
    return tr.join(named) or "—"


def limit_alert(tr: Translator, person: User, verdict: Verdict,
                units: Sequence[tuple[str, int]], zone: str, default_zone: str) -> str:
    """To coordinators: the person reached a quota and is refused until a time."""
    window = verdict.window or Window.hour
    assert verdict.resume_at is not None
    return tr("quota.alert.limit", who=who(tr, person), count=verdict.count,
              limit=verdict.limit, window=tr(f"quota.alert.window.{window.value}"),
              time=local_time(tr, verdict.resume_at, zone, default_zone),
              units=units_line(tr, units), handle=html.escape(handle(person)))


def pattern_alert(tr: Translator, person: User, pattern: Pattern, policy: Policy,
                  units: Sequence[tuple[str, int]]) -> str:
    """To coordinators: a burst of units, or a search paged through, under the quota."""
    what = []
    if pattern.burst_units:
        what.append(tr("quota.alert.burst", count=len(pattern.burst_units),
                       minutes=policy.burst_minutes))
    if pattern.paged_query is not None:
        what.append(tr("quota.alert.paging", pages=pattern.pages,
                       query=html.escape(pattern.paged_query)))
    return tr("quota.alert.pattern", who=who(tr, person), what=tr.join(what),
              units=units_line(tr, units))


def alert_text(tr: Translator, kind: AlertKind, person: User, *, verdict: Verdict,
               pattern: Pattern, policy: Policy, units: Sequence[tuple[str, int]],
               zone: str, default_zone: str) -> str:
    if kind is AlertKind.pattern:
        return pattern_alert(tr, person, pattern, policy, units)
    return limit_alert(tr, person, verdict, units, zone, default_zone)

