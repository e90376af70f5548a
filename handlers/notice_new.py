"""/notice's guided flow (handlers/flow.py): the draft a coordinator answers step by
step or in one line (`/notice 预警 紧急 全部 今晚有大风…`), its preview, and sending
or scheduling it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.commands import Where
from bot.plans import notices as plan
from bot.services import Actor
from bot.services import Services
from core.enums import NoticeKind
from core.enums import Role
from core.enums import Severity
from core.notices import KIND_ORDER
from core.notices import SEVERITY_ORDER
from core.notices import TEXT_MAX
from core.notices import NoticeDraft
from core.notices import NoticeProblem
from core.notices import clean_text
from core.notices import parse_id
from core.notices import text_problem
from core.timeparse import DeadlineError
from core.timeparse import parse_deadline
from handlers import flow
from handlers.common import Context
from handlers.common import confirmation_open
from handlers.common import end_draft
from handlers.common import escape
from handlers.common import guarded
from handlers.common import handled
from handlers.common import reply
from handlers.flow import Draft
from handlers.flow import E
from handlers.notice_common import AUDIENCE
from handlers.notice_common import CONFIRM
from handlers.notice_common import CORRECTING
from handlers.notice_common import DRAFT_TTL
from handlers.notice_common import KIND
from handlers.notice_common import NEW
from handlers.notice_common import SEVERITY
from handlers.notice_common import TEXT
from handlers.notice_common import WHEN
from handlers.notice_common import folded_word
from handlers.notice_common import policy
from handlers.notice_common import text_of
from i18n import Translator
from services import notices as service
from storage import notices as store
from storage.access import user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.models import Unit
from storage.models import Zone
from storage.schedules import all_zones
from storage.schedules import find_zones
from storage.units import find_units
from views import requests as render
from views.buttons import Button
from views.buttons import Style
from views.notices import kind_label
from views.notices import severity_label

SPLIT = re.compile(r"[\s、，,;；/+]+")
ALL_WORDS = {"全部", "全部值班室", "所有", "all"}
KIND_WORDS = {
    "形势通报": NoticeKind.situation, "通报": NoticeKind.situation,
    "situation": NoticeKind.situation, "预警": NoticeKind.warning,
    "warning": NoticeKind.warning, "情报指令": NoticeKind.instruction,
    "指令": NoticeKind.instruction, "instruction": NoticeKind.instruction,
    "工作通知": NoticeKind.work, "通知": NoticeKind.work, "work": NoticeKind.work,
}
SEVERITY_WORDS = {
    "一般": Severity.info, "info": Severity.info, "重要": Severity.important,
    "important": Severity.important, "紧急": Severity.critical, "critical": Severity.critical,
}


# =========================================================================== the draft


@dataclass
class NoticeFlowDraft(Draft):
    """A notice as the coordinator answers: codes of its kind and severity, the chosen
    audience ({"all": true} or zone and unit ids), its text, attachment and send time."""

    kind: str | None = None
    severity: str | None = None
    audience: dict[str, Any] = field(default_factory=dict)
    audience_done: bool = False
    text: str | None = None
    attachment: dict[str, Any] | None = None
    scheduled_for: str | None = None


Turn = flow.Turn[NoticeFlowDraft]


def _chosen(audience: dict[str, Any]) -> bool:
    return bool(audience.get("all") or audience.get("zones") or audience.get("units"))


async def _audience_label(svc: Services, tr: Translator, audience: dict[str, Any]) -> str:
    if audience.get("all"):
        return tr("notices.new.all_rooms")
    async with svc.db.session() as session:
        zones = [await session.get(Zone, z) for z in audience.get("zones") or []]
        units = [await session.get(Unit, u) for u in audience.get("units") or []]
    names = [z.name for z in zones if z] + [u.name for u in units if u]
    return tr.join(escape(n) for n in names) or tr("notices.new.none")


async def ask_audience(turn: Turn) -> flow.Prompt:
    svc, tr, audience = turn.svc, turn.tr, turn.draft.audience
    async with svc.db.session() as session:
        zones = await all_zones(session)
        units = await store.units_with_rooms(session)
    lines = [*turn.notes, tr("notices.new.ask_audience")]
    if _chosen(audience):
        lines.append(tr("notices.new.audience_chosen",
                        audience=await _audience_label(svc, tr, audience)))
    chosen_zones = set(audience.get("zones") or [])
    rows = [[(("✅ " if audience.get("all") else "") + tr("notices.new.all_rooms"),
              f"{NEW}:a:all")]]
    buttons = [(("✅ " if z.id in chosen_zones else "") + tr.name(z.short_name or z.name),
                f"{NEW}:a:z:{z.id}") for z in zones[:9]]
    rows += [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
    chosen_units = set(audience.get("units") or [])
    offered = units + [u for u in await _units(svc, chosen_units)
                       if u.id not in {o.id for o in units}]
    buttons = [(("✅ " if u.id in chosen_units else "") + tr.name(u.short_name),
                f"{NEW}:a:u:{u.id}")
               for u in offered]
    rows += [buttons[i:i + 4] for i in range(0, len(buttons), 4)]
    rows.append([Button(tr("notices.button.next"), f"{NEW}:a:next", Style.primary),
                 turn.quit_button()])
    return flow.Prompt("\n".join(lines), rows, with_notes=True)


async def _units(svc: Services, ids: set[int]) -> list[Unit]:
    async with svc.db.session() as session:
        return [u for i in sorted(ids) if (u := await session.get(Unit, i)) is not None]


async def ask_kind(turn: Turn) -> flow.Prompt:
    buttons = [(kind_label(turn.tr, k), f"{NEW}:k:{k.value}") for k in KIND_ORDER]
    return flow.Prompt(turn.tr("notices.new.ask_kind"),
                       [buttons[:2], buttons[2:], [turn.quit_button()]])


async def ask_severity(turn: Turn) -> flow.Prompt:
    buttons = [(severity_label(turn.tr, s), f"{NEW}:s:{s.value}") for s in SEVERITY_ORDER]
    return flow.Prompt(turn.tr("notices.new.ask_severity"), [buttons, [turn.quit_button()]])


async def ask_text(turn: Turn) -> flow.Prompt:
    return flow.Prompt(turn.tr("notices.new.ask_text", limit=TEXT_MAX), [[turn.quit_button()]])


async def ask_when(turn: Turn) -> flow.Prompt:
    tr = turn.tr
    return flow.Prompt(tr("notices.new.ask_when", zone=flow.reader_zone_name(turn.svc, turn.actor)),
                       [[(tr("notices.button.send_now"), f"{NEW}:now")], [turn.quit_button()]])


async def ask_confirm(turn: Turn) -> flow.Prompt:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    assert draft.kind is not None and draft.severity is not None and draft.text is not None
    async with svc.db.session() as session:
        rooms = await store.audience_rooms(session, draft.audience)
    when, attachment = draft.scheduled_for, draft.attachment
    text = tr(
        "notices.new.preview",
        kind=kind_label(tr, NoticeKind(draft.kind)),
        severity=severity_label(tr, Severity(draft.severity)),
        audience=await _audience_label(svc, tr, draft.audience), rooms=len(rooms),
        attachment=tr(f"notices.new.attachment_{attachment['type']}") if attachment
        else tr("notices.new.none"),
        when=render.local_time(datetime.fromisoformat(when), flow.reader_zone(svc, turn.actor),
                               with_year=True) if when else tr("notices.new.now"),
        text=escape(draft.text),
    )
    token = draft.token
    return flow.Prompt(text, [
        [Button(tr("notices.button.send"), f"{NEW}:send:{token}", Style.success),
         (tr("notices.button.schedule"), f"{NEW}:when:{token}")],
        [turn.quit_button()],
    ])


NEW_NOTICE = flow.GuidedFlow(
    name="notices_flow", draft_key="notice_draft", draft_type=NoticeFlowDraft,
    kind="notice_send", callback=NEW, role=Role.coordinator, ttl=DRAFT_TTL,
    steps=[
        flow.Step(KIND, lambda d: d.kind is not None, ask_kind),
        flow.Step(SEVERITY, lambda d: d.severity is not None, ask_severity),
        flow.Step(AUDIENCE, lambda d: d.audience_done and _chosen(d.audience), ask_audience),
        flow.Step(TEXT, lambda d: bool(d.text), ask_text),
    ],
    side_steps=[flow.Step(WHEN, lambda d: False, ask_when)],
    confirm=flow.Step(CONFIRM, lambda d: False, ask_confirm),
    expired_key="notices.new.expired", cancelled_key="notices.new.cancelled",
    quit_key="notices.button.cancel", text_expected_key="notices.new.text_expected",
    confirm_expects_key="notices.new.review_expects_button", also_closes=(CORRECTING,),
)


# --------------------------------------------------------------------------- /notice


@guarded(Role.coordinator, Where.private)
async def notice_command(update: Update, context: Context, actor: Actor) -> int:
    turn = NEW_NOTICE.start(update, context, actor)
    words = list(context.args or [])
    if not words:
        return await turn.ask(KIND)
    return await turn.advance(await _one_shot(turn, words))


async def _one_shot(turn: Turn, words: list[str]) -> list[str]:
    """`/notice 预警 紧急 全部 今晚有大风…`: type, severity and audience words in any
    order first, the rest is the text. What is missing is then asked for."""
    draft, index = turn.draft, 0
    async with turn.svc.db.session() as session:
        while index < len(words):
            word = folded_word(words[index])
            if draft.kind is None and word in KIND_WORDS:
                draft.kind = KIND_WORDS[word].value
            elif draft.severity is None and word in SEVERITY_WORDS:
                draft.severity = SEVERITY_WORDS[word].value
            elif not await _add_exact_audience(session, draft, words[index]):
                break
            index += 1
    if _chosen(draft.audience):
        draft.audience_done = True
    text = clean_text(" ".join(words[index:]))
    notes: list[str] = []
    if text:
        if problem := text_problem(text):
            notes.append(turn.tr(f"notices.new.text_{problem}", limit=TEXT_MAX,
                                 length=len(text)))
        else:
            draft.text = text
    return notes


async def _add_exact_audience(session: Any, draft: NoticeFlowDraft, word: str) -> bool:
    """`全部`, a zone's name or exactly one unit's name: added; else False."""
    audience = draft.audience
    if folded_word(word) in ALL_WORDS:
        audience.clear()
        audience["all"] = True
        return True
    zones = await find_zones(session, word)
    if len(zones) == 1:
        _toggle(audience, "zones", zones[0].id, add_only=True)
        return True
    units = await find_units(session, word)
    if len(units) == 1:
        _toggle(audience, "units", units[0].id, add_only=True)
        return True
    return False


def _toggle(audience: dict[str, Any], part: str, item: int, *, add_only: bool = False) -> None:
    audience.pop("all", None)
    chosen: list[int] = audience.setdefault(part, [])
    if item in chosen:
        if not add_only:
            chosen.remove(item)
    else:
        chosen.append(item)


# --------------------------------------------------------------------------- steps


async def kind_chosen(turn: Turn) -> int:
    return await _chosen_from(turn, KIND, "kind", NoticeKind, KIND_WORDS, kind_label)


async def severity_chosen(turn: Turn) -> int:
    return await _chosen_from(turn, SEVERITY, "severity", Severity, SEVERITY_WORDS,
                              severity_label)


async def _chosen_from(turn: Turn, state: int, field: str, kind: type[E], words: dict[str, E],
                       label: Callable[[Translator, E], str]) -> int:
    """The notice's kind or severity, pressed (`{NEW}:k:` or `{NEW}:s:` and the member) or
    typed as one of its `words`; kept in the draft's `field`."""
    text = text_of(turn.update)
    value = turn.pressed(f"{NEW}:{field[0]}:", kind) if turn.update.callback_query \
        else words.get(folded_word(text))
    if value is None:
        return await turn.unclear(
            state, turn.tr(f"notices.new.unknown_{field}", text=escape(text[:40])))
    setattr(turn.draft, field, value.value)
    await turn.closing(label(turn.tr, value))
    return await turn.advance()


