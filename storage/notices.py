"""Notices (通报): numbering, creation and fan-out to duty rooms, acknowledgement,
the coordinator's live status message, reminders, corrections, withdrawal, lists and
the final report, as named queries.

Every change writes its AuditEntry and the outbox rows that tell everyone else in the
caller's unit of work. Texts for other people are rendered here from the catalogue (in
the reader's language and time zone), because the outbox rows must hold them when the
transaction commits. `create_notice` is the one entry point for a new notice, used by
the chat flow, the benchmarks and the multi-process tests alike.

Keys: the room message is `notice:<id>:room:<room id>` (kept as the delivery's
`message_key`), its edits `…:rev<n>`, `…:ack:r<n>`, `…:withdrawn`, its reminder
`…:remind`; the coordinator's status message is `notice:<id>:status`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from html import escape
from typing import Any

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from core import requests as rules
from core.clock import time_zone
from core.enums import NoticeKind, NoticeStatus, OutboxState, Role, Severity, role_permits
from i18n import Translator
from storage.access import audit
from storage.db import AlreadySubmitted
from storage.models import (
    DutyRoom,
    Notice,
    NoticeCounter,
    NoticeDelivery,
    OutboxMessage,
    Unit,
    User,
    ZoneMembership,
)
from storage.outbox import enqueue, enqueue_edit, enqueue_many
from views import requests as render

PREFIX = "TB"
TEXT_MAX = 3000
CALLBACK = "ntk"  # the 收到 button: ntk:<notice id>:<room id>:<revision>
PAGE_SIZE = 8
LIST_LIMIT = 12  # rooms named per section of the status message
SEVERITY_ICONS = {Severity.info: "🔵", Severity.important: "🟠", Severity.critical: "🔴"}
KIND_ORDER = [NoticeKind.situation, NoticeKind.warning, NoticeKind.instruction, NoticeKind.work]
SEVERITY_ORDER = [Severity.info, Severity.important, Severity.critical]


@dataclass(frozen=True)
class NoticePolicy:
    """What the settings decide: reminder delay, status edit spacing, zone, language."""

    remind_minutes: int = 30
    status_every_seconds: float = 3.0
    timezone: str = "Asia/Shanghai"
    language: str = "zh-Hans"  # duty rooms are groups with no language of their own

    @classmethod
    def from_settings(cls, settings: Any) -> NoticePolicy:
        return cls(remind_minutes=settings.notice_ack_remind_minutes,
                   status_every_seconds=settings.notice_status_edit_seconds,
                   timezone=settings.bot_timezone, language=settings.default_language)


@dataclass
class NoticeDraft:
    """What the coordinator decided; validated by the handler and again here."""

    kind: NoticeKind
    severity: Severity
    text: str
    audience: dict[str, Any]  # {"all": true} or {"zones": [ids], "units": [ids]}
    attachment: dict[str, Any] | None = None  # {"type": "photo"|"document", "file_id"...}
    scheduled_for: datetime | None = None
    # The draft's identity (handlers: made when the flow starts); stored with the notice.
    submission_key: str | None = None


class NoticeProblem(Exception):
    """The draft or change cannot be stored; `code` names a catalogue message."""

    def __init__(self, code: str, **values: Any) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def clean_text(text: str | None) -> str:
    return rules.clean_block(text)


def text_problem(text: str) -> str | None:
    """None, "empty" or "too_long" for a cleaned notice text."""
    problem = rules.text_problem(text, TEXT_MAX)
    return problem.value if problem else None


def may_create(user: User | None) -> bool:
    return user is not None and user.active and role_permits(user.role, Role.coordinator)


def may_acknowledge(user: User | None, room: DutyRoom) -> bool:
    """Members of the room's unit, and coordinators, may press 收到 for a room."""
    if user is None or not user.active:
        return False
    return user.unit_id == room.unit_id or role_permits(user.role, Role.coordinator)


# --------------------------------------------------------------------------- numbering


async def next_number(session: AsyncSession, year: int) -> str:
    """TB-<year>-<n>, atomically (an upsert increments the year's counter)."""
    statement = _insert(session)(NoticeCounter).values(year=year, last=1)
    statement = statement.on_conflict_do_update(
        index_elements=["year"], set_={"last": NoticeCounter.last + 1}
    ).returning(NoticeCounter.last)
    sequence = (await session.execute(statement)).scalar_one()
    return f"{PREFIX}-{year}-{sequence:06d}"


def status_key(notice: Notice) -> str:
    return f"notice:{notice.id}:status"


