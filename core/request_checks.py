"""What a request must pass before it is stored or changed: the settings' policy, a
draft's problems, a press's verdict, an action's note or unit.

Plain functions of their arguments, like core/requests.py (which holds the rules they
apply); services/requests.py runs them inside the unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any

from core import requests as rules
from core.clock import time_zone
from core.enums import RequestStatus
from core.enums import Role
from core.enums import Urgency
from core.requests import Action
from core.requests import Press
from core.schedule import DEFAULT_ACK_DEADLINES

# --------------------------------------------------------------------------- policy


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

    def numbering_year(self, now: datetime) -> int:
        """The year a request made at `now` is numbered in: the configured zone's."""
        return now.astimezone(time_zone(None, self.timezone)).year


# --------------------------------------------------------------------------- drafts


@dataclass
class Draft:
    """What the requester decided; validated by the handler and again when stored."""

    target_unit_ids: list[int]
    mechanism_id: int | None
    urgency: Urgency
    subject: str
    details: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_due_at: datetime | None = None
    # The draft's identity (handlers: made when the flow starts); stored with each request.
    submission_key: str | None = None


class DraftProblem(rules.StoreProblem):
    """A request's draft cannot be stored."""


@dataclass(frozen=True)
class CleanDraft:
    """A draft's texts cleaned and its targets without repeats, in the order chosen."""

    subject: str
    details: str
    targets: list[int]


def check_draft(draft: Draft, *, own_unit_id: int | None, now: datetime) -> CleanDraft:
    """Everything about a draft that needs no database, or DraftProblem for the first
    thing wrong (the units and mechanism it names are looked up after)."""
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
    if own_unit_id is None:
        raise DraftProblem("no_own_unit")
    if own_unit_id in targets:
        raise DraftProblem("own_unit_target")
    if len(draft.attachments) > rules.ATTACHMENTS_MAX:
        raise DraftProblem("too_many_attachments", limit=rules.ATTACHMENTS_MAX)
    if draft.reply_due_at is not None and draft.reply_due_at <= now:
        raise DraftProblem("deadline_past")
    return CleanDraft(subject, details, targets)


# --------------------------------------------------------------------------- presses


class Verdict(StrEnum):
    done = "done"
    not_found = "not_found"
    not_allowed = "not_allowed"  # not their unit
    stale = "stale"  # someone acted first, or the button is from an older state
    invalid = "invalid"  # e.g. transfer to the same unit


def press_verdict(
    press: Press, role: Role | None, unit_id: int | None, *, from_unit_id: int,
    to_unit_id: int, status: RequestStatus, version: int,
) -> Verdict:
    """Whether this person's press may act on a request in this state and version."""
    if not rules.may_act(press.action, role, unit_id, from_unit_id=from_unit_id,
                         to_unit_id=to_unit_id):
        return Verdict.not_allowed
    if not rules.allowed(press.action, status) or version != press.version:
        return Verdict.stale
    return Verdict.done


def action_problem(
    action: Action, note: str | None, *, transfer_to_id: int | None, from_unit_id: int,
    to_unit_id: int,
) -> str | None:
    """What is missing or wrong in an action's (cleaned) note or transfer unit, as an
    `requests.act.<problem>` catalogue key; None when it may go ahead."""
    if action in rules.NEEDS_NOTE and not note:
        return "note_empty"
    if note and len(note) > rules.NOTE_MAX:
        return "note_too_long"
    if action in rules.NEEDS_UNIT:
        if transfer_to_id is None:
            return "transfer_unit_missing"
        if transfer_to_id in (to_unit_id, from_unit_id):
            return "transfer_same_unit"
    return None
