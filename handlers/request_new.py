"""/request's guided flow (handlers/flow.py): the draft an officer answers step by step
or in one line (`/request 云南 治安管控互动 特急 主题…`), the questions it asks and its
summary, and the answers to its first question, the target units (typed by any name,
pressed, or first in the one line); request_steps.py answers the others and submits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from telegram import Update

from bot.services import Actor
from bot.services import Services
from core import requests as rules
from core.enums import Role
from core.enums import Urgency
from handlers import flow
from handlers.common import Context
from handlers.common import escape
from handlers.common import handled
from handlers.common import in_group
from handlers.common import message_text
from handlers.common import reply
from handlers.request_common import DB_ID
from handlers.request_common import NEW
from handlers.request_common import policy
from storage import requests as store
from storage.models import Mechanism
from storage.models import Unit
from storage.units import find_units
from views import requests as render
from views.buttons import Button
from views.buttons import Style

# Confirmation kind of a draft's summary (handlers/common.py).
SUBMIT = "request_submit"
TARGET, MECHANISM, URGENCY, SUBJECT, DETAILS, ATTACH, DEADLINE, CONFIRM = range(8)
# A flow left alone this long is over: a later message is not taken as its answer.
DRAFT_TTL = timedelta(hours=6)
SPLIT_UNITS = re.compile(r"[\s、，,;；/+]+")


@dataclass
class RequestFlowDraft(flow.Draft):
    """A request as the officer answers: target unit ids, the mechanism's id, the
    urgency's code, subject, details ('' when skipped), attachments, the reply deadline
    (ISO; None without one). `quick`: the one-shot command, which skips the optional
    steps; `editing`: back to the summary once the edited step is answered."""

    targets: list[int] = field(default_factory=list)
    targets_done: bool = False
    candidates: list[int] = field(default_factory=list)  # the units a typed name fits
    mechanism: int | None = None
    urgency: str | None = None
    subject: str | None = None
    quick: bool = False
    details: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    attachments_done: bool = False
    deadline_done: bool = False
    reply_due: str | None = None
    editing: bool = False


Turn = flow.Turn[RequestFlowDraft]


async def _unit_names(svc: Services, ids: list[int]) -> dict[int, Unit]:
    if not ids:
        return {}
    async with svc.db.session() as session:
        return {unit_id: unit for unit_id in ids
                if (unit := await session.get(Unit, unit_id)) is not None}


async def ask_target(turn: Turn) -> flow.Prompt:
    svc, tr, actor = turn.svc, turn.tr, turn.actor
    chosen = await _unit_names(svc, turn.draft.targets)
    async with svc.db.session() as session:
        offered = await store.peer_units(session, actor.user.unit_id if actor.user else None)
    lines = [*turn.notes, tr("requests.new.ask_target")]
    if chosen:
        lines.append(tr("requests.new.targets_chosen",
                        units=tr.join(escape(tr.name(u.name)) for u in chosen.values())))
        lines.append(tr("requests.new.ask_more_targets"))
    options = list(offered) + [u for u in chosen.values() if u.id not in {o.id for o in offered}]
    buttons = [(("✅ " if unit.id in chosen else "") + tr.name(unit.short_name),
                f"{NEW}:t:{unit.id}")
               for unit in options]
    rows = [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    rows.append([Button(tr("requests.button.next"), f"{NEW}:next", Style.primary),
                 turn.quit_button()])
    return flow.Prompt("\n".join(lines), rows, with_notes=True)


async def ask_mechanism(turn: Turn) -> flow.Prompt:
    async with turn.svc.db.session() as session:
        found = await store.mechanisms(session)
    buttons = [(turn.tr.name(m.name), f"{NEW}:m:{m.id}") for m in found]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return flow.Prompt(turn.tr("requests.new.ask_mechanism"), [*rows, [turn.quit_button()]])


async def ask_urgency(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    buttons = [(render.urgency_label(tr, u), f"{NEW}:u:{u.value}") for u in rules.URGENCY_ORDER]
    return flow.Prompt(tr("requests.new.ask_urgency"), [buttons, [turn.quit_button()]])


async def ask_subject(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("requests.new.ask_subject", limit=rules.SUBJECT_MAX),
                       [[turn.quit_button()]])


async def ask_details(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("requests.new.ask_details", limit=rules.DETAILS_MAX),
                       [[(tr("requests.button.skip"), f"{NEW}:skip"), turn.quit_button()]])


async def ask_attachments(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("requests.new.ask_attachments", limit=rules.ATTACHMENTS_MAX),
                       [[(tr("requests.button.done"), f"{NEW}:done"), turn.quit_button()]])


async def ask_deadline(turn: Turn) -> flow.Prompt:
    tr, zone_name = turn.tr, flow.reader_zone_name(turn.svc, turn.actor)
    return flow.Prompt(tr("requests.new.ask_deadline", zone=zone_name),
                       [[(tr("requests.button.no_deadline"), f"{NEW}:nodl"),
                         turn.quit_button()]])


async def ask_confirm(turn: Turn) -> flow.Prompt:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    assert draft.urgency is not None and draft.subject is not None
    draft.editing = False
    tz = flow.reader_zone(svc, turn.actor)
    units = await _unit_names(svc, draft.targets)
    async with svc.db.session() as session:
        mechanism = await session.get(Mechanism, draft.mechanism) if draft.mechanism else None
    urgency = Urgency(draft.urgency)
    ack = policy(svc).ack_minutes[urgency.value]
    details = draft.details or ""
    if len(details) > 300:
        details = details[:300] + "…"
    text = tr(
        "requests.new.summary",
        units=tr.join(escape(tr.name(u.name)) for u in units.values()),
        mechanism=escape(tr.name(mechanism.name)) if mechanism else tr("requests.new.none"),
        urgency=render.urgency_label(tr, urgency),
        subject=escape(draft.subject),
        details=escape(details) or tr("requests.new.none"),
        attachments=len(draft.attachments) or tr("requests.new.none"),
        deadline=render.local_time(datetime.fromisoformat(draft.reply_due), tz, with_year=True)
        if draft.reply_due else tr("requests.new.none"),
        ack=render.duration(tr, timedelta(minutes=ack)),
    ) + "\n\n" + tr("requests.new.confirm_hint")
    token = draft.token
    return flow.Prompt(text, [
        [Button(tr("requests.button.submit"), f"{NEW}:submit:{token}", Style.success),
         turn.quit_button()],
        [(tr("requests.button.edit_details"), f"{NEW}:edit:details:{token}"),
         (tr("requests.button.edit_deadline"), f"{NEW}:edit:deadline:{token}")],
    ])


NEW_REQUEST = flow.GuidedFlow(
    name="requests_new", draft_key="rq_draft", draft_type=RequestFlowDraft, kind=SUBMIT,
    callback=NEW, role=Role.officer, ttl=DRAFT_TTL,
    steps=[
        flow.Step(TARGET, lambda d: bool(d.targets) and d.targets_done, ask_target),
        flow.Step(MECHANISM, lambda d: d.mechanism is not None, ask_mechanism),
        flow.Step(URGENCY, lambda d: d.urgency is not None, ask_urgency),
        flow.Step(SUBJECT, lambda d: bool(d.subject), ask_subject),
        flow.Step(DETAILS, lambda d: d.quick or d.details is not None, ask_details),
        flow.Step(ATTACH, lambda d: d.quick or d.attachments_done, ask_attachments),
        flow.Step(DEADLINE, lambda d: d.quick or d.deadline_done, ask_deadline),
    ],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    back_to_confirm=lambda d: d.editing,
    expired_key="requests.new.expired", cancelled_key="requests.new.cancelled",
    quit_key="requests.button.quit", text_expected_key="requests.new.text_expected",
    confirm_expects_key="requests.new.review_expects_button",
)


# --------------------------------------------------------------------------- start


async def start_new(update: Update, context: Context, actor: Actor) -> int:
    """A new draft, from a private chat of someone with a unit: its first question, or,
    given words, what they leave unanswered."""
    tr = actor.tr
    if in_group(update):
        await reply(update, tr("requests.new.group_only_view"))
        return await handled(flow.END)
    if actor.user is None or actor.user.unit_id is None:
        await reply(update, tr("requests.new.no_unit"))
        return await handled(flow.END)
    turn = NEW_REQUEST.start(update, context, actor)
    if not context.args:
        return await turn.ask(TARGET)
    return await turn.advance(await _one_shot(turn, list(context.args)))


async def _one_shot(turn: Turn, words: list[str]) -> list[str]:
    """`/request 云南 治安管控互动 特急 主题…`: targets first, then mechanism and urgency
    in either order, the rest is the subject. Returns notes about what was not understood
    (the flow then asks for exactly what is missing)."""
    tr, draft = turn.tr, turn.draft
    draft.quick = True
    notes: list[str] = []
    async with turn.svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(words[0]) if p]:
            notes += await _add_target(session, turn, part)
        index = 1
        # More units, space-separated: only words that name exactly one unit.
        while index < len(words) and rules.parse_urgency(words[index]) is None and len(
                exact := await find_units(session, words[index])) == 1:
            notes += _toggle_target(turn, exact[0], add_only=True)
            index += 1
        target_notes = list(notes)
        first_flag = index
        while index < len(words) and index < first_flag + 2:
            word = words[index]
            before_urgency = draft.urgency is None and index + 1 < len(words) and \
                rules.parse_urgency(words[index + 1]) is not None
            if draft.urgency is None and (urgency := rules.parse_urgency(word)):
                draft.urgency = urgency.value
            elif draft.mechanism is None and (
                    mechanism := await store.find_mechanism(session, word)):
                draft.mechanism = mechanism.id
            elif draft.mechanism is None and (offered := await store.mechanism_meant(
                    session, word, before_urgency=before_urgency)) is not None:
                # Refused with the list (the flow then asks with buttons), not taken
                # as the start of the subject.
                notes.append(tr("requests.new.unknown_mechanism_word", query=escape(word[:40]),
                                names=tr.join(escape(tr.name(m.name)) for m in offered)))
            else:
                break
            index += 1
    if draft.targets and not target_notes:
        draft.targets_done = True
    subject = rules.clean_line(" ".join(words[index:]))
    if subject:
        if problem := rules.text_problem(subject, rules.SUBJECT_MAX):
            notes.append(tr(f"requests.new.subject_{problem.value}", length=len(subject),
                            limit=rules.SUBJECT_MAX))
        else:
            draft.subject = subject
    return notes


async def _add_target(session: Any, turn: Turn, query: str) -> list[str]:
    """Add the unit `query` names; notes when it names none, several, or one's own."""
    tr = turn.tr
    units = await find_units(session, query, partial=True)
    if not units:
        return [tr("requests.new.unknown_unit", query=escape(query))]
    if len(units) > 1:
        turn.draft.candidates = [u.id for u in units]
        return [tr("requests.new.ambiguous_unit", query=escape(query)) + " " +
                tr.join(escape(tr.name(u.name)) for u in units)]
    return _toggle_target(turn, units[0], add_only=True)