def room_key(notice_id: int, room_id: int) -> str:
    return f"notice:{notice_id}:room:{room_id}"


def notice_id_of_key(key: str) -> int | None:
    """The notice a room message's dedup key belongs to (None for other keys)."""
    parts = key.split(":")
    if len(parts) == 4 and parts[0] == "notice" and parts[2] == "room" and parts[1].isdigit():
        return int(parts[1])
    return None


def ack_data(notice_id: int, room_id: int, revision: int) -> str:
    return f"{CALLBACK}:{notice_id}:{room_id}:{revision}"


MAX_ID = 2**31 - 1  # ids and revisions are 32-bit integer columns on PostgreSQL


def parse_id(text: str | None) -> int | None:
    """A row id from button data; None for anything no row can have."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def parse_ack_data(data: str | None) -> tuple[int, int, int] | None:
    parts = (data or "").split(":")
    if len(parts) != 4 or parts[0] != CALLBACK:
        return None
    ids = [parse_id(p) for p in parts[1:]]
    if any(i is None for i in ids):
        return None
    return ids[0], ids[1], ids[2]  # type: ignore[return-value]


# --------------------------------------------------------------------------- audience


async def audience_rooms(session: AsyncSession, audience: dict[str, Any]) -> list[DutyRoom]:
    """The active, registered duty rooms the audience names (whole zones' member units,
    chosen units, or all), with their units loaded, in id order."""
    query = select(DutyRoom).options(selectinload(DutyRoom.unit)).where(
        DutyRoom.active.is_(True), DutyRoom.chat_id.is_not(None)).order_by(DutyRoom.id)
    if not audience.get("all"):
        zone_ids = list(audience.get("zones") or [])
        unit_ids = list(audience.get("units") or [])
        members = select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(zone_ids))
        query = query.where(or_(DutyRoom.unit_id.in_(unit_ids), DutyRoom.unit_id.in_(members)))
    return list((await session.execute(query)).scalars())


async def units_with_rooms(session: AsyncSession, *, limit: int = 12) -> list[Unit]:
    """Units that have an active duty room, senior first: the audience's unit buttons."""
    rooms = select(DutyRoom.unit_id).where(DutyRoom.active.is_(True),
                                           DutyRoom.chat_id.is_not(None))
    return list((await session.execute(select(Unit).where(Unit.id.in_(rooms)).order_by(
        Unit.level, Unit.id).limit(limit))).scalars())


# --------------------------------------------------------------------------- rendering


def kind_label(tr: Translator, kind: NoticeKind) -> str:
    return tr(f"notices.kind.{kind.value}")


def severity_label(tr: Translator, severity: Severity) -> str:
    return SEVERITY_ICONS[severity] + tr(f"notices.severity.{severity.value}")


def headline(tr: Translator, notice: Notice) -> str:
    return tr("notices.room.headline", icon=SEVERITY_ICONS[notice.severity],
              kind=kind_label(tr, notice.kind), severity=tr(
                  f"notices.severity.{notice.severity.value}"), number=notice.number)


def _who(user: User | None) -> str:
    return escape(render.person(user))


def room_text(tr: Translator, notice: Notice, delivery: NoticeDelivery | None,
              acknowledger: User | None, tz: Any) -> str:
    """The notice as a duty room sees it, with its state at the bottom."""
    lines = [headline(tr, notice)]
    if notice.status is NoticeStatus.withdrawn:
        lines.append(tr("notices.room.withdrawn_banner",
                        at=render.local_time(notice.withdrawn_at or notice.sent_at, tz)))
        lines.append(f"<s>{escape(notice.text)}</s>")
        return "\n".join(lines)
    if notice.revision > 1:
        lines.append(tr("notices.room.corrected_banner", revision=notice.revision,
                        at=render.local_time(notice.corrected_at or notice.sent_at, tz)))
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
    return {"inline_keyboard": [[{"text": tr("notices.button.ack"),
                                  "callback_data": ack_data(notice.id, room_id,
                                                            notice.revision)}]]}


def room_payload(tr: Translator, notice: Notice, room: DutyRoom,
                 delivery: NoticeDelivery | None, acknowledger: User | None,
                 policy: NoticePolicy) -> dict[str, Any]:
    """Bot API parameters of the room's message; no button once acknowledged in the
    current revision or withdrawn (an edit without one removes it)."""
    tz = time_zone(room.timezone or (room.unit.timezone if room.unit else None),
                    policy.timezone)
    payload: dict[str, Any] = {
        "text": room_text(tr, notice, delivery, acknowledger, tz),
        "parse_mode": "HTML", "link_preview_options": {"is_disabled": True},
    }
    acked_now = delivery is not None and delivery.acknowledged_at is not None and (
        delivery.acknowledged_revision or 1) >= notice.revision
    if notice.status is not NoticeStatus.withdrawn and not acked_now:
        payload["reply_markup"] = ack_markup(tr, notice, room.id)
    return payload


