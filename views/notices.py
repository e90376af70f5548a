"""Notices as people read them: labels, a duty room's message and its 收到 button, the
coordinator's status message, reminders' lists of rooms and the final report, in the
reader's language and time zone (HTML). Nothing here queries: the caller (a service or
a handler) loads what is shown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

from core.clock import time_zone
from core.enums import NoticeKind
from core.enums import NoticeStatus
from core.enums import OutboxState
from core.enums import Severity
from core.notices import NoticePolicy
from core.notices import Tally
from core.notices import ack_data
from core.notices import went_late
from i18n import Translator
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import RoomState
from storage.models import User
from views import HTML
from views import requests as render
from views.buttons import Button
from views.buttons import Style
from views.buttons import keyboard

SEVERITY_ICONS = {Severity.info: "🔵", Severity.important: "🟠", Severity.critical: "🔴"}
LIST_LIMIT = 12  # rooms named per section of the status message


def kind_label(tr: Translator, kind: NoticeKind) -> str:
    return tr(f"notices.kind.{kind.value}")


def severity_label(tr: Translator, severity: Severity) -> str:
    return SEVERITY_ICONS[severity] + tr(f"notices.severity.{severity.value}")


def headline(tr: Translator, notice: Notice) -> str:
    return tr("notices.room.headline", icon=SEVERITY_ICONS[notice.severity],
              kind=kind_label(tr, notice.kind), severity=tr(
                  f"notices.severity.{notice.severity.value}"), number=notice.number)


def first_line(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if text and text.strip() else ""
    return first if len(first) <= 40 else first[:40] + "…"


def _who(user: User | None) -> str:
    return escape(render.person(user))


def name_list(tr: Translator, items: list[str], total: int | None = None) -> str:
    """At most LIST_LIMIT names, then how many more (of `total`, when only some were
    loaded)."""
    shown = items[:LIST_LIMIT]
    text = tr.join(shown)
    rest = (len(items) if total is None else total) - len(shown)
    if rest > 0:
        text += tr("notices.status.more", count=rest)
    return text


# --------------------------------------------------------------------------- the duty room


def room_text(tr: Translator, notice: Notice, delivery: NoticeDelivery | None,
              acknowledger: User | None, tz: Any) -> str:
    """The notice as a duty room sees it, with its state at the bottom."""
    lines = [headline(tr, notice)]
    if notice.status is NoticeStatus.withdrawn:
        lines.append(tr("notices.room.withdrawn_banner",
                        at=render.local_time(
                            notice.withdrawn_at or notice.sent_at or notice.created_at, tz)))
        lines.append(f"<s>{escape(notice.text)}</s>")
        return "\n".join(lines)
    if notice.revision > 1:
        lines.append(tr("notices.room.corrected_banner", revision=notice.revision,
                        at=render.local_time(
                            notice.corrected_at or notice.sent_at or notice.created_at, tz)))
    lines += ["", escape(notice.text), ""]
    if delivery is not None and delivery.acknowledged_at is not None:
        acked = delivery.acknowledged_revision or 1
        key = "notices.room.acknowledged" if acked >= notice.revision \
            else "notices.room.acknowledged_old"
        lines.append(tr(key, who=_who(acknowledger), at=render.local_time(
            delivery.acknowledged_at, tz), revision=acked))
    else:
        lines.append(tr("notices.room.please_ack"))
    return "\n".join(lines)


def ack_markup(tr: Translator, notice: Notice, room_id: int) -> dict[str, Any]:
    """The 收到 button: acknowledging agrees, so it is green."""
    return keyboard([[Button(tr("notices.button.ack"),
                           ack_data(notice.id, room_id, notice.revision), Style.success)]])


def room_payload(tr: Translator, notice: Notice, room: DutyRoom,
                 delivery: NoticeDelivery | None, acknowledger: User | None,
                 policy: NoticePolicy) -> dict[str, Any]:
    """Bot API parameters of the room's message; no button once acknowledged in the
    current revision or withdrawn (an edit without one removes it)."""
    tz = time_zone(room.timezone or (room.unit.timezone if room.unit else None),
                    policy.timezone)
    payload: dict[str, Any] = {
        "text": room_text(tr, notice, delivery, acknowledger, tz),
        **HTML,
    }
    acked_now = delivery is not None and delivery.acknowledged_at is not None and (
        delivery.acknowledged_revision or 1) >= notice.revision
    if notice.status is not NoticeStatus.withdrawn and not acked_now:
        payload["reply_markup"] = ack_markup(tr, notice, room.id)
    return payload


# --------------------------------------------------------------------------- the coordinator


def reader_zone(policy: NoticePolicy, user: User | None) -> Any:
    unit = user.unit if user is not None else None
    return time_zone(unit.timezone if unit else None, policy.timezone)


def status_text(tr: Translator, notice: Notice, tz: Any, *, now: datetime, tally: Tally,
                acknowledged: Sequence[RoomState], pending: list[str],
                failed: list[str]) -> str:
    """The coordinator's live view: delivered, acknowledged (by whom, when, which
    revision), pending, failed, reminded. `tally` counts every room; the first
    acknowledgements (LIST_LIMIT, by time) and the pending and failed rooms' unit names
    are all that is named."""
    lines = [tr("notices.status.title", number=notice.number, revision=notice.revision),
             tr("notices.status.about", kind=kind_label(tr, notice.kind),
                severity=severity_label(tr, notice.severity),
                text=escape(first_line(notice.text)))]
    if notice.status is NoticeStatus.withdrawn:
        lines.append(tr("notices.status.withdrawn",
                        at=render.local_time(notice.withdrawn_at or now, tz)))
    if notice.sent_at is not None:
        lines.append(tr("notices.status.sent", at=render.local_time(notice.sent_at, tz)) +
                     (tr("notices.status.late")
                      if went_late(notice.scheduled_for, notice.sent_at) else ""))
    lines.append(tr("notices.status.counts", rooms=tally.rooms, delivered=tally.delivered,
                    acknowledged=tally.acknowledged, pending=tally.pending,
                    failed=tally.failed))
    if acknowledged:
        lines.append(tr("notices.status.acked_header"))
        for state in acknowledged:
            revision = state.delivery.acknowledged_revision or 1
            lines.append(tr("notices.status.acked_line",
                            room=escape(tr.name(state.unit.short_name)),
                            who=_who(state.acknowledger),
                            at=render.local_time(state.delivery.acknowledged_at or now, tz))
                         + (tr("notices.status.old_revision", revision=revision)
                            if revision < notice.revision else ""))
        if tally.acknowledged > LIST_LIMIT:
            lines.append(tr("notices.status.more", count=tally.acknowledged - LIST_LIMIT))
    for part, rooms, total in (("pending", pending, tally.pending),
                               ("failed", failed, tally.failed)):
        if not total or (part == "pending" and notice.status is NoticeStatus.withdrawn):
            continue
        lines.append(tr(f"notices.status.{part}",
                        rooms=name_list(tr, [escape(name) for name in rooms], total)))
    if tally.reminded:
        lines.append(tr("notices.status.reminded", count=tally.reminded))
    return "\n".join(lines)


def report_table(tr: Translator, notice: Notice, states: Sequence[RoomState],
                 tz: Any) -> tuple[list[str], list[list[Any]]]:
    """The final report: one line per room (times in the reader's zone)."""
    header = [tr(f"notices.report.{c}") for c in (
        "number", "room", "unit", "delivered_at", "acknowledged_by", "acknowledged_at",
        "revision", "status")]

    def local(moment: datetime | None) -> Any:
        return moment.astimezone(tz).replace(tzinfo=None) if moment else None

    rows = []
    for s in states:
        if notice.status is NoticeStatus.withdrawn and not s.acknowledged:
            status = "withdrawn"
        elif s.acknowledged:
            status = "acknowledged" if (s.delivery.acknowledged_revision or 1) >= \
                notice.revision else "acknowledged_old"
        elif s.failed:
            status = "failed"
        elif s.outbox_state is OutboxState.sent:
            status = "delivered"
        else:
            status = "pending"
        rows.append([notice.number, s.room.title, s.unit.name, local(s.delivered_at),
                     render.person(s.acknowledger) if s.acknowledger else "",
                     local(s.delivery.acknowledged_at),
                     s.delivery.acknowledged_revision or ("" if not s.acknowledged else 1),
                     tr(f"notices.report.state.{status}")])
    return header, rows
