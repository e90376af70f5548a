"""Assistance requests: numbering, creation and routing, state changes, escalations,
lists, exports and statistics, as named queries.

Every change writes its RequestEvent, its AuditEntry and the outbox rows that tell
everyone else, in the caller's unit of work: committed together or not at all.
Texts for other people are rendered here from the catalogue (in the reader's language
and time zone), because the outbox row must hold them when the transaction commits.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from html import escape
from typing import Any

from sqlalchemy import Select, func, inspect, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core import requests as rules
from core.clock import time_zone
from core.enums import RequestStatus, Role, Urgency
from core.normalize import normalize_many
from core.requests import Action, Filters, Period, Press, Scope, StatsRow
from core.schedule import DEFAULT_ACK_DEADLINES, ack_deadline
from i18n import Translator
from storage.access import audit
from storage.db import AlreadySubmitted
from storage.models import (
    AssistanceRequest,
    DutyRoom,
    Liaison,
    Mechanism,
    RequestCounter,
    RequestEvent,
    Unit,
    User,
    ZoneMembership,
)
from storage.outbox import enqueue, enqueue_edit, get_message
from views import requests as render

PAGE_SIZE = 8
EXPORT_LIMIT = 20_000


@dataclass(frozen=True)
class Policy:
    """What the settings decide: acknowledgement deadlines, default zone and language."""

    ack_minutes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_ACK_DEADLINES))
    timezone: str = "Asia/Shanghai"
    language: str = "zh-Hans"  # duty rooms are groups with no language of their own

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls(
            ack_minutes={
                Urgency.flash.value: settings.ack_deadline_flash_minutes,
                Urgency.urgent.value: settings.ack_deadline_urgent_minutes,
                Urgency.routine.value: settings.ack_deadline_routine_minutes,
            },
            timezone=settings.bot_timezone,
            language=settings.default_language,
        )


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# --------------------------------------------------------------------------- loading

_FULL = (
    selectinload(AssistanceRequest.from_unit),
    selectinload(AssistanceRequest.to_unit),
    selectinload(AssistanceRequest.mechanism),
    selectinload(AssistanceRequest.created_by).selectinload(User.unit),
    selectinload(AssistanceRequest.events).selectinload(RequestEvent.actor),
    selectinload(AssistanceRequest.transferred_to).selectinload(AssistanceRequest.to_unit),
)


async def load_request(
    session: AsyncSession, *, request_id: int | None = None, number: str | None = None,
    for_update: bool = False,
) -> AssistanceRequest | None:
    """One request with its units, mechanism, creator and history loaded."""
    statement = select(AssistanceRequest).options(*_FULL)
    if request_id is not None:
        statement = statement.where(AssistanceRequest.id == request_id)
    elif number is not None:
        statement = statement.where(AssistanceRequest.number == number)
    else:
        raise ValueError("request_id or number is required")
    if for_update:
        statement = statement.with_for_update(of=AssistanceRequest)
    statement = statement.execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def mechanisms(session: AsyncSession) -> list[Mechanism]:
    return list((await session.execute(select(Mechanism).order_by(Mechanism.id))).scalars())


# Folded names by the raw names they come from: content-addressed, so never stale, and
# a directory of thousands of units is folded once per process, not once per lookup.
_folded: dict[tuple[str, ...], frozenset[str]] = {}


def _names(item: Unit | Mechanism) -> frozenset[str]:
    """Every name of a unit or mechanism, folded (NFKC, Simplified, case)."""
    raw = [item.name, item.code, *(item.aliases or []), item.english or ""]
    if isinstance(item, Unit):
        raw += [item.short_name, item.abbreviation or ""]
    key = tuple(raw)
    folded = _folded.get(key)
    if folded is None:
        folded = frozenset(name for name in normalize_many([n for n in raw if n]) if name)
        if len(_folded) > 50_000:
            _folded.clear()
        _folded[key] = folded
    return folded


async def find_mechanism(session: AsyncSession, text: str) -> Mechanism | None:
    """By name, code, English name or alias, ignoring case and width."""
    wanted = rules.fold(text)
    if not wanted:
        return None
    for mechanism in await mechanisms(session):
        if wanted in _names(mechanism):
            return mechanism
    return None


async def mechanism_meant(session: AsyncSession, word: str, *, before_urgency: bool
                          ) -> list[Mechanism] | None:
    """When `word`, in the one-shot form's mechanism place, names no mechanism but was
    meant as one (rules.meant_as_mechanism): every mechanism, to list. Else None."""
    found = await mechanisms(session)
    names = [name for mechanism in found for name in _names(mechanism)]
    return found if rules.meant_as_mechanism(word, names, before_urgency=before_urgency) \
        else None


async def resolve_units(
    session: AsyncSession, query: str, *, limit: int = 8, exact_only: bool = False
) -> list[Unit]:
    """Units a typed name means: exact names (full, short, abbreviation, code, English,
    alias) first; failing that (unless `exact_only`), units with a name containing it."""
    wanted = rules.fold(query)
    if not wanted:
        return []
    units = list((await session.execute(select(Unit).order_by(Unit.level, Unit.id))).scalars())
    exact = [unit for unit in units if wanted in _names(unit)]
    if exact or exact_only:
        return exact[:limit]
    return [unit for unit in units if any(wanted in name for name in _names(unit))][:limit]


async def peer_units(session: AsyncSession, unit_id: int | None, *, limit: int = 12) -> list[Unit]:
    """Units to offer as targets: those sharing a zone with `unit_id` (provinces first);
    province-level units when there are none."""
    statement = select(Unit).order_by(Unit.level, Unit.id)
    if unit_id is not None:
        zones = select(ZoneMembership.zone_id).where(ZoneMembership.unit_id == unit_id)
        peers = select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(zones))
        found = list((await session.execute(
            statement.where(Unit.id.in_(peers), Unit.id != unit_id).limit(limit))).scalars())
        if found:
            return found
    return list((await session.execute(
        statement.where(Unit.parent_id.is_(None), Unit.id != (unit_id or 0)).limit(limit)
    )).scalars())


async def active_duty_room(session: AsyncSession, unit_id: int) -> DutyRoom | None:
    return (
        await session.execute(
            select(DutyRoom)
            .where(DutyRoom.unit_id == unit_id, DutyRoom.active.is_(True),
                   DutyRoom.chat_id.is_not(None))
            .order_by(DutyRoom.id)
        )
    ).scalars().first()


async def linked_liaisons(session: AsyncSession, unit_id: int) -> list[Liaison]:
    """The unit's active liaisons who have a Telegram account, one per account."""
    rows = await session.execute(
        select(Liaison)
        .where(Liaison.unit_id == unit_id, Liaison.active.is_(True),
               Liaison.telegram_user_id.is_not(None))
        .order_by(Liaison.role, Liaison.id)
    )
    seen: set[int] = set()
    found: list[Liaison] = []
    for liaison in rows.scalars():
        if liaison.telegram_user_id not in seen:
            seen.add(liaison.telegram_user_id)  # type: ignore[arg-type]
            found.append(liaison)
    return found


