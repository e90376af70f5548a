"""Assistance requests as people read them: cards, status lines, history, list lines,
statistics, urgency and period problems, in the reader's language (HTML); and the
messages (Bot API parameters) the duty rooms, liaisons, coordinators and requesters
are sent, in their language and time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import inspect

from core import requests as rules
from core.clock import FIRST_DAY
from core.clock import LAST_DAY
from core.clock import time_zone
from core.enums import RequestStatus
from core.enums import Urgency
from core.periods import PeriodProblem
from core.request_checks import Policy
from core.requests import STATUS_ICONS
from core.requests import URGENCY_BADGES
from core.requests import Action
from core.requests import RequestStats
from i18n import Translator
from i18n.formats import fmt_minutes
from storage.models import AssistanceRequest
from storage.models import DutyRoom
from storage.models import RequestEvent
from storage.models import Unit
from storage.models import User
from views import HTML
from views.buttons import Button
from views.buttons import Style
from views.buttons import in_rows
from views.buttons import keyboard


def urgency_label(tr: Translator, urgency: Urgency) -> str:
    """🔴特急 — the badge and the word, as everywhere a request is shown."""
    return f"{URGENCY_BADGES[urgency]}{tr(f'requests.urgency.{urgency.value}')}"


def period_problem(tr: Translator, problem: PeriodProblem) -> str:
    return tr(f"requests.period.{problem.kind}", text=escape(problem.word[:40]),
              first=FIRST_DAY.isoformat(), last=LAST_DAY.isoformat(), days=problem.longest)


def local_time(moment: datetime, tz: ZoneInfo, *, with_year: bool = False) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M" if with_year else "%m-%d %H:%M")


def duration(tr: Translator, span: timedelta) -> str:
    """12分钟, 2小时5分钟, 1天3小时 — rounded down to the minute, none below zero."""
    return fmt_minutes(tr, max(int(span.total_seconds() // 60), 0), compact=True)


def person(user: User | None) -> str:
    if user is None:
        return "—"
    if user.full_name:
        return user.full_name
    return f"@{user.username}" if user.username else str(user.telegram_id)


def status_label(tr: Translator, status: RequestStatus) -> str:
    return f"{STATUS_ICONS[status]}{tr(f'requests.status.{status.value}')}"


def last_change(request: AssistanceRequest) -> RequestEvent | None:
    """The event that put the request in its current status."""
    for event in reversed(request.events):
        if event.to_status == request.status.value and event.from_status != event.to_status:
            return event
    return None


def status_lines(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> list[str]:
    """Current state, who acted and when, and the reason or result."""
    status = request.status
    label = status_label(tr, status)
    if status is RequestStatus.open:
        lines = [tr("requests.card.waiting", status=label)]
        if request.ack_due_at is not None:
            lines[0] = tr("requests.card.waiting_until", status=label,
                          due=local_time(request.ack_due_at, tz))
        if request.routed_at is None:
            lines.append(tr("requests.card.undelivered"))
        return lines
    event = last_change(request)
    who = escape(person(event.actor)) if event else "—"
    when = local_time(event.at, tz) if event else ""
    if status is RequestStatus.transferred and request.transferred_to is not None:
        lines = [tr("requests.card.transferred", status=label, who=who, at=when,
                    unit=escape(tr.name(request.transferred_to.to_unit.name)),
                    number=request.transferred_to.number)]
    else:
        lines = [tr("requests.card.changed", status=label, who=who, at=when)]
    note = request.result if status is RequestStatus.completed else (event.note if event else None)
    if note:
        done = status is RequestStatus.completed
        lines.append(tr("requests.card.result" if done else "requests.card.reason",
                        text=escape(note)))
    return lines


def card(
    tr: Translator, request: AssistanceRequest, tz: ZoneInfo, *, details_limit: int = 1500
) -> str:
    """The request as the duty room and the requester see it (HTML)."""
    lines = [
        tr("requests.card.title", urgency=urgency_label(tr, request.urgency),
           number=request.number),
        f"<b>{escape(request.subject)}</b>",
        tr("requests.card.route", source=escape(tr.name(request.from_unit.name)),
           target=escape(tr.name(request.to_unit.name))),
    ]
    if request.mechanism is not None:
        lines.append(tr("requests.card.mechanism",
                        mechanism=escape(tr.name(request.mechanism.name))))
    lines.append(tr("requests.card.created", who=escape(person(request.created_by)),
                    at=local_time(request.created_at, tz)))
    if request.reply_due_at is not None:
        lines.append(tr("requests.card.reply_due", due=local_time(request.reply_due_at, tz)))
    if request.details:
        details = request.details
        if len(details) > details_limit:
            details = details[:details_limit] + "…"
        lines += ["", escape(details)]
    if request.attachments:
        lines.append(tr("requests.card.attachments", n=len(request.attachments)))
    lines += ["", *status_lines(tr, request, tz)]
    return "\n".join(lines)


def event_line(tr: Translator, event: RequestEvent, tz: ZoneInfo) -> str:
    text = tr(f"requests.event.{event.action}", who=escape(person(event.actor)))
    line = f"{local_time(event.at, tz)} {text}"
    if event.note:
        line += f" — {escape(event.note)}"
    return line


def history(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> str:
    lines = [tr("requests.history.title")]
    lines += [event_line(tr, event, tz) for event in request.events]
    return "\n".join(lines)


def list_line(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> str:
    """One line per request in /requests: badge, number, route, subject, state."""
    subject = request.subject if len(request.subject) <= 30 else request.subject[:29] + "…"
    flag = tr("requests.list.undelivered_flag") if (
        request.status is RequestStatus.open and request.routed_at is None) else ""
    return tr(
        "requests.list.line",
        badge=URGENCY_BADGES[request.urgency],
        number=request.number,
        source=escape(tr.name(request.from_unit.short_name or request.from_unit.name)),
        target=escape(tr.name(request.to_unit.short_name or request.to_unit.name)),
        subject=escape(subject),
        status=status_label(tr, request.status) + flag,
        at=local_time(request.created_at, tz),
    )


def stats_text(tr: Translator, stats: RequestStats, tz: ZoneInfo, *, top: int = 8) -> str:
    def join(pairs: Sequence[tuple[str, int]]) -> str:
        shown = [f"{escape(name)} {count}" for name, count in pairs[:top]]
        if len(pairs) > top:
            shown.append(tr("requests.stats.more", n=len(pairs) - top))
        return " · ".join(shown) or "—"

    share = stats.overdue_share
    last_day = stats.period.end - timedelta(seconds=1)
    lines = [
        tr("requests.stats.title", start=stats.period.start.astimezone(tz).strftime("%Y-%m-%d"),
           end=last_day.astimezone(tz).strftime("%Y-%m-%d")),
        tr("requests.stats.total", n=stats.total),
    ]
    if stats.total:
        lines += [
            tr("requests.stats.overdue", n=stats.overdue,
               share=f"{(share or 0) * 100:.0f}%"),
            tr("requests.stats.median_ack",
               value=duration(tr, stats.median_ack) if stats.median_ack else "—"),
            tr("requests.stats.median_complete",
               value=duration(tr, stats.median_complete) if stats.median_complete else "—"),
            "",
            tr("requests.stats.by_mechanism", items=join(stats.by_mechanism)),
            tr("requests.stats.by_unit", items=join(stats.by_unit)),
            tr("requests.stats.by_status", items=join(
                [(tr(f"requests.status.{s.value}"), n) for s, n in stats.by_status])),
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- readers


def room_zone(policy: Policy, room: DutyRoom | None, unit: Unit | None) -> ZoneInfo:
    return time_zone((room.timezone if room else None) or (unit.timezone if unit else None),
                     policy.timezone)


def user_zone(policy: Policy, user: User | None) -> ZoneInfo:
    """The time zone of the user's unit (when loaded), else the configured one."""
    unit = user.unit if user is not None and "unit" not in inspect(user).unloaded else None
    return time_zone(unit.timezone if unit else None, policy.timezone)