def _toggle_target(turn: Turn, unit: Unit, *, add_only: bool = False) -> list[str]:
    tr, targets, user = turn.tr, turn.draft.targets, turn.actor.user
    if user is not None and unit.id == user.unit_id:
        return [tr("requests.new.own_unit", unit=escape(tr.name(unit.name)))]
    if unit.id in targets:
        if not add_only:
            targets.remove(unit.id)
        return []
    if len(targets) >= rules.TARGETS_MAX:
        return [tr("requests.new.too_many_targets", limit=rules.TARGETS_MAX)]
    targets.append(unit.id)
    return []


# --------------------------------------------------------------------------- targets


async def target_typed(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    notes: list[str] = []
    async with turn.svc.db.session() as session:
        for part in [p for p in SPLIT_UNITS.split(message_text(turn.update)) if p]:
            notes += await _add_target(session, turn, part)
    units = await _unit_names(turn.svc, draft.candidates)
    draft.candidates = []
    choices = [(tr.name(u.name), f"{NEW}:t:{u.id}") for u in units.values()]
    return await turn.offer(TARGET, notes, choices,
                            Button(tr("requests.button.next"), f"{NEW}:next", Style.primary))


async def target_pressed(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    data = turn.query_data
    if data == f"{NEW}:next":
        if not draft.targets:
            return await turn.alert(TARGET, tr("requests.new.no_target_yet"))
        draft.targets_done = True
        units = await _unit_names(svc, draft.targets)
        await turn.closing(tr.join(escape(tr.name(u.name)) for u in units.values()))
        return await turn.advance()
    match = re.fullmatch(rf"{NEW}:t:{DB_ID}", data)
    unit = (await _unit_names(svc, [int(match.group(1))])).get(int(match.group(1))) \
        if match else None
    if unit is None:
        return await turn.alert(TARGET, tr("errors.stale_button"))
    notes = _toggle_target(turn, unit)
    return await turn.reshow(TARGET, notes[0] if notes else None)