async def zone_coordinators(session: AsyncSession, unit_id: int) -> list[User]:
    """Active coordinators (and administrators) of units sharing a zone with `unit_id`;
    every active coordinator when the unit's zones have none."""
    zones = select(ZoneMembership.zone_id).where(ZoneMembership.unit_id == unit_id)
    peers = select(ZoneMembership.unit_id).where(ZoneMembership.zone_id.in_(zones))
    senior = [Role.coordinator, Role.admin]
    base = (
        select(User).options(selectinload(User.unit))
        .where(User.active.is_(True), User.role.in_(senior)).order_by(User.id)
    )
    found = list((await session.execute(
        base.where(or_(User.unit_id.in_(peers), User.unit_id == unit_id))
    )).scalars())
    if not found:
        found = list((await session.execute(
            base.where(User.role == Role.coordinator)
        )).scalars()) or list((await session.execute(base)).scalars())
    return found


# --------------------------------------------------------------------------- numbering


async def next_number(session: AsyncSession, year: int) -> str:
    """The next readable number of the year, atomically (concurrent creators never
    share one): an upsert that increments the year's counter and returns it."""
    statement = _insert(session)(RequestCounter).values(year=year, last=1)
    statement = statement.on_conflict_do_update(
        index_elements=["year"], set_={"last": RequestCounter.last + 1}
    ).returning(RequestCounter.last)
    sequence = (await session.execute(statement)).scalar_one()
    return rules.format_number(year, sequence)