def user_translator(policy: Policy, user: User | None) -> Translator:
    return Translator((user.language if user else None) or policy.language)


# --------------------------------------------------------------------------- messages


# Accepting and completing agree, declining and withdrawing refuse or undo; a transfer
# keeps the app's own style (views.buttons.Style).
ACTION_STYLES = {Action.accept: Style.success, Action.complete: Style.success,
                 Action.decline: Style.danger, Action.cancel: Style.danger}


def action_rows(tr: Translator, request: AssistanceRequest,
                actions: Sequence[Action]) -> list[list[Button]]:
    """The buttons of `actions` on a request, two a row, coloured by what they do."""
    return in_rows([Button(tr(f"requests.button.{a.value}"),
                           rules.action_data(a, request.id, request.version),
                           ACTION_STYLES.get(a)) for a in actions], 2)


def buttons(tr: Translator, request: AssistanceRequest, *, include_cancel: bool = False
            ) -> dict[str, Any] | None:
    """The inline keyboard of a request in its current state (None when final)."""
    candidates = [*rules.TARGET_ACTIONS, Action.cancel] if include_cancel \
        else list(rules.TARGET_ACTIONS)
    actions = [a for a in candidates if rules.allowed(a, request.status)]
    return keyboard(action_rows(tr, request, actions)) if actions else None