async def audience_typed(turn: Turn) -> int:
    """Zone or unit names (search by any name or alias), or 全部."""
    tr, draft = turn.tr, turn.draft
    notes: list[str] = []
    candidates: list[Unit] = []
    async with turn.svc.db.session() as session:
        for word in [w for w in SPLIT.split(text_of(turn.update)) if w]:
            if await _add_exact_audience(session, draft, word):
                continue
            units = await find_units(session, word, partial=True)
            if len(units) == 1:
                _toggle(draft.audience, "units", units[0].id, add_only=True)
            elif units:
                candidates += units
                notes.append(tr("notices.new.ambiguous_unit", text=escape(word[:40]),
                                units=tr.join(escape(tr.name(u.name)) for u in units)))
            else:
                notes.append(tr("notices.new.unknown_unit", text=escape(word[:40])))
    choices = [(tr.name(u.name), f"{NEW}:a:u:{u.id}") for u in candidates]
    return await turn.offer(AUDIENCE, notes, choices,
                            Button(tr("notices.button.next"), f"{NEW}:a:next", Style.primary))


async def audience_pressed(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    data, audience = turn.query_data, draft.audience
    if data == f"{NEW}:a:next":
        if not _chosen(audience):
            return await turn.alert(AUDIENCE, tr("notices.new.no_audience_yet"))
        draft.audience_done = True
        await turn.closing(await _audience_label(svc, tr, audience))
        return await turn.advance()
    if data == f"{NEW}:a:all":
        was = audience.get("all")
        audience.clear()
        if not was:
            audience["all"] = True
    else:
        match = re.fullmatch(rf"{NEW}:a:([zu]):(\d+)", data)
        model = {"z": Zone, "u": Unit}.get(match.group(1)) if match else None
        item = parse_id(match.group(2)) if match else None
        async with svc.db.session() as session:
            found = await session.get(model, item) if model and item else None
        if found is None or match is None:
            return await turn.alert(AUDIENCE, tr("errors.stale_button"))
        _toggle(audience, "zones" if match.group(1) == "z" else "units", found.id)
    return await turn.reshow(AUDIENCE)


async def text_given(turn: Turn) -> int:
    """The text, or a photo/document (its caption is the text; without one, asked next)."""
    tr, draft, update = turn.tr, turn.draft, turn.update
    message = update.effective_message
    attachment = flow.attachment_of(message)
    if attachment is None and message is not None and not message.text:
        return await turn.stay(TEXT, tr("notices.new.text_expected"))
    text = clean_text(text_of(update))
    if attachment is not None:
        draft.attachment = attachment
        if not text and not draft.text:
            return await turn.stay(TEXT, tr("notices.new.attachment_added"))
    if text:
        if problem := text_problem(text):
            return await turn.stay(TEXT, tr(f"notices.new.text_{problem}", limit=TEXT_MAX,
                                            length=len(text)))
        draft.text = text
    elif not draft.text:
        return await turn.stay(TEXT, tr("notices.new.text_empty"))
    return await turn.advance()


async def when_given(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    if turn.update.callback_query is not None:
        draft.scheduled_for = None
        await turn.closing(tr("notices.button.send_now"))
        return await turn.ask(CONFIRM)
    text = text_of(turn.update).strip()
    try:
        when = parse_deadline(text, svc.now(), flow.reader_zone_name(svc, turn.actor))
    except DeadlineError as error:
        code = error.code if error.code in {"in_the_past", "too_far"} else "unrecognised"
        return await turn.stay(WHEN, tr(f"notices.new.time_{code}", text=escape(text[:40])))
    draft.scheduled_for = when.isoformat()
    return await turn.ask(CONFIRM)


async def confirm_pressed(turn: Turn) -> int:
    svc, tr, draft, actor = turn.svc, turn.tr, turn.draft, turn.actor
    query = turn.update.callback_query
    assert query is not None
    verb, _, token = turn.query_data.removeprefix(f"{NEW}:").partition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, NEW_NOTICE.kind):
        return await handled(CONFIRM)
    if verb == "when":
        await query.answer()
        return await turn.ask(WHEN)
    if verb != "send" or token != draft.token or NEW_NOTICE.next_state(draft) != CONFIRM:
        return await turn.alert(CONFIRM, tr("errors.stale_button"))
    assert draft.kind is not None and draft.severity is not None and draft.text is not None
    when = draft.scheduled_for
    notice_draft = NoticeDraft(
        kind=NoticeKind(draft.kind), severity=Severity(draft.severity), text=draft.text,
        audience=dict(draft.audience), attachment=draft.attachment,
        scheduled_for=datetime.fromisoformat(when) if when else None,
        submission_key=draft.id)

    async def create(session: AsyncSession) -> tuple[str, int]:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        notice = await service.create_notice(session, notice_draft, actor=user, now=svc.now(),
                                             policy=policy(svc))
        return notice.number, len(await store.room_states(session, notice))

    try:
        number, rooms = await NEW_NOTICE.submit(turn, create)
    except AlreadySubmitted as done:
        end_draft(turn.context, token, NEW_NOTICE.draft_key)
        await query.answer()
        await reply(turn.update, tr("notices.new.already_sent", number=done.numbers[0]))
        return await turn.end()
    except NoticeProblem as problem:
        await query.answer()
        notes = [tr(f"notices.problem.{problem.code}", **problem.values)]
        if problem.code in ("no_rooms", "no_audience"):
            draft.audience_done = False
        step = {"time_past": WHEN, "no_rooms": AUDIENCE, "no_audience": AUDIENCE}.get(
            problem.code, CONFIRM)
        return await turn.ask(step, notes)
    svc.wake_delivery()
    await svc.rescheduled(plan.NAME)
    await turn.closing(tr("notices.button.send"))
    if when:
        await reply(turn.update, tr("notices.new.scheduled", number=number, when=render.local_time(
            datetime.fromisoformat(when), flow.reader_zone(svc, actor), with_year=True)))
    else:
        await reply(turn.update, tr("notices.new.sent", number=number, rooms=rooms))
    return await turn.end()


