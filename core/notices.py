"""Notices (通报) without I/O: the settings that matter, the draft and its problems, text
and audience rules, who may create or acknowledge, the keys of their outbox rows, the
收到 button's data and the verdicts on a press (views/notices.py renders them,
services/notices.py applies them).

Keys: the room message is `notice:<id>:room:<room id>` (kept as the delivery's
`message_key`), its edits `…:rev<n>`, `…:ack:r<n>`, `…:withdrawn`, its reminder
`…:remind`; the coordinator's status message is `notice:<id>:status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any

from core import requests as rules
from core.enums import NoticeKind
from core.enums import Role
from core.enums import Severity
from core.enums import role_permits

PREFIX = "TB"
TEXT_MAX = 3000
CALLBACK = "ntk"  # the 收到 button: ntk:<notice id>:<room id>:<revision>
MAX_ID = 2**31 - 1  # ids and revisions are 32-bit integer columns on PostgreSQL
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
    """What the coordinator decided; validated by the handler and again when stored."""

    kind: NoticeKind
    severity: Severity
    text: str
    audience: dict[str, Any]  # {"all": true} or {"zones": [ids], "units": [ids]}
    attachment: dict[str, Any] | None = None  # {"type": "photo"|"document", "file_id"...}
    scheduled_for: datetime | None = None
    # The draft's identity (handlers: made when the flow starts); stored with the notice.
    submission_key: str | None = None


class NoticeProblem(rules.StoreProblem):
    """A notice's draft or change cannot be stored."""


# --------------------------------------------------------------------------- text, audience


def clean_text(text: str | None) -> str:
    return rules.clean_block(text)


def text_problem(text: str) -> str | None:
    """None, "empty" or "too_long" for a cleaned notice text."""
    problem = rules.text_problem(text, TEXT_MAX)
    return problem.value if problem else None


def clean_audience(audience: dict[str, Any]) -> dict[str, Any] | None:
    """The audience as stored: all rooms, or sorted zone and unit ids; None when empty."""
    if audience.get("all"):
        return {"all": True}
    zones = sorted({int(z) for z in audience.get("zones") or []})
    units = sorted({int(u) for u in audience.get("units") or []})
    if not zones and not units:
        return None
    return {"zones": zones, "units": units}


def went_late(scheduled_for: datetime | None, sent_at: datetime | None) -> bool:
    """A scheduled notice sent more than a minute after its time (the bot was down)."""
    return scheduled_for is not None and sent_at is not None and \
        sent_at - scheduled_for > timedelta(minutes=1)


# --------------------------------------------------------------------------- who may


def may_create(role: Role | None, *, active: bool) -> bool:
    """Active coordinators (and administrators) create, correct and withdraw notices."""
    return active and role_permits(role, Role.coordinator)


def may_acknowledge(role: Role | None, unit_id: int | None, *, active: bool,
                    room_unit_id: int) -> bool:
    """Members of the room's unit, and coordinators, may press 收到 for a room."""
    if not active:
        return False
    return unit_id == room_unit_id or role_permits(role, Role.coordinator)


# --------------------------------------------------------------------------- keys, buttons


def status_key(notice_id: int) -> str:
    return f"notice:{notice_id}:status"


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


def parse_id(text: str | None) -> int | None:
    """A row id from button data; None for anything no row can have."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def parse_ack_data(data: str | None) -> tuple[int, int, int] | None:
    """(notice id, room id, revision) of a 收到 press; None for anything else."""
    parts = (data or "").split(":")
    if len(parts) != 4 or parts[0] != CALLBACK:
        return None
    notice_id, room_id, revision = (parse_id(p) for p in parts[1:])
    if notice_id is None or room_id is None or revision is None:
        return None
    return notice_id, room_id, revision


class Verdict(StrEnum):
    """What a 收到 press came to."""

    done = "done"
    not_found = "not_found"  # forged, foreign or unknown button
    not_allowed = "not_allowed"  # not a member of the room's unit, nor a coordinator
    withdrawn = "withdrawn"
    already = "already"  # acknowledged before (this revision or a later one)


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Tally:
    """A notice's rooms counted by state (storage.notices.tallies)."""

    rooms: int
    delivered: int
    acknowledged: int
    failed: int
    reminded: int

    @property
    def pending(self) -> int:
        return max(self.rooms - self.acknowledged - self.failed, 0)


# A notice that went to no room yet (a draft, or one scheduled for later).
NO_ROOMS = Tally(rooms=0, delivered=0, acknowledged=0, failed=0, reminded=0)
