"""Assistance requests as units of work: creation and routing, state changes and
escalations, each with its RequestEvent, its AuditEntry and the outbox rows that tell
everyone else, in the caller's transaction: committed together or not at all.

The rules come from core/, the queries from storage/requests.py, the texts from
views/requests.py (rendered here, in the reader's language and time zone, because the
outbox row must hold them when the transaction commits).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from core import requests as rules
from core.enums import RequestStatus
from core.request_checks import Draft
from core.request_checks import DraftProblem
from core.request_checks import Policy
from core.request_checks import Verdict
from core.request_checks import action_problem
from core.request_checks import check_draft
from core.request_checks import press_verdict
from core.requests import Action
from core.requests import Press
from core.schedule import ack_deadline
from i18n import Translator
from storage import requests as store
from storage.access import audit
from storage.db import AlreadySubmitted
from storage.models import AssistanceRequest
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import RequestEvent
from storage.models import Unit
from storage.models import User
from storage.outbox import enqueue
from storage.outbox import enqueue_edit
from storage.outbox import get_message
from views import html_message
from views import requests as render


def _key(request: AssistanceRequest, *parts: object) -> str:
    """The outbox key of a message about this request."""
    return ":".join(["request", request.number, *map(str, parts)])


# --------------------------------------------------------------------------- creation


@dataclass
class Created:
    requests: list[AssistanceRequest]
    # Requests whose unit has no duty room, with how many liaisons were told instead.
    undelivered: list[tuple[AssistanceRequest, int]]


async def create_requests(
    session: AsyncSession, draft: Draft, *, actor: User, now: datetime, policy: Policy,
) -> Created:
    """Store one request per target unit (numbered, routed, recorded), all or nothing.

    A draft whose submission key is already stored raises AlreadySubmitted with the
    numbers it got, storing and enqueueing nothing (a second press after a restart)."""
    if draft.submission_key and (numbers := await store.submitted_numbers(
            session, draft.submission_key)):
        raise AlreadySubmitted(numbers)
    clean = check_draft(draft, own_unit_id=actor.unit_id, now=now)
    assert actor.unit_id is not None  # check_draft refuses a requester without a unit
    targets = clean.targets
    units = await store.units_by_id(session, [*targets, actor.unit_id])
    if any(unit_id not in units for unit_id in targets):
        raise DraftProblem("unknown_target")
    mechanism = await store.mechanism_by_id(session, draft.mechanism_id) \
        if draft.mechanism_id else None
    if draft.mechanism_id and mechanism is None:
        raise DraftProblem("unknown_mechanism")
    year = policy.numbering_year(now)
    group_key = uuid.uuid4().hex[:16] if len(targets) > 1 else None
    # Rooms first: looking them up after adding a request would flush it early, and
    # routing would then be an UPDATE that moves its version past the one on the buttons.
    rooms = {unit_id: await store.active_duty_room(session, unit_id) for unit_id in targets}
    created = Created([], [])
    for unit_id in targets:
        request = AssistanceRequest(
            number=await store.next_number(session, year), group_key=group_key,
            from_unit_id=actor.unit_id, to_unit_id=unit_id,
            mechanism_id=mechanism.id if mechanism else None, urgency=draft.urgency,
            subject=clean.subject, details=clean.details, attachments=list(draft.attachments),
            status=RequestStatus.open, created_by_id=actor.id, created_at=now,
            ack_due_at=ack_deadline(now, draft.urgency.value, policy.ack_minutes),
            reply_due_at=draft.reply_due_at, submission_key=draft.submission_key,
        )
        request.events = []
        request.from_unit, request.to_unit = units[actor.unit_id], units[unit_id]
        request.mechanism, request.created_by = mechanism, actor
        session.add(request)
        store.add_event(request, "created", actor=actor, now=now, to_status=RequestStatus.open)
        await audit(session, "request.create", actor=actor, subject_type="request",
                    subject_id=request.number, to_unit=units[unit_id].code,
                    urgency=draft.urgency.value, group=group_key)
        told = await route(session, request, now=now, policy=policy, room=rooms[unit_id])
        if told is not None:
            created.undelivered.append((request, told))
        created.requests.append(request)
    await session.flush()
    return created


_LOOK_UP: Any = object()


async def route(
    session: AsyncSession, request: AssistanceRequest, *, now: datetime, policy: Policy,
    room: DutyRoom | None = _LOOK_UP,
) -> int | None:
    """Put the request in the target unit's duty room (returns None); without one, tell
    the unit's linked liaisons privately, leave it undelivered, and return how many."""
    if room is _LOOK_UP:
        room = await store.active_duty_room(session, request.to_unit.id)
    if room is not None and room.chat_id is not None:
        tr = Translator(policy.language)
        tz = render.room_zone(policy, room, request.to_unit)
        key = _key(request, "route", f"room{room.id}")
        request.routed_at, request.route_key = now, key
        await session.flush()  # the id and version the buttons carry are final now
        await enqueue(session, chat_id=room.chat_id, kind="request", dedup_key=key,
                      payload=render.card_payload(tr, request, tz), now=now)
        await _attachments(session, request, room.chat_id, key, now)
        store.add_event(request, "routed", actor=None, now=now, note=room.title)
        return None
    await session.flush()
    liaisons = await store.linked_liaisons(session, request.to_unit.id)
    for liaison, chat_id in liaisons:
        tr, tz = await _liaison_reading(session, liaison, request, policy)
        key = _key(request, "liaison", liaison.id)
        await enqueue(session, chat_id=chat_id, kind="request", dedup_key=key,
                      payload=html_message(render.no_room_text(tr, request, tz),
                                             render.buttons(tr, request)), now=now)
        await _attachments(session, request, chat_id, key, now)
    store.add_event(request, "undelivered", actor=None, now=now,
                    note=", ".join(liaison.name for liaison, _ in liaisons) or None)
    return len(liaisons)