async def number_of_sequence(session: AsyncSession, sequence: int) -> str | None:
    """The newest request numbered `sequence` in its year (what a /requests button shows)."""
    suffix = rules.format_number(0, sequence).rsplit("-", 1)[1]
    return (await session.execute(
        select(AssistanceRequest.number)
        .where(AssistanceRequest.number.like(f"{rules.NUMBER_PREFIX}-%-{suffix}"))
        .order_by(AssistanceRequest.created_at.desc(), AssistanceRequest.id.desc()).limit(1)
    )).scalar_one_or_none()


# --------------------------------------------------------------------------- rendering helpers


def room_zone(policy: Policy, room: DutyRoom | None, unit: Unit | None) -> Any:
    return time_zone((room.timezone if room else None) or (unit.timezone if unit else None),
                      policy.timezone)


def user_zone(policy: Policy, user: User | None) -> Any:
    """The time zone of the user's unit (when loaded), else the configured one."""
    unit = user.unit if user is not None and "unit" not in inspect(user).unloaded else None
    return time_zone(unit.timezone if unit else None, policy.timezone)


def user_translator(policy: Policy, user: User | None) -> Translator:
    return Translator((user.language if user else None) or policy.language)


def buttons(tr: Translator, request: AssistanceRequest, *, include_cancel: bool = False
            ) -> dict[str, Any] | None:
    """The inline keyboard of a request in its current state (None when final)."""
    candidates = [*rules.TARGET_ACTIONS, Action.cancel] if include_cancel \
        else list(rules.TARGET_ACTIONS)
    actions = [a for a in candidates if rules.allowed(a, request.status)]
    if not actions:
        return None
    keys = [{"text": tr(f"requests.button.{a.value}"),
             "callback_data": rules.action_data(a, request.id, request.version)}
            for a in actions]
    return {"inline_keyboard": [keys[i:i + 2] for i in range(0, len(keys), 2)]}


def card_payload(
    tr: Translator, request: AssistanceRequest, tz: Any, *, with_buttons: bool = True,
    include_cancel: bool = False,
) -> dict[str, Any]:
    """The card as Bot API parameters; no keyboard once final (an edit without one
    removes the old buttons)."""
    payload: dict[str, Any] = {
        "text": render.card(tr, request, tz),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }
    markup = buttons(tr, request, include_cancel=include_cancel) if with_buttons else None
    if markup:
        payload["reply_markup"] = markup
    return payload


