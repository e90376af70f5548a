"""The domain's closed vocabularies (roles, statuses, kinds), shared by every layer: the
models store them, the rules decide by them, the catalogues name them."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    officer = "officer"
    duty_officer = "duty_officer"
    coordinator = "coordinator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


def role_permits(role: Role | None, minimum: Role | None) -> bool:
    """None as minimum means anyone, registered or not; None as role means unregistered."""
    return minimum is None or (role is not None and role.at_least(minimum))


class UnitLevel(enum.StrEnum):
    ministry = "ministry"
    province = "province"
    city = "city"
    county = "county"


class MembershipKind(enum.StrEnum):
    member = "member"
    partner = "partner"


class LiaisonRole(enum.StrEnum):
    primary = "primary"
    backup = "backup"


class AgreementStatus(enum.StrEnum):
    draft = "draft"
    in_force = "in_force"
    superseded = "superseded"
    expired = "expired"


class Urgency(enum.StrEnum):
    flash = "flash"  # 特急
    urgent = "urgent"  # 加急
    routine = "routine"  # 平急


class RequestStatus(enum.StrEnum):
    open = "open"
    accepted = "accepted"
    declined = "declined"
    transferred = "transferred"
    completed = "completed"
    cancelled = "cancelled"


class MeetingKind(enum.StrEnum):
    joint = "joint"  # 联席会议
    area = "area"  # 片会
    regular = "regular"  # 例会
    drill = "drill"  # 演练
    training = "training"  # 培训


class MeetingStatus(enum.StrEnum):
    scheduled = "scheduled"
    cancelled = "cancelled"


class Rsvp(enum.StrEnum):
    pending = "pending"
    attend = "attend"
    decline = "decline"
    delegate = "delegate"


class ShiftPattern(enum.StrEnum):
    daily = "daily"  # 24 h shifts from a fixed time (08:30)
    day_night = "day_night"  # two shifts a day (08:00 and 20:00)
    weekly = "weekly"  # one officer a week


class SwapStatus(enum.StrEnum):
    proposed = "proposed"
    confirmed = "confirmed"
    rejected = "rejected"
    cancelled = "cancelled"


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


class Severity(enum.StrEnum):
    info = "info"
    important = "important"
    critical = "critical"


class NoticeStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sent = "sent"
    withdrawn = "withdrawn"


class OutboxState(enum.StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
