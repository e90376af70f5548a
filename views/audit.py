"""The audit log as people read it: /audit's pages in chat, and the inspectors' table
(`python -m bot audit export`; bot/reports.py makes the CSV). Who did it, whether they
looked at something, changed something or were refused, what it was about (named as
it is called now), and the exact action recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from html import escape
from zoneinfo import ZoneInfo

from core.audit import Named
from core.audit import action_kind
from core.audit import canonical
from i18n import Translator
from i18n.formats import fmt_when
from storage.models import AuditEntry
from storage.models import User

# Subject types with a name in the catalogue (audit.subject.<type>); others are shown
# as recorded.
SUBJECT_TYPES = frozenset({
    "liaison", "user", "request", "notice", "meeting", "roster", "roster_change",
    "shift_swap", "zone", "duty_room", "invitation", "units", "data_file", "audit_log",
})
EXPORT_COLUMNS = ("seq", "id", "at", "actor", "actor_telegram_id", "actor_unit", "chat_id",
                  "kind", "action", "subject_type", "subject_id", "subject", "detail", "hash")

Actors = Mapping[int, User]
Subjects = Mapping[tuple[str, str], Sequence[Named]]


def _of_unit(tr: Translator, name: str, unit: str | None) -> str:
    return tr("audit.of_unit", name=name, unit=tr.name(unit)) if unit else name


def actor_of(tr: Translator, entry: AuditEntry, actors: Actors) -> tuple[str, User | None]:
    """Who made the entry: a user of the desk, a Telegram id it does not know, or the
    bot itself (a scheduled job)."""
    user = actors.get(entry.actor_user_id) if entry.actor_user_id is not None else None
    if user is not None:
        return tr.name(user.full_name) or str(user.telegram_id), user
    if entry.actor_telegram_id is not None:
        return str(entry.actor_telegram_id), None
    return tr("audit.system"), None


def person(tr: Translator, user: User) -> str:
    """A user as /audit names them: their name and unit."""
    name = tr.name(user.full_name) or str(user.telegram_id)
    return _of_unit(tr, name, user.unit.short_name or user.unit.name if user.unit else None)


def actor_text(tr: Translator, entry: AuditEntry, actors: Actors) -> str:
    name, user = actor_of(tr, entry, actors)
    return person(tr, user) if user is not None else name


def subject_text(tr: Translator, entry: AuditEntry, subjects: Subjects) -> str:
    if not entry.subject_type:
        return ""
    kind = (tr(f"audit.subject.{entry.subject_type}") if entry.subject_type in SUBJECT_TYPES
            else entry.subject_type)
    named = subjects.get((entry.subject_type, entry.subject_id or ""), ())
    if not named:
        return kind
    return tr("audit.subject_named", type=kind, name=tr.join(
        _of_unit(tr, tr.name(n.name), n.unit) for n in named))


def kind_text(tr: Translator, entry: AuditEntry) -> str:
    has_actor = entry.actor_user_id is not None or entry.actor_telegram_id is not None
    return tr(f"audit.kind.{action_kind(entry.action, has_actor).value}")


def entry_line(tr: Translator, entry: AuditEntry, actors: Actors, subjects: Subjects,
               zone: str, now: datetime) -> str:
    """One entry of an /audit page (HTML)."""
    return tr("audit.line", when=escape(fmt_when(tr, entry.at, zone, now=now, with_zone=False)),
              actor=escape(actor_text(tr, entry, actors)), kind=kind_text(tr, entry),
              subject=escape(subject_text(tr, entry, subjects)), action=escape(entry.action))


def period_days(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """[start, end) as its first and last local day."""
    last = end - timedelta(microseconds=1)
    return start.astimezone(zone).date().isoformat(), last.astimezone(zone).date().isoformat()


def page_text(tr: Translator, who: str, days: tuple[str, str], total: int, offset: int,
              lines: Sequence[str]) -> str:
    """An /audit page: who it is about and when, the entries (newest first), and where
    this page is among them all."""
    start, end = days
    if not total:
        return tr("audit.empty", who=escape(who), start=start, end=end)
    return "\n".join([
        tr("audit.header", who=escape(who), start=start, end=end, count=total),
        "", *lines, "",
        tr("audit.page", first=offset + 1, last=offset + len(lines), count=total),
    ])


def export_header(tr: Translator, zone: str) -> list[str]:
    return [tr(f"audit.export.columns.{column}", zone=zone) if column == "at"
            else tr(f"audit.export.columns.{column}") for column in EXPORT_COLUMNS]


def export_rows(tr: Translator, entries: Sequence[AuditEntry], actors: Actors,
                subjects: Subjects, zone: ZoneInfo) -> list[list[str]]:
    """The inspectors' rows: local times to the second, the detail as recorded (JSON)."""
    rows: list[list[str]] = []
    for entry in entries:
        actor, user = actor_of(tr, entry, actors)
        values = {
            "seq": "" if entry.seq is None else str(entry.seq),
            "id": str(entry.id),
            "at": entry.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "actor": actor,
            "actor_telegram_id": "" if entry.actor_telegram_id is None
            else str(entry.actor_telegram_id),
            "actor_unit": tr.name(user.unit.name) if user and user.unit else "",
            "chat_id": "" if entry.chat_id is None else str(entry.chat_id),
            "kind": kind_text(tr, entry),
            "action": entry.action,
            "subject_type": entry.subject_type or "",
            "subject_id": entry.subject_id or "",
            "subject": subject_text(tr, entry, subjects),
            "detail": canonical(entry.detail or {}).decode("utf-8"),
            "hash": entry.hash or "",
        }
        rows.append([values[column] for column in EXPORT_COLUMNS])
    return rows
