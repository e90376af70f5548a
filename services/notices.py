"""Notices (通报) as units of work: creation and fan-out to duty rooms, acknowledgement,
the coordinator's live status message, reminders, corrections and withdrawal.

Every change writes its AuditEntry and the outbox rows that tell everyone else in the
caller's unit of work. Texts for other people are rendered here (views/notices.py, in
the reader's language and time zone), because the outbox rows must hold them when the
transaction commits. `create_notice` is the one entry point for a new notice, used by
the chat flow, the benchmarks and the multi-process tests alike. The rules are in
core/notices.py (with the outbox rows' keys), the queries in storage/notices.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from html import escape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import notices as rules
from core.clock import time_zone
from core.enums import NoticeStatus
from core.enums import OutboxState
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from core.notices import NoticeProblem
from core.notices import Verdict
from i18n import Translator
from storage import notices as store
from storage.access import audit
from storage.db import AlreadySubmitted
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import User
from storage.outbox import enqueue
from storage.outbox import enqueue_edit
from storage.outbox import enqueue_many
from views import html_message
from views import notices as view


def _check_may_create(actor: User | None) -> None:
    if actor is None or not rules.may_create(actor.role, active=actor.active):
        raise NoticeProblem("not_allowed")


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
    _check_may_create(actor)
    if draft.submission_key and (
            number := await store.number_of_submission(session, draft.submission_key)):
        raise AlreadySubmitted([number])
    text = rules.clean_text(draft.text)
    if problem := rules.text_problem(text):
        raise NoticeProblem(f"text_{problem}", limit=rules.TEXT_MAX, length=len(text))
    audience = rules.clean_audience(draft.audience)
    if audience is None:
        raise NoticeProblem("no_audience")
    if draft.scheduled_for is not None and draft.scheduled_for <= now:
        raise NoticeProblem("time_past")
    rooms = await store.audience_rooms(session, audience)
    if not rooms:
        raise NoticeProblem("no_rooms")
    year = now.astimezone(time_zone(None, policy.timezone)).year
    notice = Notice(
        number=await store.next_number(session, year), kind=draft.kind,
        severity=draft.severity, text=text, attachment=draft.attachment, audience=audience,
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
        rooms = await store.audience_rooms(session, notice.audience)
    notice.status, notice.sent_at = NoticeStatus.sent, now
    notice.remind_at = now + timedelta(minutes=policy.remind_minutes)
    tr = Translator(policy.language)
    fresh = await store.add_deliveries(session, notice.id, rooms)
    if notice.status_chat_id is not None:
        # First, so the coordinator sees it before the broadcast's rows (FIFO outbox).
        await enqueue(session, chat_id=notice.status_chat_id, kind="notice_status",
                      dedup_key=rules.status_key(notice.id), now=now,
                      payload=html_message(await render_status(session, notice, now=now,
                                                               policy=policy)))
    rows: list[dict[str, Any]] = []
    for room in fresh:
        key = rules.room_key(notice.id, room.id)
        rows.append({"chat_id": room.chat_id, "kind": "notice", "dedup_key": key,
                     "payload": view.room_payload(tr, notice, room, None, None, policy)})
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


# --------------------------------------------------------------------------- the status message


async def render_status(session: AsyncSession, notice: Notice, *, now: datetime,
                        policy: NoticePolicy) -> str:
    """The coordinator's status message as it stands, in the creator's language and zone.
    Counts come from one grouped query and only the rooms it names are loaded, so it
    stays cheap for a 1,000-room broadcast."""
    creator = await store.creator(session, notice)
    tr = Translator((creator.language if creator else None) or policy.language)
    tally = (await store.tallies(session, [notice.id]))[notice.id]
    acknowledged = await store.room_states(session, notice, where=store.ACKED,
                                           limit=view.LIST_LIMIT, by_ack=True)

    async def unit_names(condition: Any) -> list[str]:
        return [s.unit.short_name for s in await store.room_states(
            session, notice, where=condition, limit=view.LIST_LIMIT)]

    pending = await unit_names(store.PENDING) if tally.pending and \
        notice.status is not NoticeStatus.withdrawn else []
    failed = await unit_names(store.FAILED) if tally.failed else []
    return view.status_text(tr, notice, view.reader_zone(policy, creator), now=now,
                            tally=tally, acknowledged=acknowledged, pending=pending,
                            failed=failed)


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
    key = rules.status_key(notice.id)
    payload = html_message(await render_status(session, notice, now=now, policy=policy))
    if await store.replace_waiting_status(session, key, payload):
        return True
    last = await store.last_status_message(session, key)
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


@dataclass(frozen=True)
class AckOutcome:
    verdict: Verdict
    notice: Notice | None = None
    delivery: NoticeDelivery | None = None
    acknowledger: User | None = None


async def acknowledge(
    session: AsyncSession, data: str | None, *, actor: User | None, chat_id: int | None,
    now: datetime, policy: NoticePolicy,
) -> AckOutcome:
    """Record a 收到 press after checking everything on the server: the button's notice,
    room and revision exist, it was pressed in that room's chat, the person belongs to
    the room's unit (or coordinates), the notice is not withdrawn, and nobody
    acknowledged this revision first (a conditional UPDATE, so two presses at once make
    one acknowledgement). Refusals are audited and change nothing else."""
    parsed = rules.parse_ack_data(data)
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
    if not await store.claim_acknowledgement(session, delivery.id, user_id=actor.id,
                                             revision=revision, now=now):
        return await _already(session, notice, delivery.id)
    await session.refresh(delivery)
    await audit(session, "notice.acknowledge", actor=actor, chat_id=chat_id,
                subject_type="notice", subject_id=notice.number, room=delivery.duty_room_id,
                revision=revision)
    room = await store.duty_room(session, delivery.duty_room_id)
    await enqueue_edit(
        session, reply_to_key=delivery.message_key or rules.room_key(notice.id, room.id),
        dedup_key=f"{delivery.message_key}:ack:r{revision}", kind="notice_edit", now=now,
        payload=view.room_payload(Translator(policy.language), notice, room, delivery, actor,
                                  policy),
    )
    await refresh_status(session, notice, now=now, policy=policy)
    return AckOutcome(Verdict.done, notice, delivery, actor)


async def _judge_ack(session: AsyncSession, parsed: tuple[int, int, int] | None, *,
                     actor: User | None, chat_id: int | None) -> AckOutcome:
    if parsed is None:
        return AckOutcome(Verdict.not_found)
    notice_id, room_id, revision = parsed
    notice = await store.get_notice(session, notice_id=notice_id)
    delivery = await store.delivery_to(session, notice_id, room_id)
    room = await session.get(DutyRoom, room_id)
    if notice is None or delivery is None or room is None or room.chat_id != chat_id \
            or not 1 <= revision <= notice.revision:
        return AckOutcome(Verdict.not_found, notice)
    if actor is None or not rules.may_acknowledge(actor.role, actor.unit_id,
                                                  active=actor.active,
                                                  room_unit_id=room.unit_id):
        return AckOutcome(Verdict.not_allowed, notice, delivery)
    if notice.status is not NoticeStatus.sent:
        return AckOutcome(Verdict.withdrawn, notice, delivery)
    if delivery.acknowledged_at is not None and (delivery.acknowledged_revision or 1) >= revision:
        return await _already(session, notice, delivery.id)
    return AckOutcome(Verdict.done, notice, delivery)


async def _already(session: AsyncSession, notice: Notice, delivery_id: int) -> AckOutcome:
    delivery = await store.reload_delivery(session, delivery_id)
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
    states = await store.room_states(session, notice, where=store.TO_REMIND)
    if not states:
        return []
    tr = Translator(policy.language)
    rows = [{"chat_id": s.room.chat_id, "kind": "notice_reminder",
             "dedup_key": f"{s.delivery.message_key}:remind",
             "reply_to_key": s.delivery.message_key,
             "payload": html_message(tr("notices.room.reminder", number=notice.number,
                                        minutes=policy.remind_minutes) +
                                     (tr("notices.room.late") if late else ""),
                                     view.ack_markup(tr, notice, s.room.id))}
            for s in states]
    await enqueue_many(session, rows, now=now)
    await store.mark_reminded(session, [s.delivery.id for s in states], now)
    names = [s.unit.short_name for s in states]
    await audit(session, "notice.remind", subject_type="notice", subject_id=notice.number,
                rooms=len(states))
    if notice.status_chat_id is not None:
        creator = await store.creator(session, notice)
        ctr = Translator((creator.language if creator else None) or policy.language)
        await enqueue(session, chat_id=notice.status_chat_id, kind="notice_reminded",
                      dedup_key=f"notice:{notice.id}:reminded", now=now, payload=html_message(
                          ctr("notices.status.reminded_told", number=notice.number,
                              count=len(names), rooms=escape(view.name_list(ctr, names)))))
    for state in states:
        state.delivery.reminded_at = now
    await refresh_status(session, notice, now=now, policy=policy)
    return names


# --------------------------------------------------------------------------- correct, withdraw


async def _edit_rooms(session: AsyncSession, notice: Notice, suffix: str, *, now: datetime,
                      policy: NoticePolicy) -> int:
    """Edit every room's message to the notice's current state (one bulk insert)."""
    tr = Translator(policy.language)
    states = await store.room_states(session, notice)
    rows = [{"chat_id": s.room.chat_id, "kind": "notice_edit", "method": "editMessageText",
             "dedup_key": f"{s.delivery.message_key}:{suffix}",
             "reply_to_key": s.delivery.message_key,
             "payload": view.room_payload(tr, notice, s.room, s.delivery, s.acknowledger,
                                          policy)}
            for s in states if s.delivery.message_key]
    reminders: list[dict[str, Any]] = [
        {"chat_id": s.room.chat_id, "kind": "notice_edit", "method": "editMessageReplyMarkup",
         "dedup_key": f"{s.delivery.message_key}:remind:{suffix}",
         "reply_to_key": f"{s.delivery.message_key}:remind", "payload": {}}
        for s in states if s.delivery.reminded_at is not None
        and notice.status is NoticeStatus.withdrawn]
    return await enqueue_many(session, rows + reminders, now=now, supersede=True)


async def correct_notice(session: AsyncSession, notice: Notice, text: str, *, actor: User,
                         now: datetime, policy: NoticePolicy) -> int:
    """A new revision: every delivered message is edited and marked corrected; earlier
    acknowledgements stay, shown with the revision they acknowledged."""
    _check_may_create(actor)
    if notice.status is NoticeStatus.withdrawn:
        raise NoticeProblem("already_withdrawn")
    cleaned = rules.clean_text(text)
    if problem := rules.text_problem(cleaned):
        raise NoticeProblem(f"text_{problem}", limit=rules.TEXT_MAX, length=len(cleaned))
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
    _check_may_create(actor)
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