async def _attachments(
    session: AsyncSession, request: AssistanceRequest, chat_id: int, key: str, now: datetime,
) -> None:
    for index, attachment in enumerate(request.attachments or []):
        method, payload = render.attachment_message(attachment, request.number)
        await enqueue(
            session, chat_id=chat_id, kind="request_attachment", method=method,
            dedup_key=f"{key}:att{index}", reply_to_key=key, now=now, payload=payload,
        )


# --------------------------------------------------------------------------- state changes


@dataclass
class Outcome:
    verdict: Verdict
    request: AssistanceRequest | None = None
    first: RequestEvent | None = None  # what made the button stale
    new_request: AssistanceRequest | None = None  # the transferred copy
    problem: str | None = None
    # After a change: how many liaisons' copies were updated; None when a duty room's was.
    liaisons_told: int | None = None


async def check_press(
    session: AsyncSession, press: Press, *, actor: User,
) -> Outcome:
    """Whether this press could act now, without changing anything (for prompts)."""
    request = await store.load_request(session, request_id=press.request_id)
    return _judge(request, press, actor)


def _judge(request: AssistanceRequest | None, press: Press, actor: User) -> Outcome:
    if request is None:
        return Outcome(Verdict.not_found)
    verdict = press_verdict(press, actor.role, actor.unit_id, from_unit_id=request.from_unit_id,
                            to_unit_id=request.to_unit_id, status=request.status,
                            version=request.version)
    if verdict is Verdict.stale and not rules.allowed(press.action, request.status):
        # Someone moved it on: say who, and what it is now.
        return Outcome(verdict, request, render.last_change(request))
    return Outcome(verdict, request)


async def act_on_request(
    session: AsyncSession, press: Press, *, actor: User, now: datetime, policy: Policy,
    note: str | None = None, transfer_to: Unit | None = None, chat_id: int | None = None,
) -> Outcome:
    """Apply one press: locked, checked against the version on the button, recorded,
    and told to the other side. Two presses at once: the second gets `stale` and the
    event of the first."""
    request = await store.load_request(session, request_id=press.request_id, for_update=True)
    verdict = _judge(request, press, actor)
    if verdict.verdict is not Verdict.done:
        return verdict
    assert request is not None
    action = press.action
    note = rules.clean_block(note) or None
    if problem := action_problem(action, note, transfer_to_id=transfer_to.id if transfer_to
                                 else None, from_unit_id=request.from_unit_id,
                                 to_unit_id=request.to_unit_id):
        return Outcome(Verdict.invalid, request, problem=problem)
    before = request.status
    after = rules.RESULTING_STATUS[action]
    request.status = after
    if action is not Action.cancel and request.acknowledged_at is None:
        request.acknowledged_at = now
    if action is Action.complete:
        request.completed_at, request.result = now, note
    new_request: AssistanceRequest | None = None
    if action is Action.transfer:
        assert transfer_to is not None
        new_request = await _transfer(session, request, transfer_to, actor=actor, now=now,
                                      policy=policy, note=note)
        request.transferred_to_id = new_request.id
        request.transferred_to = new_request
    event_note = note
    if action is Action.transfer and transfer_to is not None and new_request is not None:
        event_note = f"→ {transfer_to.name} {new_request.number}" + (f" · {note}" if note else "")
    store.add_event(request, action.value, actor=actor, now=now, from_status=before,
                    to_status=after, note=event_note)
    # Without a row lock (none on SQLite, which serialises writers instead) a concurrent
    # change surfaces here as StaleDataError, from the version on the row.
    await session.flush()
    await audit(session, f"request.{action.value}", actor=actor, chat_id=chat_id,
                subject_type="request", subject_id=request.number, status=after.value,
                version=request.version, transferred_to=new_request.number if new_request
                else None)
    told = await notify_change(session, request, actor=actor, now=now, policy=policy)
    return Outcome(Verdict.done, request, new_request=new_request, liaisons_told=told)


