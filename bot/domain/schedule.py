"""Reminder plans and escalation deadlines: when something is due, as pure arithmetic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_MEETING_OFFSETS = (7 * 24 * 60, 24 * 60, 60)
DEFAULT_SHIFT_OFFSETS = (24 * 60, 60)
# Acknowledgement deadlines by urgency (特急, 加急, 平急), in minutes.
DEFAULT_ACK_DEADLINES: Mapping[str, int] = {"flash": 15, "urgent": 120, "routine": 24 * 60}


def offset_label(minutes: int) -> str:
    """7d, 1d, 1h, 30m: short, stable, and part of reminder keys."""
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


@dataclass(frozen=True)
class PlannedReminder:
    offset_minutes: int
    due_at: datetime

    @property
    def label(self) -> str:
        return offset_label(self.offset_minutes)


def reminders_before(start: datetime, offsets_minutes: Sequence[int]) -> list[PlannedReminder]:
    """One reminder per distinct positive offset before `start`, earliest first."""
    offsets = sorted({int(m) for m in offsets_minutes if int(m) > 0}, reverse=True)
    return [PlannedReminder(m, start - timedelta(minutes=m)) for m in offsets]


@dataclass(frozen=True)
class Escalation:
    step: str  # "remind_room" at the deadline, "alert_coordinators" at twice it
    due_at: datetime


def ack_deadline(created_at: datetime, urgency: str,
                 deadlines: Mapping[str, int] = DEFAULT_ACK_DEADLINES) -> datetime:
    return created_at + timedelta(minutes=deadlines[urgency])


def escalation_plan(created_at: datetime, urgency: str,
                    deadlines: Mapping[str, int] = DEFAULT_ACK_DEADLINES) -> list[Escalation]:
    """Remind the duty room when the acknowledgement deadline passes; alert the zone's
    coordinators at twice the deadline."""
    window = timedelta(minutes=deadlines[urgency])
    return [Escalation("remind_room", created_at + window),
            Escalation("alert_coordinators", created_at + 2 * window)]
