"""The domain's closed vocabularies (roles, statuses, kinds), shared by every layer: the
models store them, the rules decide by them, the catalogues name them.

A vocabulary is one line, its words in order (the order ranks them where it matters:
unit levels most senior first); one whose words want a gloss or a behaviour is a class.
Every value is its member's name."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    officer = "officer"
    duty_officer = "duty_officer"
    coordinator = "coordinator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANKS = {role: rank for rank, role in enumerate(Role)}  # every guarded update asks


def role_permits(role: Role | None, minimum: Role | None) -> bool:
    """None as minimum means anyone, registered or not; None as role means unregistered."""
    return minimum is None or (role is not None and role.at_least(minimum))


UnitLevel = enum.StrEnum("UnitLevel", "ministry province city county")
MembershipKind = enum.StrEnum("MembershipKind", "member partner")
LiaisonRole = enum.StrEnum("LiaisonRole", "primary backup")
AgreementStatus = enum.StrEnum("AgreementStatus", "draft in_force superseded expired")


class Urgency(enum.StrEnum):
    flash = "flash"  # 特急
    urgent = "urgent"  # 加急
    routine = "routine"  # 平急


RequestStatus = enum.StrEnum(
    "RequestStatus", "open accepted declined transferred completed cancelled")


class MeetingKind(enum.StrEnum):
    joint = "joint"  # 联席会议
    area = "area"  # 片会
    regular = "regular"  # 例会
    drill = "drill"  # 演练
    training = "training"  # 培训


MeetingStatus = enum.StrEnum("MeetingStatus", "scheduled cancelled")
Rsvp = enum.StrEnum("Rsvp", "pending attend decline delegate")


class ShiftPattern(enum.StrEnum):
    daily = "daily"  # 24 h shifts from a fixed time (08:30)
    day_night = "day_night"  # two shifts a day (08:00 and 20:00)
    weekly = "weekly"  # one officer a week


SwapStatus = enum.StrEnum("SwapStatus", "proposed confirmed rejected cancelled")


class RosterChangeStatus(enum.StrEnum):
    pending = "pending"  # previewed, waiting for 确认 or 取消
    confirmed = "confirmed"
    cancelled = "cancelled"
    superseded = "superseded"  # a newer preview for the same room replaced it


class NoticeKind(enum.StrEnum):
    situation = "situation"  # 形势通报
    warning = "warning"  # 预警
    instruction = "instruction"  # 情报指令
    work = "work"  # 工作通知


Severity = enum.StrEnum("Severity", "info important critical")
NoticeStatus = enum.StrEnum("NoticeStatus", "draft scheduled sent withdrawn")
OutboxState = enum.StrEnum("OutboxState", "pending sending sent failed")