async def _transfer(
    session: AsyncSession, request: AssistanceRequest, unit: Unit, *, actor: User,
    now: datetime, policy: Policy, note: str | None,
) -> AssistanceRequest:
    """The same request, numbered anew, to another unit, with its own deadlines."""
    copy = AssistanceRequest(
        number=await store.next_number(session, policy.numbering_year(now)),
        group_key=request.group_key or uuid.uuid4().hex[:16],
        from_unit_id=request.from_unit_id, to_unit_id=unit.id,
        mechanism_id=request.mechanism_id, urgency=request.urgency, subject=request.subject,
        details=request.details, attachments=list(request.attachments or []),
        status=RequestStatus.open, created_by_id=request.created_by_id, created_at=now,
        ack_due_at=ack_deadline(now, request.urgency.value, policy.ack_minutes),
        reply_due_at=request.reply_due_at,
    )
    if request.group_key is None:
        request.group_key = copy.group_key
    copy.events = []
    copy.from_unit, copy.to_unit, copy.mechanism = request.from_unit, unit, request.mechanism
    copy.created_by = request.created_by
    session.add(copy)
    await session.flush()
    store.add_event(copy, "transferred_in", actor=actor, now=now, to_status=RequestStatus.open,
                    note=f"{request.number} ← {request.to_unit.name}"
                    + (f" · {note}" if note else ""))
    await audit(session, "request.create", actor=actor, subject_type="request",
                subject_id=copy.number, to_unit=unit.code, urgency=copy.urgency.value,
                transferred_from=request.number)
    await route(session, copy, now=now, policy=policy)
    return copy


async def _liaison_reading(session: AsyncSession, liaison: Liaison, request: AssistanceRequest,
                           policy: Policy) -> tuple[Translator, ZoneInfo]:
    """The language and time zone a liaison told privately reads a request in."""
    reader = await store.liaison_reader(session, liaison)
    tz = render.user_zone(policy, reader) if reader else \
        render.room_zone(policy, None, request.to_unit)
    return render.user_translator(policy, reader), tz


async def _update_liaison_cards(session: AsyncSession, request: AssistanceRequest, *,
                                now: datetime, policy: Policy) -> int:
    """A request no duty room holds: bring the copies its liaisons were sent up to
    date (state, and no buttons once final); returns how many were."""
    updated = 0
    for liaison, _ in await store.linked_liaisons(session, request.to_unit_id):
        key = _key(request, "liaison", liaison.id)
        if await get_message(session, key) is None:
            continue
        tr, tz = await _liaison_reading(session, liaison, request, policy)
        await enqueue_edit(session, reply_to_key=key, now=now,
                           dedup_key=_key(request, "state", f"v{request.version}", "liaison",
                                          liaison.id),
                           payload=render.card_payload(tr, request, tz))
        updated += 1
    return updated


async def notify_change(
    session: AsyncSession, request: AssistanceRequest, *, actor: User | None, now: datetime,
    policy: Policy,
) -> int | None:
    """Edit the duty room's card (or, without a room, the liaisons' copies) to the current
    state; tell the requester (unless they are the one acting: they get the answer
    directly). Returns how many liaisons' copies were updated, None when a room's was."""
    version = request.version
    told: int | None = None
    if request.route_key is None:
        told = await _update_liaison_cards(session, request, now=now, policy=policy)
    else:
        room = await store.active_duty_room(session, request.to_unit_id)
        tz = render.room_zone(policy, room, request.to_unit)
        await enqueue_edit(
            session, reply_to_key=request.route_key,
            dedup_key=_key(request, "state", f"v{version}", "room"),
            payload=render.card_payload(Translator(policy.language), request, tz), now=now,
        )
        reminder = _key(request, "escalate", "remind_room")
        if await get_message(session, reminder) is not None:
            # The overdue reminder carries buttons too: keep them current (or remove them).
            markup = render.buttons(Translator(policy.language), request)
            await enqueue_edit(
                session, reply_to_key=reminder, method="editMessageReplyMarkup",
                dedup_key=_key(request, "state", f"v{version}", "remind"), now=now,
                payload={"reply_markup": markup} if markup else {},
            )
    requester = request.created_by
    if requester is not None and (actor is None or requester.id != actor.id):
        tr, tz = render.user_translator(policy, requester), render.user_zone(policy, requester)
        await enqueue(session, chat_id=requester.telegram_id, kind="request_state",
                      dedup_key=_key(request, "state", f"v{version}", "requester"),
                      payload=html_message(render.changed_text(tr, request, tz)), now=now)
    return told