def message(text: str, markup: dict[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text, "parse_mode": "HTML",
                               "link_preview_options": {"is_disabled": True}}
    if markup:
        payload["reply_markup"] = markup
    return payload


def _key(request: AssistanceRequest, *parts: object) -> str:
    return ":".join(["request", request.number, *map(str, parts)])


async def _event(
    session: AsyncSession, request: AssistanceRequest, action: str, *, actor: User | None,
    now: datetime, from_status: RequestStatus | None = None,
    to_status: RequestStatus | None = None, note: str | None = None,
) -> RequestEvent:
    event = RequestEvent(
        request_id=request.id, at=now, actor_id=actor.id if actor else None, action=action,
        from_status=from_status.value if from_status else None,
        to_status=to_status.value if to_status else None, note=note,
    )
    event.actor = actor
    request.events.append(event)
    return event


# --------------------------------------------------------------------------- creation


@dataclass
class Draft:
    """What the requester decided; validated by the handler and again here."""

    target_unit_ids: list[int]
    mechanism_id: int | None
    urgency: Urgency
    subject: str
    details: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_due_at: datetime | None = None
    # The draft's identity (handlers: made when the flow starts); stored with each request.
    submission_key: str | None = None


class DraftProblem(Exception):
    """The draft cannot be stored; `code` names a catalogue message."""

    def __init__(self, code: str, **values: Any) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


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
    if draft.submission_key and (numbers := await submitted_numbers(
            session, draft.submission_key)):
        raise AlreadySubmitted(numbers)
    subject = rules.clean_line(draft.subject)
    details = rules.clean_block(draft.details)
    if problem := rules.text_problem(subject, rules.SUBJECT_MAX):
        raise DraftProblem(f"subject_{problem.value}", limit=rules.SUBJECT_MAX)
    if len(details) > rules.DETAILS_MAX:
        raise DraftProblem("details_too_long", limit=rules.DETAILS_MAX)
    targets = list(dict.fromkeys(draft.target_unit_ids))
    if not targets:
        raise DraftProblem("no_target")
    if len(targets) > rules.TARGETS_MAX:
        raise DraftProblem("too_many_targets", limit=rules.TARGETS_MAX)
    if actor.unit_id is None:
        raise DraftProblem("no_own_unit")
    if actor.unit_id in targets:
        raise DraftProblem("own_unit_target")
    if len(draft.attachments) > rules.ATTACHMENTS_MAX:
        raise DraftProblem("too_many_attachments", limit=rules.ATTACHMENTS_MAX)
    if draft.reply_due_at is not None and draft.reply_due_at <= now:
        raise DraftProblem("deadline_past")
    units = {u.id: u for u in (await session.execute(
        select(Unit).where(Unit.id.in_([*targets, actor.unit_id])))).scalars()}
    if any(unit_id not in units for unit_id in targets):
        raise DraftProblem("unknown_target")
    mechanism = await session.get(Mechanism, draft.mechanism_id) if draft.mechanism_id else None
    if draft.mechanism_id and mechanism is None:
        raise DraftProblem("unknown_mechanism")
    year = now.astimezone(time_zone(None, policy.timezone)).year
    group_key = uuid.uuid4().hex[:16] if len(targets) > 1 else None
    # Rooms first: looking them up after adding a request would flush it early, and
    # routing would then be an UPDATE that moves its version past the one on the buttons.
    rooms = {unit_id: await active_duty_room(session, unit_id) for unit_id in targets}
    created = Created([], [])
    for unit_id in targets:
        request = AssistanceRequest(
            number=await next_number(session, year), group_key=group_key,
            from_unit_id=actor.unit_id, to_unit_id=unit_id,
            mechanism_id=mechanism.id if mechanism else None, urgency=draft.urgency,
            subject=subject, details=details, attachments=list(draft.attachments),
            status=RequestStatus.open, created_by_id=actor.id, created_at=now,
            ack_due_at=ack_deadline(now, draft.urgency.value, policy.ack_minutes),
            reply_due_at=draft.reply_due_at, submission_key=draft.submission_key,
        )
        request.events = []
        request.from_unit, request.to_unit = units[actor.unit_id], units[unit_id]
        request.mechanism, request.created_by = mechanism, actor
        session.add(request)
        await _event(session, request, "created", actor=actor, now=now,
                     to_status=RequestStatus.open)
        await audit(session, "request.create", actor=actor, subject_type="request",
                    subject_id=request.number, to_unit=units[unit_id].code,
                    urgency=draft.urgency.value, group=group_key)
        told = await route(session, request, now=now, policy=policy, room=rooms[unit_id])
        if told is not None:
            created.undelivered.append((request, told))
        created.requests.append(request)
    await session.flush()
    return created


async def submitted_numbers(session: AsyncSession, key: str) -> list[str]:
    """The numbers of the requests stored from the draft whose identity is `key`."""
    return list((await session.execute(
        select(AssistanceRequest.number).where(AssistanceRequest.submission_key == key)
        .order_by(AssistanceRequest.id))).scalars())


_LOOK_UP: Any = object()


async def route(
    session: AsyncSession, request: AssistanceRequest, *, now: datetime, policy: Policy,
    room: DutyRoom | None = _LOOK_UP,
) -> int | None:
    """Put the request in the target unit's duty room (returns None); without one, tell
    the unit's linked liaisons privately, leave it undelivered, and return how many."""
    if room is _LOOK_UP:
        room = await active_duty_room(session, request.to_unit.id)
    if room is not None and room.chat_id is not None:
        tr = Translator(policy.language)
        tz = room_zone(policy, room, request.to_unit)
        key = _key(request, "route", f"room{room.id}")
        request.routed_at, request.route_key = now, key
        await session.flush()  # the id and version the buttons carry are final now
        await enqueue(session, chat_id=room.chat_id, kind="request", dedup_key=key,
                      payload=card_payload(tr, request, tz), now=now)
        await _attachments(session, request, room.chat_id, key, now)
        await _event(session, request, "routed", actor=None, now=now, note=room.title)
        return None
    await session.flush()
    liaisons = await linked_liaisons(session, request.to_unit.id)
    for liaison in liaisons:
        tr, tz = await _liaison_reading(session, liaison, request, policy)
        text = tr("requests.notice.no_room_liaison", unit=_h(request.to_unit.name)) + "\n\n" + \
            render.card(tr, request, tz)
        key = _key(request, "liaison", liaison.id)
        await enqueue(session, chat_id=liaison.telegram_user_id, kind="request", dedup_key=key,
                      payload=message(text, buttons(tr, request)), now=now)
        await _attachments(session, request, liaison.telegram_user_id, key, now)  # type: ignore[arg-type]
    await _event(session, request, "undelivered", actor=None, now=now,
                 note=", ".join(liaison.name for liaison in liaisons) or None)
    return len(liaisons)


def _h(text: str) -> str:
    return escape(text)


async def _attachments(
    session: AsyncSession, request: AssistanceRequest, chat_id: int, key: str, now: datetime,
) -> None:
    for index, attachment in enumerate(request.attachments or []):
        kind = attachment.get("type")
        method, field_name = ("sendPhoto", "photo") if kind == "photo" else \
            ("sendDocument", "document")
        await enqueue(
            session, chat_id=chat_id, kind="request_attachment", method=method,
            dedup_key=f"{key}:att{index}", reply_to_key=key, now=now,
            payload={field_name: attachment["file_id"], "caption": request.number},
        )


# --------------------------------------------------------------------------- state changes


class Verdict(StrEnum):
    done = "done"
    not_found = "not_found"
    not_allowed = "not_allowed"  # not their unit
    stale = "stale"  # someone acted first, or the button is from an older state
    invalid = "invalid"  # e.g. transfer to the same unit


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
    request = await load_request(session, request_id=press.request_id)
    return _judge(request, press, actor)


def _judge(request: AssistanceRequest | None, press: Press, actor: User) -> Outcome:
    if request is None:
        return Outcome(Verdict.not_found)
    if not rules.may_act(press.action, actor.role, actor.unit_id,
                         from_unit_id=request.from_unit_id, to_unit_id=request.to_unit_id):
        return Outcome(Verdict.not_allowed, request)
    if not rules.allowed(press.action, request.status):
        # Someone moved it on: say who, and what it is now.
        return Outcome(Verdict.stale, request, render.last_change(request))
    if request.version != press.version:
        return Outcome(Verdict.stale, request)
    return Outcome(Verdict.done, request)


async def act_on_request(
    session: AsyncSession, press: Press, *, actor: User, now: datetime, policy: Policy,
    note: str | None = None, transfer_to: Unit | None = None, chat_id: int | None = None,
) -> Outcome:
    """Apply one press: locked, checked against the version on the button, recorded,
    and told to the other side. Two presses at once: the second gets `stale` and the
    event of the first."""
    request = await load_request(session, request_id=press.request_id, for_update=True)
    verdict = _judge(request, press, actor)
    if verdict.verdict is not Verdict.done:
        return verdict
    assert request is not None
    action = press.action
    note = rules.clean_block(note) or None
    if action in rules.NEEDS_NOTE and not note:
        return Outcome(Verdict.invalid, request, problem="note_empty")
    if note and len(note) > rules.NOTE_MAX:
        return Outcome(Verdict.invalid, request, problem="note_too_long")
    if action in rules.NEEDS_UNIT:
        if transfer_to is None:
            return Outcome(Verdict.invalid, request, problem="transfer_unit_missing")
        if transfer_to.id in (request.to_unit_id, request.from_unit_id):
            return Outcome(Verdict.invalid, request, problem="transfer_same_unit")
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
    await _event(session, request, action.value, actor=actor, now=now, from_status=before,
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
    year = now.astimezone(time_zone(None, policy.timezone)).year
    copy = AssistanceRequest(
        number=await next_number(session, year),
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
    await _event(session, copy, "transferred_in", actor=actor, now=now,
                 to_status=RequestStatus.open,
                 note=f"{request.number} ← {request.to_unit.name}" + (f" · {note}" if note else ""))
    await audit(session, "request.create", actor=actor, subject_type="request",
                subject_id=copy.number, to_unit=unit.code, urgency=copy.urgency.value,
                transferred_from=request.number)
    await route(session, copy, now=now, policy=policy)
    return copy


async def _liaison_reading(session: AsyncSession, liaison: Liaison, request: AssistanceRequest,
                           policy: Policy) -> tuple[Translator, Any]:
    """The language and time zone a liaison told privately reads a request in."""
    reader = (await session.execute(
        select(User).options(selectinload(User.unit))
        .where(User.telegram_id == liaison.telegram_user_id))).scalar_one_or_none()
    tz = user_zone(policy, reader) if reader else time_zone(request.to_unit.timezone,
                                                              policy.timezone)
    return user_translator(policy, reader), tz


async def _update_liaison_cards(session: AsyncSession, request: AssistanceRequest, *,
                                now: datetime, policy: Policy) -> int:
    """A request no duty room holds: bring the copies its liaisons were sent up to
    date (state, and no buttons once final); returns how many were."""
    updated = 0
    for liaison in await linked_liaisons(session, request.to_unit_id):
        key = _key(request, "liaison", liaison.id)
        if await get_message(session, key) is None:
            continue
        tr, tz = await _liaison_reading(session, liaison, request, policy)
        await enqueue_edit(session, reply_to_key=key, now=now,
                           dedup_key=_key(request, "state", f"v{request.version}", "liaison",
                                          liaison.id),
                           payload=card_payload(tr, request, tz))
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
        room = await active_duty_room(session, request.to_unit_id)
        tz = room_zone(policy, room, request.to_unit)
        await enqueue_edit(
            session, reply_to_key=request.route_key,
            dedup_key=_key(request, "state", f"v{version}", "room"),
            payload=card_payload(Translator(policy.language), request, tz), now=now,
        )
        reminder = _key(request, "escalate", "remind_room")
        if await get_message(session, reminder) is not None:
            # The overdue reminder carries buttons too: keep them current (or remove them).
            markup = buttons(Translator(policy.language), request)
            await enqueue_edit(
                session, reply_to_key=reminder, method="editMessageReplyMarkup",
                dedup_key=_key(request, "state", f"v{version}", "remind"), now=now,
                payload={"reply_markup": markup} if markup else {},
            )
    requester = request.created_by
    if requester is not None and (actor is None or requester.id != actor.id):
        tr, tz = user_translator(policy, requester), user_zone(policy, requester)
        text = tr("requests.notice.changed", number=request.number,
                  subject=_h(request.subject), unit=_h(request.to_unit.name))
        text += "\n" + "\n".join(render.status_lines(tr, request, tz))
        await enqueue(session, chat_id=requester.telegram_id, kind="request_state",
                      dedup_key=_key(request, "state", f"v{version}", "requester"),
                      payload=message(text), now=now)
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
        room = await active_duty_room(session, request.to_unit_id)
        if room is not None:  # registered since: deliver it now, then remind
            await route(session, request, now=now, policy=policy, room=room)
    tr = Translator(policy.language)
    text = tr("requests.notice.remind_room", number=request.number,
              urgency=render.urgency_label(tr, request.urgency), subject=_h(request.subject),
              source=_h(request.from_unit.name),
              elapsed=render.duration(tr, now - request.created_at))
    if late:
        text += "\n" + tr("requests.notice.late")
    room = await active_duty_room(session, request.to_unit_id)
    if request.route_key is not None and room is not None and room.chat_id is not None:
        await enqueue(session, chat_id=room.chat_id, kind="request_escalation",
                      dedup_key=_key(request, "escalate", "remind_room"),
                      reply_to_key=request.route_key, now=now,
                      payload=message(text, buttons(tr, request)))
        await _event(session, request, "reminded", actor=None, now=now)
    else:
        # Still no duty room: remind the liaisons who were told instead.
        liaisons = await linked_liaisons(session, request.to_unit_id)
        for liaison in liaisons:
            reader = (await session.execute(
                select(User).where(User.telegram_id == liaison.telegram_user_id)
            )).scalar_one_or_none()
            reader_tr = user_translator(policy, reader)
            reader_text = reader_tr(
                "requests.notice.remind_room", number=request.number,
                urgency=render.urgency_label(reader_tr, request.urgency),
                subject=_h(request.subject), source=_h(request.from_unit.name),
                elapsed=render.duration(reader_tr, now - request.created_at))
            await enqueue(session, chat_id=liaison.telegram_user_id,  # type: ignore[arg-type]
                          kind="request_escalation", now=now,
                          dedup_key=_key(request, "escalate", "remind_liaison", liaison.id),
                          payload=message(reader_text, buttons(reader_tr, request)))
        await _event(session, request, "reminded_liaisons", actor=None, now=now,
                     note=", ".join(liaison.name for liaison in liaisons) or None)
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
    coordinators = await zone_coordinators(session, request.to_unit_id)
    for coordinator in coordinators:
        tr, tz = user_translator(policy, coordinator), user_zone(policy, coordinator)
        text = tr("requests.notice.alert_coordinators", number=request.number,
                  unit=_h(request.to_unit.name),
                  elapsed=render.duration(tr, now - request.created_at))
        if late:
            text += "\n" + tr("requests.notice.late")
        text += "\n\n" + render.card(tr, request, tz)
        await enqueue(session, chat_id=coordinator.telegram_id, kind="request_escalation",
                      dedup_key=_key(request, "escalate", "coordinators", f"u{coordinator.id}"),
                      payload=message(text, buttons(tr, request)), now=now)
    await _event(session, request, "escalated", actor=None, now=now,
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
    room = await active_duty_room(session, request.to_unit_id)
    if request.route_key is not None and room is not None and room.chat_id is not None:
        tr, tz = Translator(policy.language), room_zone(policy, room, request.to_unit)
        text = tr("requests.notice.reply_overdue_room", number=request.number,
                  subject=_h(request.subject), due=render.local_time(request.reply_due_at, tz),
                  source=_h(request.from_unit.name))
        await enqueue(session, chat_id=room.chat_id, kind="request_escalation",
                      dedup_key=_key(request, "reply_overdue", "room"),
                      reply_to_key=request.route_key, now=now,
                      payload=message(text))
    requester = request.created_by
    if requester is not None:
        tr, tz = user_translator(policy, requester), user_zone(policy, requester)
        text = tr("requests.notice.reply_overdue_requester", number=request.number,
                  subject=_h(request.subject), due=render.local_time(request.reply_due_at, tz),
                  unit=_h(request.to_unit.name),
                  status=render.status_label(tr, request.status))
        await enqueue(session, chat_id=requester.telegram_id, kind="request_escalation",
                      dedup_key=_key(request, "reply_overdue", "requester"),
                      payload=message(text), now=now)
    await _event(session, request, "reply_overdue", actor=None, now=now)
    await audit(session, "request.reply_overdue", subject_type="request",
                subject_id=request.number, late=late)
    return True


async def escalation_candidates(
    session: AsyncSession, until: datetime
) -> list[AssistanceRequest]:
    """Requests that may have an escalation due before `until`: open with an
    acknowledgement deadline, or active with a reply deadline, before it."""
    statement = (
        select(AssistanceRequest)
        .where(
            or_(
                (AssistanceRequest.status == RequestStatus.open)
                & (AssistanceRequest.ack_due_at < until),
                AssistanceRequest.status.in_(list(rules.ACTIVE_STATUSES))
                & (AssistanceRequest.reply_due_at < until),
            )
        )
        .order_by(AssistanceRequest.id)
    )
    return list((await session.execute(statement)).scalars())


# --------------------------------------------------------------------------- lists


def _visible(statement: Select[Any], filters: Filters, viewer: User,
             unit_ids: Sequence[int] | None) -> Select[Any]:
    """Members see their unit's incoming and outgoing requests; coordinators see all
    (and narrow to their own unit with `in`/`out`)."""
    R = AssistanceRequest
    own, scope = viewer.unit_id, filters.scope
    if rules.is_coordinator(viewer.role):
        if scope is Scope.incoming and own is not None:
            statement = statement.where(R.to_unit_id == own)
        elif scope is Scope.outgoing and own is not None:
            statement = statement.where(R.from_unit_id == own)
    elif own is None:
        return statement.where(R.id.is_(None))
    elif scope is Scope.incoming:
        statement = statement.where(R.to_unit_id == own)
    elif scope is Scope.outgoing:
        statement = statement.where(R.from_unit_id == own)
    else:
        statement = statement.where(or_(R.to_unit_id == own, R.from_unit_id == own))
    statuses = filters.wanted_statuses()
    if statuses:
        statement = statement.where(R.status.in_(statuses))
    if filters.undelivered:
        statement = statement.where(R.routed_at.is_(None))
    if filters.urgency is not None:
        statement = statement.where(R.urgency == filters.urgency)
    if unit_ids is not None:
        statement = statement.where(or_(R.to_unit_id.in_(unit_ids), R.from_unit_id.in_(unit_ids)))
    if filters.period is not None:
        statement = statement.where(R.created_at >= filters.period.start,
                                    R.created_at < filters.period.end)
    return statement


async def list_requests(
    session: AsyncSession, filters: Filters, *, viewer: User,
    unit_ids: Sequence[int] | None = None, page: int = 0, page_size: int = PAGE_SIZE,
) -> tuple[list[AssistanceRequest], int]:
    """One page of the requests this viewer may see, newest first, and the total."""
    total = (await session.execute(
        _visible(select(func.count(AssistanceRequest.id)), filters, viewer, unit_ids)
    )).scalar_one()
    rows = await session.execute(
        _visible(select(AssistanceRequest), filters, viewer, unit_ids)
        .options(selectinload(AssistanceRequest.from_unit),
                 selectinload(AssistanceRequest.to_unit))
        .order_by(AssistanceRequest.created_at.desc(), AssistanceRequest.id.desc())
        .offset(max(page, 0) * page_size).limit(page_size)
    )
    return list(rows.scalars()), total


async def export_requests(
    session: AsyncSession, filters: Filters, *, viewer: User,
    unit_ids: Sequence[int] | None = None, limit: int = EXPORT_LIMIT,
) -> list[AssistanceRequest]:
    rows = await session.execute(
        _visible(select(AssistanceRequest), filters, viewer, unit_ids)
        .options(*_FULL)
        .order_by(AssistanceRequest.created_at, AssistanceRequest.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def stats_rows(
    session: AsyncSession, period: Period, *, viewer: User, filters: Filters | None = None,
    unit_ids: Sequence[int] | None = None,
) -> list[StatsRow]:
    chosen = dataclasses.replace(filters or Filters(scope=Scope.all), period=period)
    statement = _visible(
        select(AssistanceRequest).options(selectinload(AssistanceRequest.to_unit),
                                          selectinload(AssistanceRequest.mechanism)),
        chosen, viewer, unit_ids,
    )
    return [
        StatsRow(
            mechanism=r.mechanism.name if r.mechanism else None,
            to_unit=r.to_unit.short_name or r.to_unit.name, status=r.status,
            created_at=r.created_at, ack_due_at=r.ack_due_at,
            acknowledged_at=r.acknowledged_at, completed_at=r.completed_at,
            reply_due_at=r.reply_due_at,
        )
        for r in (await session.execute(statement)).scalars()
    ]