def card_payload(
    tr: Translator, request: AssistanceRequest, tz: ZoneInfo, *, with_buttons: bool = True,
    include_cancel: bool = False,
) -> dict[str, Any]:
    """The card as Bot API parameters; no keyboard once final (an edit without one
    removes the old buttons)."""
    payload: dict[str, Any] = {
        "text": card(tr, request, tz),
        **HTML,
    }
    markup = buttons(tr, request, include_cancel=include_cancel) if with_buttons else None
    if markup:
        payload["reply_markup"] = markup
    return payload


def attachment_message(attachment: dict[str, Any], number: str) -> tuple[str, dict[str, Any]]:
    """The Bot API method and parameters that send one attachment, captioned with the
    request's number."""
    method, field_name = ("sendPhoto", "photo") if attachment.get("type") == "photo" else \
        ("sendDocument", "document")
    return method, {field_name: attachment["file_id"], "caption": number}


def no_room_text(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> str:
    """To a liaison of a unit without a duty room: the request, told privately."""
    return tr("requests.notice.no_room_liaison", unit=escape(tr.name(request.to_unit.name))) + \
        "\n\n" + card(tr, request, tz)


def changed_text(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> str:
    """To the requester: their request changed, and how it stands now."""
    text = tr("requests.notice.changed", number=request.number,
              subject=escape(request.subject), unit=escape(tr.name(request.to_unit.name)))
    return text + "\n" + "\n".join(status_lines(tr, request, tz))


def remind_room_text(tr: Translator, request: AssistanceRequest, now: datetime, *,
                     late: bool = False) -> str:
    """The acknowledgement deadline passed: the reminder."""
    text = tr("requests.notice.remind_room", number=request.number,
              urgency=urgency_label(tr, request.urgency), subject=escape(request.subject),
              source=escape(tr.name(request.from_unit.name)),
              elapsed=duration(tr, now - request.created_at))
    if late:
        text += "\n" + tr("requests.notice.late")
    return text


def alert_coordinators_text(tr: Translator, request: AssistanceRequest, tz: ZoneInfo,
                            now: datetime, *, late: bool) -> str:
    """Twice the deadline and no answer: the alert to a coordinator, with the card."""
    text = tr("requests.notice.alert_coordinators", number=request.number,
              unit=escape(tr.name(request.to_unit.name)),
              elapsed=duration(tr, now - request.created_at))
    if late:
        text += "\n" + tr("requests.notice.late")
    return text + "\n\n" + card(tr, request, tz)


def reply_overdue_room_text(tr: Translator, request: AssistanceRequest, tz: ZoneInfo) -> str:
    assert request.reply_due_at is not None
    return tr("requests.notice.reply_overdue_room", number=request.number,
              subject=escape(request.subject), due=local_time(request.reply_due_at, tz),
              source=escape(tr.name(request.from_unit.name)))


def reply_overdue_requester_text(tr: Translator, request: AssistanceRequest,
                                 tz: ZoneInfo) -> str:
    assert request.reply_due_at is not None
    return tr("requests.notice.reply_overdue_requester", number=request.number,
              subject=escape(request.subject), due=local_time(request.reply_due_at, tz),
              unit=escape(tr.name(request.to_unit.name)), status=status_label(tr, request.status))