# --------------------------------------------------------------------------- escalations


async def remind_room(
    session: AsyncSession, request: AssistanceRequest, *, now: datetime, policy: Policy,
    late: bool = False,
) -> bool:
    """The acknowledgement deadline passed: remind the duty room (routing the request
    first if the unit has registered a room since). False when nothing was due."""
    if request.status is not RequestStatus.open:
        return False
    if request.route_key is None:
        room = await store.active_duty_room(session, request.to_unit_id)
        if room is not None:  # registered since: deliver it now, then remind
            await route(session, request, now=now, policy=policy, room=room)
    room = await store.active_duty_room(session, request.to_unit_id)
    if request.route_key is not None and room is not None and room.chat_id is not None:
        tr = Translator(policy.language)
        await enqueue(session, chat_id=room.chat_id, kind="request_escalation",
                      dedup_key=_key(request, "escalate", "remind_room"),
                      reply_to_key=request.route_key, now=now,
                      payload=html_message(render.remind_room_text(tr, request, now,
                                                                     late=late),
                                             render.buttons(tr, request)))
        store.add_event(request, "reminded", actor=None, now=now)
    else:
        # Still no duty room: remind the liaisons who were told instead.
        liaisons = await store.linked_liaisons(session, request.to_unit_id)
        for liaison, chat_id in liaisons:
            reader = await store.liaison_reader(session, liaison)
            reader_tr = render.user_translator(policy, reader)
            await enqueue(session, chat_id=chat_id, kind="request_escalation", now=now,
                          dedup_key=_key(request, "escalate", "remind_liaison", liaison.id),
                          payload=html_message(render.remind_room_text(reader_tr, request, now),
                                                 render.buttons(reader_tr, request)))
        store.add_event(request, "reminded_liaisons", actor=None, now=now,
                        note=", ".join(liaison.name for liaison, _ in liaisons) or None)
    await audit(session, "request.remind_room", subject_type="request",
                subject_id=request.number, late=late, routed=request.route_key is not None)
    return True


async def alert_coordinators(
    session: AsyncSession, request: AssistanceRequest, *, now: datetime, policy: Policy,
    late: bool = False,
) -> bool:
    """Twice the deadline and still no answer: alert the zone's coordinators privately."""
    if request.status is not RequestStatus.open:
        return False
    coordinators = await store.zone_coordinators(session, request.to_unit_id)
    for coordinator in coordinators:
        tr, tz = render.user_translator(policy, coordinator), render.user_zone(policy, coordinator)
        text = render.alert_coordinators_text(tr, request, tz, now, late=late)
        await enqueue(session, chat_id=coordinator.telegram_id, kind="request_escalation",
                      dedup_key=_key(request, "escalate", "coordinators", f"u{coordinator.id}"),
                      payload=html_message(text, render.buttons(tr, request)), now=now)
    store.add_event(request, "escalated", actor=None, now=now,
                    note=", ".join(render.person(c) for c in coordinators) or None)
    await audit(session, "request.alert_coordinators", subject_type="request",
                subject_id=request.number, coordinators=[c.telegram_id for c in coordinators],
                late=late)
    return True


async def flag_reply_overdue(
    session: AsyncSession, request: AssistanceRequest, *, now: datetime, policy: Policy,
    late: bool = False,
) -> bool:
    """The reply deadline passed before completion: tell both sides."""
    if request.status not in rules.ACTIVE_STATUSES or request.reply_due_at is None:
        return False
    room = await store.active_duty_room(session, request.to_unit_id)
    if request.route_key is not None and room is not None and room.chat_id is not None:
        tr, tz = Translator(policy.language), render.room_zone(policy, room, request.to_unit)
        await enqueue(session, chat_id=room.chat_id, kind="request_escalation",
                      dedup_key=_key(request, "reply_overdue", "room"),
                      reply_to_key=request.route_key, now=now,
                      payload=html_message(render.reply_overdue_room_text(tr, request, tz)))
    requester = request.created_by
    if requester is not None:
        tr, tz = render.user_translator(policy, requester), render.user_zone(policy, requester)
        await enqueue(session, chat_id=requester.telegram_id, kind="request_escalation",
                      dedup_key=_key(request, "reply_overdue", "requester"),
                      payload=html_message(render.reply_overdue_requester_text(tr, request,
                                                                                 tz)), now=now)
    store.add_event(request, "reply_overdue", actor=None, now=now)
    await audit(session, "request.reply_overdue", subject_type="request",
                subject_id=request.number, late=late)
    return True