def _message(text: str, markup: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text, "parse_mode": "HTML",
                               "link_preview_options": {"is_disabled": True}}
    if markup:
        payload["reply_markup"] = markup
    return payload


# --------------------------------------------------------------------------- creation


async def create_notice(
    session: AsyncSession, draft: NoticeDraft, *, actor: User, now: datetime,
    policy: NoticePolicy, status_chat_id: int | None = None,
) -> Notice:
    """Store a numbered notice and, unless scheduled for later, fan it out at once:
    one delivery row and one outbox row per duty room, in bulk, in this transaction.

    `status_chat_id` (default: the actor's private chat) gets the live status message.
    Raises NoticeProblem for an invalid draft, storing nothing, and AlreadySubmitted
    (with its number) for a draft whose submission key is already stored: a second
    press after a restart sends nothing again.
    """
    if not may_create(actor):
        raise NoticeProblem("not_allowed")
    if draft.submission_key and (number := (await session.execute(
            select(Notice.number).where(Notice.submission_key == draft.submission_key)
    )).scalar_one_or_none()):
        raise AlreadySubmitted([number])
    text = clean_text(draft.text)
    if problem := text_problem(text):
        raise NoticeProblem(f"text_{problem}", limit=TEXT_MAX, length=len(text))
    audience = _clean_audience(draft.audience)
    if audience is None:
        raise NoticeProblem("no_audience")
    if draft.scheduled_for is not None and draft.scheduled_for <= now:
        raise NoticeProblem("time_past")
    rooms = await audience_rooms(session, audience)
    if not rooms:
        raise NoticeProblem("no_rooms")
    year = now.astimezone(time_zone(None, policy.timezone)).year
    notice = Notice(
        number=await next_number(session, year), kind=draft.kind, severity=draft.severity,
        text=text, attachment=draft.attachment, audience=audience,
        status=NoticeStatus.scheduled if draft.scheduled_for else NoticeStatus.draft,
        revision=1, scheduled_for=draft.scheduled_for, created_by_id=actor.id,
        created_at=now, history=[],
        status_chat_id=status_chat_id if status_chat_id is not None else actor.telegram_id,
        submission_key=draft.submission_key,
    )
    session.add(notice)
    await session.flush()
    await audit(session, "notice.create", actor=actor, subject_type="notice",
                subject_id=notice.number, kind=draft.kind.value, severity=draft.severity.value,
                audience=audience, scheduled_for=draft.scheduled_for.isoformat()
                if draft.scheduled_for else None)
    if draft.scheduled_for is None:
        await send_notice(session, notice, now=now, policy=policy, rooms=rooms)
    return notice


def _clean_audience(audience: dict[str, Any]) -> dict[str, Any] | None:
    if audience.get("all"):
        return {"all": True}
    zones = sorted({int(z) for z in audience.get("zones") or []})
    units = sorted({int(u) for u in audience.get("units") or []})
    if not zones and not units:
        return None
    return {"zones": zones, "units": units}


async def send_notice(
    session: AsyncSession, notice: Notice, *, now: datetime, policy: NoticePolicy,
    late: bool = False, rooms: list[DutyRoom] | None = None,
) -> int:
    """Fan the notice out to its audience's rooms (as they are now, unless the caller
    just loaded them); returns how many.

    Idempotent: deliveries and outbox rows are keyed by notice and room, so a second
    call adds nothing. The coordinator's status message is enqueued first.
    """
    if rooms is None:
        rooms = await audience_rooms(session, notice.audience)
    notice.status, notice.sent_at = NoticeStatus.sent, now
    notice.remind_at = now + timedelta(minutes=policy.remind_minutes)
    tr = Translator(policy.language)
    known = set((await session.execute(select(NoticeDelivery.duty_room_id).where(
        NoticeDelivery.notice_id == notice.id))).scalars())
    fresh = [room for room in rooms if room.id not in known]
    if fresh:
        await session.execute(insert(NoticeDelivery), [
            {"notice_id": notice.id, "duty_room_id": room.id,
             "message_key": room_key(notice.id, room.id)} for room in fresh])
    if notice.status_chat_id is not None:
        # First, so the coordinator sees it before the broadcast's rows (FIFO outbox).
        await enqueue(session, chat_id=notice.status_chat_id, kind="notice_status",
                      dedup_key=status_key(notice), now=now,
                      payload=_message(await status_text(session, notice, now=now,
                                                         policy=policy)))
    rows: list[dict[str, Any]] = []
    for room in fresh:
        key = room_key(notice.id, room.id)
        rows.append({"chat_id": room.chat_id, "kind": "notice", "dedup_key": key,
                     "payload": room_payload(tr, notice, room, None, None, policy)})
        if notice.attachment:
            rows.append(_attachment_row(notice, room, key))
    await enqueue_many(session, rows, now=now)
    await audit(session, "notice.send", subject_type="notice", subject_id=notice.number,
                rooms=len(fresh), late=late)
    return len(fresh)


