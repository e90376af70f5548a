"""The answers to /request's questions after the target units (request_new.py):
mechanism, urgency, subject, details, attachments, deadline; and at the summary, the
edits and the submission that creates one request per target unit."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import requests as rules
from core.enums import Urgency
from core.request_checks import Draft
from core.request_checks import DraftProblem
from core.timeparse import DeadlineError
from core.timeparse import parse_deadline
from handlers import flow
from handlers.common import confirmation_open
from handlers.common import end_draft
from handlers.common import escape
from handlers.common import handled
from handlers.common import message_text
from handlers.common import reply
from handlers.request_common import DB_ID
from handlers.request_common import NEW
from handlers.request_common import policy
from handlers.request_new import CONFIRM
from handlers.request_new import DEADLINE
from handlers.request_new import DETAILS
from handlers.request_new import MECHANISM
from handlers.request_new import NEW_REQUEST
from handlers.request_new import SUBJECT
from handlers.request_new import SUBMIT
from handlers.request_new import URGENCY
from handlers.request_new import Turn
from services import requests as service
from storage import requests as store
from storage.access import user_by_telegram_id
from storage.db import AlreadySubmitted
from storage.models import Mechanism
from views import requests as render


async def mechanism_chosen(turn: Turn) -> int:
    tr, update = turn.tr, turn.update
    query = update.callback_query
    match = re.fullmatch(rf"{NEW}:m:{DB_ID}", turn.query_data) if query else None
    async with turn.svc.db.session() as session:
        if query is not None:
            mechanism = await session.get(Mechanism, int(match.group(1))) if match else None
        else:
            mechanism = await store.find_mechanism(session, message_text(update))
    if mechanism is None:
        return await turn.unclear(MECHANISM, tr("requests.new.unknown_mechanism",
                                                query=escape(message_text(update)[:40])))
    turn.draft.mechanism = mechanism.id
    await turn.closing(escape(tr.name(mechanism.name)))
    return await turn.advance()


async def urgency_chosen(turn: Turn) -> int:
    tr, typed = turn.tr, message_text(turn.update)
    urgency = turn.pressed(f"{NEW}:u:", Urgency) if turn.update.callback_query \
        else rules.parse_urgency(typed)
    if urgency is None:
        return await turn.unclear(URGENCY, tr("requests.new.unknown_urgency",
                                              query=escape(typed[:40])))
    turn.draft.urgency = urgency.value
    await turn.closing(render.urgency_label(tr, urgency))
    return await turn.advance()


async def subject_typed(turn: Turn) -> int:
    subject = rules.clean_line(message_text(turn.update))
    problem = rules.text_problem(subject, rules.SUBJECT_MAX)
    if problem is not None:
        return await turn.stay(SUBJECT, turn.tr(f"requests.new.subject_{problem.value}",
                                                length=len(subject), limit=rules.SUBJECT_MAX))
    turn.draft.subject = subject
    return await turn.advance()


async def details_given(turn: Turn) -> int:
    tr = turn.tr
    if turn.update.callback_query is not None:
        turn.draft.details = ""
        await turn.closing(tr("requests.button.skip"))
        return await turn.advance()
    details = rules.clean_block(message_text(turn.update))
    if len(details) > rules.DETAILS_MAX:
        return await turn.stay(DETAILS, tr("requests.new.details_too_long", length=len(details),
                                           limit=rules.DETAILS_MAX))
    if not details:
        return await turn.stay(DETAILS, tr("requests.new.text_expected"))
    turn.draft.details = details
    return await turn.advance()


def attachment_handler(state: int) -> Any:
    """A photo or document for the draft (in the attachment step, or at the summary)."""

    async def attach(turn: Turn) -> int:
        tr, attachments = turn.tr, turn.draft.attachments
        attachment = flow.attachment_of(turn.update.effective_message)
        if attachment is None:
            return await turn.stay(state, tr("requests.new.attachment_expected"))
        if len(attachments) >= rules.ATTACHMENTS_MAX:
            return await turn.stay(state, tr("requests.new.too_many_attachments",
                                             limit=rules.ATTACHMENTS_MAX))
        attachments.append(attachment)
        return await turn.stay(state, tr("requests.new.attachment_added", n=len(attachments)))

    return NEW_REQUEST.on(attach)


async def attachments_done(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    draft.attachments_done = True
    count = len(draft.attachments)
    await turn.closing(tr("requests.new.attachment_added", n=count) if count
                       else tr("requests.button.skip"))
    return await turn.advance()


async def deadline_given(turn: Turn) -> int:
    svc, tr, draft = turn.svc, turn.tr, turn.draft
    if turn.update.callback_query is not None:
        draft.reply_due, draft.deadline_done = None, True
        await turn.closing(tr("requests.button.no_deadline"))
        return await turn.advance()
    text = message_text(turn.update).strip()
    try:
        due = parse_deadline(text, svc.now(), flow.reader_zone_name(svc, turn.actor))
    except DeadlineError as error:
        key = {"in_the_past": "deadline_past", "too_far": "deadline_too_far"}.get(
            error.code, "deadline_invalid")
        return await turn.stay(DEADLINE, tr(f"requests.new.{key}", text=escape(text[:40])))
    draft.reply_due, draft.deadline_done = due.isoformat(), True
    return await turn.advance()


async def confirm_pressed(turn: Turn) -> int:
    tr, draft = turn.tr, turn.draft
    query = turn.update.callback_query
    assert query is not None
    data, _, token = turn.query_data.rpartition(":")
    if not await confirmation_open(turn.update, turn.context, tr, token, SUBMIT):
        return await handled(CONFIRM)
    if data in (f"{NEW}:edit:details", f"{NEW}:edit:deadline"):
        draft.editing = True
        await query.answer()
        return await turn.ask(DETAILS if data.endswith("details") else DEADLINE)
    if data != f"{NEW}:submit" or token != draft.token:
        return await turn.alert(CONFIRM, tr("errors.stale_button"))
    return await _submit(turn)


async def _submit(turn: Turn) -> int:
    svc, tr, draft, actor = turn.svc, turn.tr, turn.draft, turn.actor
    query = turn.update.callback_query
    assert query is not None and draft.urgency is not None and draft.subject is not None
    request_draft = Draft(
        target_unit_ids=list(draft.targets), mechanism_id=draft.mechanism,
        urgency=Urgency(draft.urgency), subject=draft.subject,
        details=draft.details or "", attachments=list(draft.attachments),
        reply_due_at=datetime.fromisoformat(draft.reply_due) if draft.reply_due else None,
        submission_key=draft.id,
    )

    async def create(session: AsyncSession) -> tuple[service.Created, dict[int, str | None]]:
        user = await user_by_telegram_id(session, actor.telegram_id)
        assert user is not None
        created = await service.create_requests(session, request_draft, actor=user,
                                                now=svc.now(), policy=policy(svc))
        return created, {r.to_unit_id: r.to_unit.duty_phone for r, _ in created.undelivered}

    try:
        created, phones = await NEW_REQUEST.submit(turn, create)
    except DraftProblem as problem:
        await query.answer()
        return await turn.ask(CONFIRM, [
            tr(f"requests.new.problem.{problem.code}", **problem.values)])
    except AlreadySubmitted as done:
        end_draft(turn.context, draft.token, NEW_REQUEST.draft_key)
        await query.answer()
        await reply(turn.update, tr("requests.new.already_submitted", numbers=tr.join(
            f"<code>{number}</code>" for number in done.numbers)))
        return await turn.end()
    svc.wake_delivery()
    await svc.rescheduled("requests")
    await turn.closing(tr("requests.button.submit"))
    lines = [tr("requests.new.created")]
    lines += [tr("requests.new.created_line", number=f"<code>{r.number}</code>",
                 unit=escape(tr.name(r.to_unit.name))) for r in created.requests]
    first = created.requests[0]
    lines.append(tr("requests.new.ack_hint",
                    ack=render.duration(tr, first.ack_due_at - first.created_at)))
    for request, told in created.undelivered:
        lines.append(tr("requests.new.created_undelivered",
                        unit=escape(tr.name(request.to_unit.name)),
                        count=told, phone=escape(phones.get(request.to_unit_id) or "—")))
    await reply(turn.update, "\n".join(lines))
    return await turn.end()


