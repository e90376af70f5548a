"""Reminder plans and escalation deadlines: when something is due, as pure arithmetic.

The scheduler turns these instants into jobs and outbox rows; keeping the arithmetic
here means "when" is tested without a scheduler, a database or a clock. Offsets are
whole minutes before an event, as stored in `Meeting.reminder_offsets`; deadline
windows by urgency are minutes too (settings override them), or timedeltas.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from types import MappingProxyType
from typing import Literal

from core.clock import as_utc

DEFAULT_MEETING_OFFSETS = (7 * 24 * 60, 24 * 60, 60)
# The incoming officer is told privately a day and an hour before the shift.
DEFAULT_SHIFT_OFFSETS = (24 * 60, 60)
# Acknowledgement deadlines by urgency (特急 flash, 加急 urgent, 平急 routine), in minutes.
DEFAULT_ACK_DEADLINES: Mapping[str, int] = MappingProxyType(
    {"flash": 15, "urgent": 2 * 60, "routine": 24 * 60}
)
# Fired this late, a reminder is still "on time": scheduler jitter is not lateness.
DEFAULT_ON_TIME = timedelta(minutes=1)

DueState = Literal["future", "due", "late", "missed"]


def offset_label(minutes: int) -> str:
    """7d, 1d, 1h, 30m, 90m: short and stable, because it is part of reminder keys."""
    minutes = int(minutes)
    if minutes == 0:
        return "0m"
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


@dataclass(frozen=True)
class PlannedReminder:
    """A reminder `offset_minutes` before an event, due at `due_at` (UTC).

    `key_suffix` (the offset label) goes into the outbox dedup key.
    """

    offset_minutes: int
    due_at: datetime
    key_suffix: str = ""

    def __post_init__(self) -> None:
        if not self.key_suffix:
            object.__setattr__(self, "key_suffix", offset_label(self.offset_minutes))

    @property
    def label(self) -> str:
        return self.key_suffix


def _offsets(offsets_minutes: Iterable[int]) -> list[int]:
    """Distinct positive offsets, largest (earliest reminder) first."""
    return sorted({int(m) for m in offsets_minutes if int(m) > 0}, reverse=True)


def reminders_before(start: datetime, offsets_minutes: Iterable[int]) -> list[PlannedReminder]:
    """One reminder per distinct positive offset before `start`, earliest first
    (zero and negative offsets are dropped: a reminder after the start is not one)."""
    start = as_utc(start)
    return [PlannedReminder(minutes, start - timedelta(minutes=minutes))
            for minutes in _offsets(offsets_minutes)]


def classify_due(
    due_at: datetime, now: datetime, grace: timedelta, on_time: timedelta = DEFAULT_ON_TIME
) -> DueState:
    """What to do with an occurrence at `now`.

    future: not yet; due: send now (at most `on_time` late); late: send, marked late
    (at most `grace` late); missed: record it as missed rather than send a stale
    reminder. A grace shorter than `on_time` wins: past the grace it is missed.
    """
    lateness = as_utc(now) - as_utc(due_at)
    if lateness < timedelta(0):
        return "future"
    if lateness > grace:
        return "missed"
    if lateness > on_time:
        return "late"
    return "due"


# --------------------------------------------------------------------------- deadlines


@dataclass(frozen=True)
class Escalation:
    """One escalation step: "remind_room" at the deadline, "alert_coordinators" at twice it."""

    step: str
    due_at: datetime


def _window(deadlines: Mapping[str, int | timedelta], urgency: str) -> timedelta:
    try:
        value = deadlines[urgency]
    except KeyError:
        raise ValueError(f"no acknowledgement deadline for urgency {urgency!r}") from None
    window = value if isinstance(value, timedelta) else timedelta(minutes=value)
    if window <= timedelta(0):
        raise ValueError(f"the {urgency} deadline must be positive")
    return window


def ack_deadline(
    created_at: datetime,
    urgency: str,
    deadlines: Mapping[str, int | timedelta] = DEFAULT_ACK_DEADLINES,
) -> datetime:
    """When the receiving duty room should have acknowledged a request."""
    return as_utc(created_at) + _window(deadlines, urgency)


def escalation_plan(
    created_at: datetime,
    urgency: str,
    deadlines: Mapping[str, int | timedelta] = DEFAULT_ACK_DEADLINES,
) -> list[Escalation]:
    """Remind the duty room when the acknowledgement deadline passes; alert the zone's
    coordinators at twice the deadline. The caller skips steps once acknowledged."""
    created_at, window = as_utc(created_at), _window(deadlines, urgency)
    return [Escalation("remind_room", created_at + window),
            Escalation("alert_coordinators", created_at + 2 * window)]