def _attachment_row(notice: Notice, room: DutyRoom, key: str) -> dict[str, Any]:
    attachment = notice.attachment or {}
    method, field_name = ("sendPhoto", "photo") if attachment.get("type") == "photo" \
        else ("sendDocument", "document")
    return {"chat_id": room.chat_id, "kind": "notice_attachment", "method": method,
            "dedup_key": f"{key}:att", "reply_to_key": key,
            "payload": {field_name: attachment["file_id"], "caption": notice.number}}


# --------------------------------------------------------------------------- loading


async def get_notice(session: AsyncSession, *, notice_id: int | None = None,
                     number: str | None = None, for_update: bool = False) -> Notice | None:
    statement = select(Notice)
    if notice_id is not None:
        statement = statement.where(Notice.id == notice_id)
    elif number is not None:
        statement = statement.where(Notice.number == number.strip().upper())
    else:
        raise ValueError("notice_id or number is required")
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(
        statement.execution_options(populate_existing=True))).scalar_one_or_none()


@dataclass
class RoomState:
    """One room's delivery of a notice, as the status message and the report show it."""

    delivery: NoticeDelivery
    room: DutyRoom
    unit: Unit
    acknowledger: User | None
    outbox_state: OutboxState | None
    delivered_at: datetime | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.outbox_state is OutboxState.failed and self.delivery.acknowledged_at is None

    @property
    def acknowledged(self) -> bool:
        return self.delivery.acknowledged_at is not None


ACKED = NoticeDelivery.acknowledged_at.is_not(None)
FAILED = (OutboxMessage.state == OutboxState.failed) & NoticeDelivery.acknowledged_at.is_(None)
PENDING = NoticeDelivery.acknowledged_at.is_(None) & or_(
    OutboxMessage.state.is_(None), OutboxMessage.state != OutboxState.failed)


async def room_states(session: AsyncSession, notice: Notice, *, where: Any = None,
                      limit: int | None = None, by_ack: bool = False) -> list[RoomState]:
    """The rooms of the notice (all, or those `where` selects, at most `limit`) with
    their acknowledgement and their outbox row's state; by unit, or by
    acknowledgement time."""
    acker = aliased(User)
    statement = (
        select(NoticeDelivery, DutyRoom, Unit, acker, OutboxMessage.state,
               OutboxMessage.sent_at, OutboxMessage.last_error)
        .join(DutyRoom, DutyRoom.id == NoticeDelivery.duty_room_id)
        .join(Unit, Unit.id == DutyRoom.unit_id)
        .outerjoin(acker, acker.id == NoticeDelivery.acknowledged_by_id)
        .outerjoin(OutboxMessage, OutboxMessage.dedup_key == NoticeDelivery.message_key)
        .where(NoticeDelivery.notice_id == notice.id)
        .order_by(*([NoticeDelivery.acknowledged_at] if by_ack else []), Unit.level, Unit.id,
                  DutyRoom.id)
        .limit(limit)
    )
    if where is not None:
        statement = statement.where(where)
    rows = await session.execute(statement)
    return [RoomState(d, r, u, a, s, t, e) for d, r, u, a, s, t, e in rows]


@dataclass
class Tally:
    rooms: int = 0
    delivered: int = 0
    acknowledged: int = 0
    failed: int = 0
    reminded: int = 0

    @property
    def pending(self) -> int:
        return max(self.rooms - self.acknowledged - self.failed, 0)


