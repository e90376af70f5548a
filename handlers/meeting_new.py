"""/meeting new: the guided flow (handlers/flow.py) a coordinator answers step by step;
its preview, once confirmed, creates the meeting and its invitations."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.plans import meetings as plan
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.enums import MeetingKind
from core.enums import Role
from core.meetings import parse_meeting_kind
from core.schedule import DEFAULT_MEETING_OFFSETS
from core.timeparse import DeadlineError
from handlers import flow
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import confirmation_open
from handlers.common import edit_query_message
from handlers.common import end_draft
from handlers.common import escape
from handlers.common import in_group
from handlers.common import reply
from handlers.flow import Draft
from handlers.meeting_common import AGENDA_LIMIT
from handlers.meeting_common import CB
from handlers.meeting_common import PENDING_DELEGATE
from handlers.meeting_common import PLACE_LIMIT
from handlers.meeting_common import SKIP
from handlers.meeting_common import TITLE_LIMIT
from handlers.meeting_common import acting_user
from handlers.meeting_common import actor_zone
from handlers.meeting_common import check_text
from handlers.meeting_common import default_zone
from handlers.meeting_common import end_problem
from handlers.meeting_common import invited_units
from handlers.meeting_common import is_coordinator
from handlers.meeting_common import parse_end
from handlers.meeting_common import parse_meeting_id
from handlers.meeting_common import parse_start
from handlers.meeting_common import split_place
from handlers.meeting_common import time_problem
from handlers.meeting_common import typed_text
from i18n import Translator
from i18n.formats import fmt_minutes
from i18n.formats import fmt_when
from storage.db import AlreadySubmitted
from storage.meetings import create_meeting
from storage.meetings import meeting_by_submission
from storage.models import Meeting
from storage.schedules import all_zones
from storage.schedules import rooms_for_units
from storage.schedules import units_by_ids
from storage.schedules import zones_of_unit
from views.buttons import Button
from views.buttons import Style

# Conversation states (ints: persisted as JSON).
TITLE, KIND, ZONE, START, END, PLACE, UNITS, AGENDA, CONFIRM = range(9)

# A draft left alone this long is over: a later message is not taken as its answer.
DRAFT_TTL = timedelta(hours=6)


@dataclass
class MeetingDraft(Draft):
    """A new meeting as the coordinator answers (times as ISO instants)."""

    zone_name: str = ""
    title: str | None = None
    kind: str | None = None
    zone_chosen: bool = False
    zone_id: int | None = None
    start_day: str | None = None  # a day typed without a time: its time comes next
    starts_at: str | None = None
    ends_at: str | None = None
    place_done: bool = False
    place: str | None = None
    video_link: str | None = None
    unit_ids: list[int] = field(default_factory=list)
    agenda_done: bool = False
    agenda: str | None = None


Turn = flow.Turn[MeetingDraft]


async def ask_title(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_title"))


async def ask_kind(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("meetings.new.ask_kind"), [
        [(tr(f"meetings.kinds.{k.value}"), f"{CB}:new:kind:{k.value}") for k in kinds]
        for kinds in (list(MeetingKind)[:3], list(MeetingKind)[3:])])


async def ask_zone(turn: Turn) -> flow.Prompt:
    actor = turn.actor
    async with turn.svc.db.session() as session:
        own = await zones_of_unit(session, actor.user.unit_id) if actor.user and \
            actor.user.unit_id else []
        zones = own or await all_zones(session)
    rows = [[(turn.tr.name(z.short_name or z.name), f"{CB}:new:zone:{z.id}")] for z in zones[:6]]
    rows.append([(turn.tr("meetings.new.no_zone"), f"{CB}:new:zone:0")])
    return flow.Prompt(turn.tr("meetings.new.ask_zone"), rows)


async def ask_start(turn: Turn) -> flow.Prompt:
    zone_name = escape(turn.draft.zone_name)
    if turn.draft.start_day:
        return flow.Prompt(turn.tr("meetings.new.ask_start_time",
                                   day=escape(turn.draft.start_day), zone=zone_name))
    return flow.Prompt(turn.tr("meetings.new.ask_start", zone=zone_name))


async def ask_end(turn: Turn) -> flow.Prompt:
    assert turn.draft.starts_at is not None
    start = datetime.fromisoformat(turn.draft.starts_at)
    return flow.Prompt(turn.tr("meetings.new.ask_end", start=fmt_when(
        turn.tr, start, turn.draft.zone_name, now=turn.svc.now())))


async def ask_place(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_place"))


async def ask_units(turn: Turn) -> flow.Prompt:
    hint = turn.tr("meetings.new.all_hint") if turn.draft.zone_id else ""
    return flow.Prompt(turn.tr("meetings.new.ask_units", hint=hint))


async def ask_agenda(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("meetings.new.ask_agenda"))


async def ask_confirm(turn: Turn) -> flow.Prompt:
    tr, token = turn.tr, turn.draft.token
    return flow.Prompt(await preview_text(turn.svc, tr, turn.draft), [
        [Button(tr("meetings.buttons.confirm"), f"{CB}:new:ok:{token}", Style.success),
         (tr("meetings.buttons.discard"), f"{CB}:new:no:{token}")]])


NEW_MEETING = flow.GuidedFlow(
    name="meeting_new", draft_key="meeting_draft", draft_type=MeetingDraft,
    kind="meeting_create", callback=f"{CB}:new", role=Role.coordinator, ttl=DRAFT_TTL,
    steps=[
        flow.Step(TITLE, lambda d: d.title is not None, ask_title),
        flow.Step(KIND, lambda d: d.kind is not None, ask_kind),
        flow.Step(ZONE, lambda d: d.zone_chosen, ask_zone),
        flow.Step(START, lambda d: d.starts_at is not None, ask_start),
        flow.Step(END, lambda d: d.ends_at is not None, ask_end),
        flow.Step(PLACE, lambda d: d.place_done, ask_place),
        flow.Step(UNITS, lambda d: bool(d.unit_ids), ask_units),
        flow.Step(AGENDA, lambda d: d.agenda_done, ask_agenda),
    ],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    expired_key="meetings.new.expired", cancelled_key="meetings.new.discarded",
    quit_key="meetings.buttons.discard", text_expected_key="meetings.new.text_expected",
    confirm_expects_key="meetings.new.review_expects_button", also_closes=(PENDING_DELEGATE,),
)


async def start_new(update: Update, context: Context, actor: Actor) -> int:
    if not is_coordinator(actor):
        await reply(update, actor.tr("errors.not_allowed"))
        raise ApplicationHandlerStop
    if in_group(update):
        await reply(update, actor.tr("errors.private_only"))
        raise ApplicationHandlerStop
    turn = NEW_MEETING.start(update, context, actor,
                             zone_name=actor_zone(services(context), actor))
    return await turn.advance()


async def got_title(turn: Turn) -> int:
    try:
        turn.draft.title = check_text(turn.tr, typed_text(turn.update), TITLE_LIMIT)
    except Refusal as refusal:
        return await turn.stay(TITLE, refusal.text)
    return await turn.advance()


async def got_kind(turn: Turn) -> int:
    query, tr = turn.update.callback_query, turn.tr
    if query is None:  # typed: 片会, 聯席會議, drill …
        typed = typed_text(turn.update)
        kind = parse_meeting_kind(typed)
        if kind is None:
            return await turn.unclear(KIND, tr("meetings.new.unknown_kind", text=escape(typed)))
        turn.draft.kind = kind.value
        return await turn.advance([tr("meetings.new.kind_chosen",
                                      kind=tr(f"meetings.kinds.{kind.value}"))])
    value = turn.query_data.rsplit(":", 1)[1]
    if value not in MeetingKind.__members__:
        return await turn.alert(KIND, tr("errors.stale_button"))
    turn.draft.kind = value
    await query.answer()
    await edit_query_message(turn.update, tr("meetings.new.kind_chosen",
                                             kind=tr(f"meetings.kinds.{value}")))
    return await turn.advance()


async def zone_typed(turn: Turn) -> int:
    """The zone is chosen with its buttons (the coordinator's own zones first)."""
    return await turn.ask(ZONE, [turn.tr("meetings.new.use_buttons")])


async def got_zone(turn: Turn) -> int:
    assert turn.update.callback_query is not None
    # The same bounds as any id in button data.
    turn.draft.zone_id = parse_meeting_id(turn.query_data.rsplit(":", 1)[1]) or None
    turn.draft.zone_chosen = True
    await turn.update.callback_query.answer()
    return await turn.advance()


async def got_start(turn: Turn) -> int:
    draft, text, now = turn.draft, typed_text(turn.update), turn.svc.now()
    day, start = draft.start_day, None
    draft.start_day = None
    if day:  # a day came without a time; this should be its time
        with contextlib.suppress(DeadlineError):
            start = parse_start(f"{day} {text}", now, draft.zone_name)
    if start is None:
        try:
            start = parse_start(text, now, draft.zone_name)
        except DeadlineError as problem:
            if problem.code != "no_time":
                return await turn.stay(START, time_problem(turn.tr, problem, text))
            draft.start_day = text.strip()
            return await turn.ask(START)
    draft.starts_at = start.isoformat()
    return await turn.advance()


async def got_end(turn: Turn) -> int:
    draft, text, tr = turn.draft, typed_text(turn.update), turn.tr
    assert draft.starts_at is not None
    start = datetime.fromisoformat(draft.starts_at)
    end = parse_end(text, start, turn.svc.now(), draft.zone_name)
    if end is None:
        return await turn.stay(END, tr("meetings.errors.time_unrecognised", text=escape(text)))
    if (problem := end_problem(start, end)) is not None:
        return await turn.stay(END, tr(problem))
    draft.ends_at = end.isoformat()
    return await turn.advance()


async def _skippable(turn: Turn, state: int, limit: int) -> str | None:
    """The answer to a step that may be skipped (None); one too long is refused and the
    step waits for another (`stay` ends the update)."""
    text = typed_text(turn.update)
    if text.lower() in SKIP:
        return None
    if len(text) > limit:
        await turn.stay(state, turn.tr("errors.too_long", limit=limit))
    return text


async def got_place(turn: Turn) -> int:
    if (text := await _skippable(turn, PLACE, PLACE_LIMIT)) is not None:
        turn.draft.place, turn.draft.video_link = split_place(text)
    turn.draft.place_done = True
    return await turn.advance()


async def got_units(turn: Turn) -> int:
    try:
        async with turn.svc.db.session() as session:
            units = await invited_units(session, turn.tr, typed_text(turn.update),
                                        turn.draft.zone_id)
    except Refusal as refusal:
        return await turn.stay(UNITS, refusal.text)
    turn.draft.unit_ids = [u.id for u in units]
    return await turn.advance()


async def got_agenda(turn: Turn) -> int:
    if (text := await _skippable(turn, AGENDA, AGENDA_LIMIT)) is not None:
        turn.draft.agenda = text
    turn.draft.agenda_done = True
    return await turn.advance()


async def preview_text(svc: Services, tr: Translator, draft: MeetingDraft) -> str:
    assert draft.kind is not None and draft.title is not None
    assert draft.starts_at is not None and draft.ends_at is not None
    async with svc.db.session() as session:
        units = await units_by_ids(session, draft.unit_ids)
        rooms = await rooms_for_units(session, draft.unit_ids)
    meeting = Meeting(
        id=0, kind=MeetingKind(draft.kind), title=draft.title,
        starts_at=datetime.fromisoformat(draft.starts_at),
        ends_at=datetime.fromisoformat(draft.ends_at), place=draft.place,
        video_link=draft.video_link, agenda=draft.agenda, participants=[],
    )
    names = tr.join(escape(tr.name(units[u].short_name or units[u].name))
                    for u in draft.unit_ids)
    lines = [tr("meetings.new.preview"),
             plan.card(tr, meeting, draft.zone_name, now=svc.now()).replace("#0 ", ""),
             tr("meetings.card.units", units=names),
             tr("meetings.show.reminders", offsets=tr.join(
                 fmt_minutes(tr, o) for o in plan_offsets()))]
    missing = [units[u].short_name or units[u].name for u in draft.unit_ids if u not in rooms]
    if missing:
        lines.append(tr("meetings.created.unreachable", units=escape(tr.join(missing))))
    return "\n".join(lines)


def plan_offsets() -> list[int]:
    return list(DEFAULT_MEETING_OFFSETS)


async def got_confirm(turn: Turn) -> int:
    query, tr, svc, draft = turn.update.callback_query, turn.tr, turn.svc, turn.draft
    assert query is not None
    now = svc.now()
    verb, _, token = turn.query_data.removeprefix(f"{CB}:new:").partition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, NEW_MEETING.kind):
        raise ApplicationHandlerStop  # the draft in progress, if any, stays as it is
    if verb == "no":
        NEW_MEETING.discard(turn.context, everything=False)
        await query.answer()
        await edit_query_message(turn.update, tr("meetings.new.discarded"))
        return await turn.end()
    key = draft.id
    if done := await svc.db.read(lambda session: meeting_by_submission(session, key)):
        return await _already_created(turn, *done)
    assert draft.kind is not None and draft.title is not None
    assert draft.starts_at is not None and draft.ends_at is not None
    starts_at, ends_at = (datetime.fromisoformat(draft.starts_at),
                          datetime.fromisoformat(draft.ends_at))
    if starts_at <= now:
        await query.answer(tr("meetings.errors.time_in_the_past", text=fmt_when(
            tr, starts_at, draft.zone_name, now=now)), show_alert=True)
        draft.starts_at = draft.ends_at = None
        return await turn.advance()
    kind, title = MeetingKind(draft.kind), draft.title

    async def create(session: AsyncSession) -> tuple[int, str, list[str]]:
        user = await acting_user(session, turn.actor)
        meeting = await create_meeting(
            session, kind=kind, title=title, starts_at=starts_at, ends_at=ends_at,
            timezone=draft.zone_name, unit_ids=draft.unit_ids, actor=user,
            zone_id=draft.zone_id, place=draft.place, video_link=draft.video_link,
            agenda=draft.agenda, offsets=plan_offsets(), now=now, submission_key=key,
        )
        await plan.skip_past_reminders(session, meeting, now)
        _, unreachable = await plan.notify_rooms(
            session, meeting, context="i", key=f"meeting:{meeting.id}:invite", now=now,
            default_zone=default_zone(svc), language=svc.settings.default_language)
        if unreachable:
            await plan.warn_unreachable(session, meeting, unreachable,
                                        key=f"meeting:{meeting.id}:invite", now=now,
                                        default_language=svc.settings.default_language,
                                        what="invitation")
        await plan.send_tally(session, meeting, now=now, default_zone=default_zone(svc),
                              default_language=svc.settings.default_language)
        return meeting.id, meeting.title, unreachable

    try:
        meeting_id, title, unreachable = await NEW_MEETING.submit(turn, create)
    except AlreadySubmitted:  # the same draft confirmed at the same time elsewhere
        done = await svc.db.read(lambda session: meeting_by_submission(session, key))
        assert done is not None
        return await _already_created(turn, *done)
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.answer()
    text = tr("meetings.created.done", id=meeting_id, title=escape(title),
              offsets=tr.join(fmt_minutes(tr, o) for o in plan_offsets()))
    if unreachable:
        text += "\n" + tr("meetings.created.unreachable", units=escape(tr.join(unreachable)))
    await edit_query_message(turn.update, text)
    return await turn.end()


async def _already_created(turn: Turn, meeting_id: int, title: str) -> int:
    """A draft confirmed again after it was stored (a crash before the flow's end was
    saved): the meeting it made is named; nothing is stored or sent again."""
    assert turn.update.callback_query is not None
    end_draft(turn.context, turn.draft.token, NEW_MEETING.draft_key)
    await turn.update.callback_query.answer()
    await reply(turn.update, turn.tr("meetings.created.already", id=meeting_id,
                                     title=escape(title)))
    return await turn.end()