async def tallies(session: AsyncSession, notice_ids: list[int]) -> dict[int, Tally]:
    """Counts per notice in one grouped query (for lists)."""
    if not notice_ids:
        return {}
    rows = await session.execute(
        select(
            NoticeDelivery.notice_id, func.count(),
            func.sum(case((OutboxMessage.state == OutboxState.sent, 1), else_=0)),
            func.sum(case((ACKED, 1), else_=0)),
            func.sum(case((FAILED, 1), else_=0)),
            func.sum(case((NoticeDelivery.reminded_at.is_not(None), 1), else_=0)),
        )
        .outerjoin(OutboxMessage, OutboxMessage.dedup_key == NoticeDelivery.message_key)
        .where(NoticeDelivery.notice_id.in_(notice_ids))
        .group_by(NoticeDelivery.notice_id)
    )
    found = {nid: Tally(int(n), int(d or 0), int(a or 0), int(f or 0), int(r or 0))
             for nid, n, d, a, f, r in rows}
    return {nid: found.get(nid, Tally()) for nid in notice_ids}


# --------------------------------------------------------------------------- the status message


async def _creator(session: AsyncSession, notice: Notice) -> User | None:
    if notice.created_by_id is None:
        return None
    return (await session.execute(select(User).options(selectinload(User.unit)).where(
        User.id == notice.created_by_id))).scalar_one_or_none()


def reader_zone(policy: NoticePolicy, user: User | None) -> Any:
    unit = user.unit if user is not None else None
    return time_zone(unit.timezone if unit else None, policy.timezone)


def _names(tr: Translator, items: list[str], total: int | None = None) -> str:
    shown = items[:LIST_LIMIT]
    text = tr.join(shown)
    rest = (len(items) if total is None else total) - len(shown)
    if rest > 0:
        text += tr("notices.status.more", count=rest)
    return text


def went_late(notice: Notice) -> bool:
    """A scheduled notice sent more than a minute after its time (the bot was down)."""
    return notice.scheduled_for is not None and notice.sent_at is not None and \
        notice.sent_at - notice.scheduled_for > timedelta(minutes=1)


async def status_text(session: AsyncSession, notice: Notice, *, now: datetime,
                      policy: NoticePolicy) -> str:
    """The coordinator's live view: delivered, acknowledged (by whom, when, which
    revision), pending, failed, reminded. Counts come from one grouped query and only
    the rooms it names are loaded, so it stays cheap for a 1,000-room broadcast."""
    creator = await _creator(session, notice)
    tr = Translator((creator.language if creator else None) or policy.language)
    tz = reader_zone(policy, creator)
    tally = (await tallies(session, [notice.id]))[notice.id]
    lines = [tr("notices.status.title", number=notice.number, revision=notice.revision),
             tr("notices.status.about", kind=kind_label(tr, notice.kind),
                severity=severity_label(tr, notice.severity),
                text=escape(first_line(notice.text)))]
    if notice.status is NoticeStatus.withdrawn:
        lines.append(tr("notices.status.withdrawn",
                        at=render.local_time(notice.withdrawn_at or now, tz)))
    if notice.sent_at is not None:
        lines.append(tr("notices.status.sent", at=render.local_time(notice.sent_at, tz)) +
                     (tr("notices.status.late") if went_late(notice) else ""))
    lines.append(tr("notices.status.counts", rooms=tally.rooms, delivered=tally.delivered,
                    acknowledged=tally.acknowledged, pending=tally.pending,
                    failed=tally.failed))
    acked = await room_states(session, notice, where=ACKED, limit=LIST_LIMIT, by_ack=True)
    if acked:
        lines.append(tr("notices.status.acked_header"))
        for state in acked:
            revision = state.delivery.acknowledged_revision or 1
            lines.append(tr("notices.status.acked_line", room=escape(state.unit.short_name),
                            who=_who(state.acknowledger),
                            at=render.local_time(state.delivery.acknowledged_at, tz))
                         + (tr("notices.status.old_revision", revision=revision)
                            if revision < notice.revision else ""))
        if tally.acknowledged > LIST_LIMIT:
            lines.append(tr("notices.status.more", count=tally.acknowledged - LIST_LIMIT))
    for part, condition, total in (("pending", PENDING, tally.pending),
                                   ("failed", FAILED, tally.failed)):
        if not total or (part == "pending" and notice.status is NoticeStatus.withdrawn):
            continue
        names = [escape(s.unit.short_name) for s in await room_states(
            session, notice, where=condition, limit=LIST_LIMIT)]
        lines.append(tr(f"notices.status.{part}", rooms=_names(tr, names, total)))
    if tally.reminded:
        lines.append(tr("notices.status.reminded", count=tally.reminded))
    return "\n".join(lines)


def first_line(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if text and text.strip() else ""
    return first if len(first) <= 40 else first[:40] + "…"


async def refresh_status(session: AsyncSession, notice: Notice, *, now: datetime,
                         policy: NoticePolicy) -> bool:
    """Bring the coordinator's status message up to date, coalesced.

    Why not one edit per change: a 1,000-room broadcast records 1,000 deliveries in
    half a minute, and a private chat takes about one message a second. So there is at
    most one status edit waiting per notice: while it has not been claimed by the
    delivery worker its text is replaced in place (no new row), and a new edit is only
    added when the text differs from the last one sent, timed `status_every_seconds`
    after that one went out. Whatever happens in between is folded into it, and the
    last change always reaches the message. Returns True when something was written.
    """
    if notice.status_chat_id is None or notice.sent_at is None:
        return False
    key = status_key(notice)
    payload = _message(await status_text(session, notice, now=now, policy=policy))
    waiting = await session.execute(
        update(OutboxMessage)
        .where(or_(OutboxMessage.dedup_key == key, OutboxMessage.reply_to_key == key),
               OutboxMessage.method.in_(["sendMessage", "editMessageText"]),
               OutboxMessage.state == OutboxState.pending)
        .values(payload=payload)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    if waiting.first() is not None:
        return True
    last = (await session.execute(
        select(OutboxMessage.payload, OutboxMessage.state, OutboxMessage.sent_at)
        .where(or_(OutboxMessage.dedup_key == key, OutboxMessage.reply_to_key == key),
               OutboxMessage.method.in_(["sendMessage", "editMessageText"]),
               OutboxMessage.state != OutboxState.failed)
        .order_by(OutboxMessage.id.desc()).limit(1)
    )).first()
    if last is None:
        return False  # the status message itself failed: nothing to edit
    if (last.payload or {}).get("text") == payload["text"]:
        return False
    gone = last.sent_at if last.state is OutboxState.sent and last.sent_at else now
    await enqueue_edit(session, reply_to_key=key, dedup_key=f"{key}:{uuid.uuid4().hex[:12]}",
                       payload=payload, kind="notice_status", now=now,
                       not_before=gone + timedelta(seconds=policy.status_every_seconds))
    return True


# --------------------------------------------------------------------------- acknowledgement


class Verdict(StrEnum):
    done = "done"
    not_found = "not_found"  # forged, foreign or unknown button
    not_allowed = "not_allowed"  # not a member of the room's unit, nor a coordinator
    withdrawn = "withdrawn"
    already = "already"  # acknowledged before (this revision or a later one)


@dataclass
class AckOutcome:
    verdict: Verdict
    notice: Notice | None = None
    delivery: NoticeDelivery | None = None
    acknowledger: User | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def acknowledge(
    session: AsyncSession, data: str | None, *, actor: User | None, chat_id: int | None,
    now: datetime, policy: NoticePolicy,
) -> AckOutcome:
    """Record a 收到 press after checking everything on the server: the button's notice,
    room and revision exist, it was pressed in that room's chat, the person belongs to
    the room's unit (or coordinates), the notice is not withdrawn, and nobody
    acknowledged this revision first (a conditional UPDATE, so two presses at once make
    one acknowledgement). Refusals are audited and change nothing else."""
    parsed = parse_ack_data(data)
    outcome = await _judge_ack(session, parsed, actor=actor, chat_id=chat_id)
    if outcome.verdict is not Verdict.done:
        await audit(session, "notice.ack_refused", actor=actor, chat_id=chat_id,
                    subject_type="notice", subject_id=outcome.notice.number
                    if outcome.notice else None, verdict=outcome.verdict.value, data=data)
        return outcome
    assert parsed is not None and actor is not None
    notice, delivery = outcome.notice, outcome.delivery
    assert notice is not None and delivery is not None
    revision = parsed[2]
    claimed = await session.execute(
        update(NoticeDelivery)
        .where(NoticeDelivery.id == delivery.id,
               or_(NoticeDelivery.acknowledged_at.is_(None),
                   func.coalesce(NoticeDelivery.acknowledged_revision, 1) < revision))
        .values(acknowledged_at=now, acknowledged_by_id=actor.id,
                acknowledged_revision=revision)
        .returning(NoticeDelivery.id)
        .execution_options(synchronize_session=False)
    )
    if claimed.first() is None:
        return await _already(session, notice, delivery.id)
    await session.refresh(delivery)
    await audit(session, "notice.acknowledge", actor=actor, chat_id=chat_id,
                subject_type="notice", subject_id=notice.number, room=delivery.duty_room_id,
                revision=revision)
    room = await _room(session, delivery.duty_room_id)
    await enqueue_edit(
        session, reply_to_key=delivery.message_key or room_key(notice.id, room.id),
        dedup_key=f"{delivery.message_key}:ack:r{revision}", kind="notice_edit", now=now,
        payload=room_payload(Translator(policy.language), notice, room, delivery, actor, policy),
    )
    await refresh_status(session, notice, now=now, policy=policy)
    return AckOutcome(Verdict.done, notice, delivery, actor)


async def _room(session: AsyncSession, room_id: int) -> DutyRoom:
    return (await session.execute(select(DutyRoom).options(selectinload(DutyRoom.unit)).where(
        DutyRoom.id == room_id))).scalar_one()


async def _judge_ack(session: AsyncSession, parsed: tuple[int, int, int] | None, *,
                     actor: User | None, chat_id: int | None) -> AckOutcome:
    if parsed is None:
        return AckOutcome(Verdict.not_found)
    notice_id, room_id, revision = parsed
    notice = await get_notice(session, notice_id=notice_id)
    delivery = (await session.execute(select(NoticeDelivery).where(
        NoticeDelivery.notice_id == notice_id, NoticeDelivery.duty_room_id == room_id)
    )).scalar_one_or_none()
    room = await session.get(DutyRoom, room_id)
    if notice is None or delivery is None or room is None or room.chat_id != chat_id \
            or not 1 <= revision <= notice.revision:
        return AckOutcome(Verdict.not_found, notice)
    if not may_acknowledge(actor, room):
        return AckOutcome(Verdict.not_allowed, notice, delivery)
    if notice.status is not NoticeStatus.sent:
        return AckOutcome(Verdict.withdrawn, notice, delivery)
    if delivery.acknowledged_at is not None and (delivery.acknowledged_revision or 1) >= revision:
        return await _already(session, notice, delivery.id)
    return AckOutcome(Verdict.done, notice, delivery)


async def _already(session: AsyncSession, notice: Notice, delivery_id: int) -> AckOutcome:
    delivery = (await session.execute(
        select(NoticeDelivery).where(NoticeDelivery.id == delivery_id)
        .execution_options(populate_existing=True))).scalar_one()
    first = await session.get(User, delivery.acknowledged_by_id) \
        if delivery.acknowledged_by_id else None
    return AckOutcome(Verdict.already, notice, delivery, first)


# --------------------------------------------------------------------------- reminder


async def remind_pending(session: AsyncSession, notice: Notice, *, now: datetime,
                         policy: NoticePolicy, late: bool = False) -> list[str]:
    """Remind, once, every room that has not acknowledged (and was reached), and tell the
    coordinator which; returns the rooms' unit names."""
    if notice.status is not NoticeStatus.sent:
        return []
    states = await room_states(session, notice,
                               where=PENDING & NoticeDelivery.reminded_at.is_(None))
    if not states:
        return []
    tr = Translator(policy.language)
    rows = [{"chat_id": s.room.chat_id, "kind": "notice_reminder",
             "dedup_key": f"{s.delivery.message_key}:remind",
             "reply_to_key": s.delivery.message_key,
             "payload": _message(tr("notices.room.reminder", number=notice.number,
                                    minutes=policy.remind_minutes) +
                                 (tr("notices.room.late") if late else ""),
                                 ack_markup(tr, notice, s.room.id))}
            for s in states]
    await enqueue_many(session, rows, now=now)
    ids = [s.delivery.id for s in states]
    for start in range(0, len(ids), 500):
        await session.execute(
            update(NoticeDelivery).where(NoticeDelivery.id.in_(ids[start:start + 500]))
            .values(reminded_at=now).execution_options(synchronize_session=False))
    names = [s.unit.short_name for s in states]
    await audit(session, "notice.remind", subject_type="notice", subject_id=notice.number,
                rooms=len(states))
    if notice.status_chat_id is not None:
        creator = await _creator(session, notice)
        ctr = Translator((creator.language if creator else None) or policy.language)
        await enqueue(session, chat_id=notice.status_chat_id, kind="notice_reminded",
                      dedup_key=f"notice:{notice.id}:reminded", now=now, payload=_message(
                          ctr("notices.status.reminded_told", number=notice.number,
                              count=len(names), rooms=escape(_names(ctr, names)))))
    for state in states:
        state.delivery.reminded_at = now
    await refresh_status(session, notice, now=now, policy=policy)
    return names


# --------------------------------------------------------------------------- correct, withdraw


async def _edit_rooms(session: AsyncSession, notice: Notice, suffix: str, *, now: datetime,
                      policy: NoticePolicy) -> int:
    """Edit every room's message to the notice's current state (one bulk insert)."""
    tr = Translator(policy.language)
    states = await room_states(session, notice)
    rows = [{"chat_id": s.room.chat_id, "kind": "notice_edit", "method": "editMessageText",
             "dedup_key": f"{s.delivery.message_key}:{suffix}",
             "reply_to_key": s.delivery.message_key,
             "payload": room_payload(tr, notice, s.room, s.delivery, s.acknowledger, policy)}
            for s in states if s.delivery.message_key]
    reminders = [{"chat_id": s.room.chat_id, "kind": "notice_edit",
                  "method": "editMessageReplyMarkup",
                  "dedup_key": f"{s.delivery.message_key}:remind:{suffix}",
                  "reply_to_key": f"{s.delivery.message_key}:remind", "payload": {}}
                 for s in states if s.delivery.reminded_at is not None
                 and notice.status is NoticeStatus.withdrawn]
    return await enqueue_many(session, rows + reminders, now=now, supersede=True)


async def correct_notice(session: AsyncSession, notice: Notice, text: str, *, actor: User,
                         now: datetime, policy: NoticePolicy) -> int:
    """A new revision: every delivered message is edited and marked corrected; earlier
    acknowledgements stay, shown with the revision they acknowledged."""
    if not may_create(actor):
        raise NoticeProblem("not_allowed")
    if notice.status is NoticeStatus.withdrawn:
        raise NoticeProblem("already_withdrawn")
    cleaned = clean_text(text)
    if problem := text_problem(cleaned):
        raise NoticeProblem(f"text_{problem}", limit=TEXT_MAX, length=len(cleaned))
    if cleaned == notice.text:
        raise NoticeProblem("text_unchanged")
    notice.history = [*(notice.history or []), {
        "revision": notice.revision, "text": notice.text,
        "at": (notice.corrected_at or notice.sent_at or notice.created_at).isoformat()}]
    notice.text, notice.revision, notice.corrected_at = cleaned, notice.revision + 1, now
    await session.flush()
    await audit(session, "notice.correct", actor=actor, subject_type="notice",
                subject_id=notice.number, revision=notice.revision)
    edited = 0
    if notice.status is NoticeStatus.sent:
        edited = await _edit_rooms(session, notice, f"rev{notice.revision}", now=now,
                                   policy=policy)
        await refresh_status(session, notice, now=now, policy=policy)
    return edited


async def withdraw_notice(session: AsyncSession, notice: Notice, *, actor: User,
                          now: datetime, policy: NoticePolicy) -> int:
    """Withdrawn: messages say so and lose their buttons; a scheduled one never goes."""
    if not may_create(actor):
        raise NoticeProblem("not_allowed")
    if notice.status is NoticeStatus.withdrawn:
        raise NoticeProblem("already_withdrawn")
    was_sent = notice.status is NoticeStatus.sent
    notice.status, notice.withdrawn_at = NoticeStatus.withdrawn, now
    await session.flush()
    await audit(session, "notice.withdraw", actor=actor, subject_type="notice",
                subject_id=notice.number)
    if not was_sent:
        return 0
    edited = await _edit_rooms(session, notice, "withdrawn", now=now, policy=policy)
    await refresh_status(session, notice, now=now, policy=policy)
    return edited


# --------------------------------------------------------------------------- lists, report, planner


async def recent_notices(session: AsyncSession, *, page: int = 0) -> tuple[list[Notice], int]:
    total = (await session.execute(select(func.count()).select_from(Notice))).scalar_one()
    rows = await session.execute(
        select(Notice).order_by(Notice.created_at.desc(), Notice.id.desc())
        .offset(page * PAGE_SIZE).limit(PAGE_SIZE))
    return list(rows.scalars()), total


async def latest_notice(session: AsyncSession) -> Notice | None:
    return (await session.execute(select(Notice).where(Notice.sent_at.is_not(None)).order_by(
        Notice.sent_at.desc(), Notice.id.desc()).limit(1))).scalar_one_or_none()


def report_table(tr: Translator, notice: Notice, states: list[RoomState],
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


async def planner_candidates(session: AsyncSession, start: datetime,
                             end: datetime) -> list[Notice]:
    """Notices with something due in [start, end): a scheduled send, a reminder, or the
    status check a minute after sending."""
    rows = await session.execute(select(Notice).where(or_(
        (Notice.status == NoticeStatus.scheduled) & (Notice.scheduled_for < end),
        (Notice.status == NoticeStatus.sent) & (
            ((Notice.remind_at >= start) & (Notice.remind_at < end)) |
            ((Notice.sent_at >= start - timedelta(minutes=1)) & (Notice.sent_at < end))),
    )).order_by(Notice.id))
    return list(rows.scalars())
