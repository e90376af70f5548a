"""The domain of DOMAIN.md as typed SQLAlchemy models.

Times are stored in UTC (`UTCDateTime` gives aware datetimes back on SQLite too);
rendering in a unit's time zone happens at the edge.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.enums import (
    AgreementStatus,
    LiaisonRole,
    MeetingKind,
    MeetingStatus,
    MembershipKind,
    NoticeKind,
    NoticeStatus,
    OutboxState,
    RequestStatus,
    Role,
    RosterChangeStatus,
    Rsvp,
    Severity,
    ShiftPattern,
    SwapStatus,
    UnitLevel,
    Urgency,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum_cls: type[enum.Enum]) -> Enum:
    return Enum(
        enum_cls,
        native_enum=False,
        length=24,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# --------------------------------------------------------------------------- directory


class Zone(Base):
    """A cooperation area (协作区) with member units, agreements and a joint meeting."""

    __tablename__ = "zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    short_name: Mapped[str] = mapped_column(String(60))
    english: Mapped[str | None] = mapped_column(String(120))
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(Text)

    memberships: Mapped[list[ZoneMembership]] = relationship(
        back_populates="zone", cascade="all, delete-orphan"
    )


class Unit(Base):
    """A public-security body; units form a tree (province → city → county)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    short_name: Mapped[str] = mapped_column(String(60))
    abbreviation: Mapped[str | None] = mapped_column(String(8))
    english: Mapped[str | None] = mapped_column(String(120))
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    level: Mapped[UnitLevel] = mapped_column(str_enum(UnitLevel), default=UnitLevel.province)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    timezone: Mapped[str | None] = mapped_column(String(64))
    duty_phone: Mapped[str | None] = mapped_column(String(40))

    parent: Mapped[Unit | None] = relationship(remote_side="Unit.id", back_populates="children")
    children: Mapped[list[Unit]] = relationship(back_populates="parent")
    memberships: Mapped[list[ZoneMembership]] = relationship(back_populates="unit")
    liaisons: Mapped[list[Liaison]] = relationship(back_populates="unit")
    duty_rooms: Mapped[list[DutyRoom]] = relationship(back_populates="unit")


class ZoneMembership(Base):
    __tablename__ = "zone_memberships"
    __table_args__ = (UniqueConstraint("zone_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    kind: Mapped[MembershipKind] = mapped_column(
        str_enum(MembershipKind), default=MembershipKind.member
    )

    zone: Mapped[Zone] = relationship(back_populates="memberships")
    unit: Mapped[Unit] = relationship(back_populates="memberships")


class Branch(Base):
    """A police branch (警种), with aliases such as 刑侦/刑警/CID."""

    __tablename__ = "branches"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    english: Mapped[str | None] = mapped_column(String(120))
    aliases: Mapped[list[Any]] = mapped_column(default=list)


class Liaison(Base):
    """A named contact (联络员) for a unit and branch, primary or backup."""

    __tablename__ = "liaisons"
    __table_args__ = (UniqueConstraint("unit_id", "branch_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    branch_id: Mapped[int | None] = mapped_column(
        ForeignKey("branches.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(60))
    # The data file's stable identity for the person, when it gives one: a corrected
    # name or a move to another branch updates this row instead of adding a second.
    key: Mapped[str | None] = mapped_column(String(40), index=True, unique=True)
    title: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[LiaisonRole] = mapped_column(str_enum(LiaisonRole), default=LiaisonRole.primary)
    phones: Mapped[list[Any]] = mapped_column(default=list)
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    telegram_username: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    unit: Mapped[Unit] = relationship(back_populates="liaisons")
    branch: Mapped[Branch | None] = relationship()


class Mechanism(Base):
    """A cooperation mechanism or area (情报信息互享, 反恐防恐) cited by clauses and requests."""

    __tablename__ = "mechanisms"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    english: Mapped[str | None] = mapped_column(String(120))
    aliases: Mapped[list[Any]] = mapped_column(default=list)


# --------------------------------------------------------------------------- people and access


class User(Base):
    """A Telegram account that redeemed an invitation (or is an ADMIN_IDS administrator)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(str_enum(Role), default=Role.officer)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    language: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    private_chat_blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)

    unit: Mapped[Unit | None] = relationship()


class Invitation(Base):
    """A single-use, expiring code bound to a unit and role, handed out as a deep link."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(str_enum(Role))
    note: Mapped[str | None] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None]

    unit: Mapped[Unit] = relationship()


class DutyRoom(Base):
    """A Telegram group registered to a unit (值班室); receives requests, reminders, notices."""

    __tablename__ = "duty_rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    title: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    timezone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    registered_at: Mapped[datetime | None]

    unit: Mapped[Unit] = relationship(back_populates="duty_rooms")
    roster: Mapped[Roster | None] = relationship(back_populates="duty_room", uselist=False)


class ChatStatus(Base):
    """What Telegram told us about a chat: blocked the bot, not found, migrated."""

    __tablename__ = "chat_status"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    unreachable_since: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(200))
    migrated_to_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --------------------------------------------------------------------------- rosters


class Roster(Base):
    """The rotation of duty officers in a duty room (值班表)."""

    __tablename__ = "rosters"

    id: Mapped[int] = mapped_column(primary_key=True)
    duty_room_id: Mapped[int] = mapped_column(
        ForeignKey("duty_rooms.id", ondelete="CASCADE"), unique=True
    )
    pattern: Mapped[ShiftPattern] = mapped_column(str_enum(ShiftPattern))
    # Local date on which the officer at position 0 takes the first shift.
    anchor_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    # Local start times "HH:MM": one for daily/weekly, two for day_night.
    shift_starts: Mapped[list[Any]] = mapped_column(default=list)
    # When it came to exist, by the clock of whoever made it (unknown for older rows):
    # nothing due before that is reported missed. Likewise on meetings and chair rotations.
    created_at: Mapped[datetime | None]

    duty_room: Mapped[DutyRoom] = relationship(back_populates="roster")
    members: Mapped[list[RosterMember]] = relationship(
        back_populates="roster", order_by="RosterMember.position", cascade="all, delete-orphan"
    )


class RosterMember(Base):
    __tablename__ = "roster_members"
    __table_args__ = (UniqueConstraint("roster_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    roster_id: Mapped[int] = mapped_column(ForeignKey("rosters.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    phone: Mapped[str | None] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger)

    roster: Mapped[Roster] = relationship(back_populates="members")


class ShiftOverride(Base):
    """A single shift given to someone other than the rotation's officer (also swaps)."""

    __tablename__ = "shift_overrides"
    __table_args__ = (UniqueConstraint("roster_id", "shift_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    roster_id: Mapped[int] = mapped_column(ForeignKey("rosters.id", ondelete="CASCADE"))
    shift_start: Mapped[datetime]
    member_id: Mapped[int] = mapped_column(ForeignKey("roster_members.id", ondelete="CASCADE"))
    reason: Mapped[str | None] = mapped_column(String(200))
    swap_id: Mapped[int | None] = mapped_column(ForeignKey("shift_swaps.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShiftSwap(Base):
    """Two officers trading shifts; effective once the other officer or a coordinator confirms."""

    __tablename__ = "shift_swaps"

    id: Mapped[int] = mapped_column(primary_key=True)
    roster_id: Mapped[int] = mapped_column(ForeignKey("rosters.id", ondelete="CASCADE"))
    requester_member_id: Mapped[int] = mapped_column(ForeignKey("roster_members.id"))
    requester_shift_start: Mapped[datetime]
    counterpart_member_id: Mapped[int] = mapped_column(ForeignKey("roster_members.id"))
    counterpart_shift_start: Mapped[datetime]
    status: Mapped[SwapStatus] = mapped_column(str_enum(SwapStatus), default=SwapStatus.proposed)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class RosterChange(Base):
    """A previewed change to a room's officers or shift pattern (/roster edit), written to
    the roster only when someone presses 确认; its id is in the preview's buttons, so a
    button of a cancelled, confirmed or superseded preview is recognised as dead."""

    __tablename__ = "roster_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    duty_room_id: Mapped[int] = mapped_column(
        ForeignKey("duty_rooms.id", ondelete="CASCADE"), index=True)
    status: Mapped[RosterChangeStatus] = mapped_column(
        str_enum(RosterChangeStatus), default=RosterChangeStatus.pending)
    # What to apply: pattern, shift_starts, anchor_date, timezone, officers (as parsed).
    change: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The roster as it was previewed (storage.schedules.roster_fingerprint).
    basis: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]


class ChairRotation(Base):
    """The order in which member units chair a zone's joint meeting (轮值)."""

    __tablename__ = "chair_rotations"

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"), unique=True)
    term_months: Mapped[int] = mapped_column(Integer, default=12)
    # Local date on which the unit at position 0 took the chair.
    anchor_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime | None]

    zone: Mapped[Zone] = relationship()
    entries: Mapped[list[ChairRotationEntry]] = relationship(
        order_by="ChairRotationEntry.position", cascade="all, delete-orphan"
    )


class ChairRotationEntry(Base):
    __tablename__ = "chair_rotation_entries"
    __table_args__ = (UniqueConstraint("rotation_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rotation_id: Mapped[int] = mapped_column(ForeignKey("chair_rotations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))

    unit: Mapped[Unit] = relationship()


# --------------------------------------------------------------------------- agreements


class Agreement(Base):
    """A signed framework agreement (协议) with numbered clauses."""

    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    short_title: Mapped[str] = mapped_column(String(80))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"))
    signed_on: Mapped[date | None] = mapped_column(Date)
    signed_at: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[AgreementStatus] = mapped_column(
        str_enum(AgreementStatus), default=AgreementStatus.in_force
    )
    supersedes_id: Mapped[int | None] = mapped_column(
        ForeignKey("agreements.id", ondelete="SET NULL")
    )
    summary: Mapped[str | None] = mapped_column(Text)

    zone: Mapped[Zone | None] = relationship()
    parties: Mapped[list[AgreementParty]] = relationship(cascade="all, delete-orphan")
    clauses: Mapped[list[Clause]] = relationship(
        back_populates="agreement", order_by="Clause.position", cascade="all, delete-orphan"
    )


class AgreementParty(Base):
    __tablename__ = "agreement_parties"
    __table_args__ = (UniqueConstraint("agreement_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))

    unit: Mapped[Unit] = relationship()


class Clause(Base):
    """A numbered clause; `position` orders clauses for previous/next navigation."""

    __tablename__ = "clauses"
    __table_args__ = (UniqueConstraint("agreement_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)

    agreement: Mapped[Agreement] = relationship(back_populates="clauses")
    mechanisms: Mapped[list[Mechanism]] = relationship(secondary="clause_mechanisms")


class ClauseMechanism(Base):
    __tablename__ = "clause_mechanisms"

    clause_id: Mapped[int] = mapped_column(
        ForeignKey("clauses.id", ondelete="CASCADE"), primary_key=True
    )
    mechanism_id: Mapped[int] = mapped_column(
        ForeignKey("mechanisms.id", ondelete="CASCADE"), primary_key=True
    )


# --------------------------------------------------------------------------- requests


class AssistanceRequest(Base):
    """A logged request (协作请求/协查) from one unit to another under a mechanism."""

    __tablename__ = "assistance_requests"
    __table_args__ = (
        Index("ix_assistance_requests_target_status", "to_unit_id", "status"),
        # One request per target unit per draft: a draft submitted twice (its
        # confirmation pressed again after a restart) cannot store a second one.
        Index("ix_assistance_requests_submission", "submission_key", "to_unit_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    group_key: Mapped[str | None] = mapped_column(String(40), index=True)
    from_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    to_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    mechanism_id: Mapped[int | None] = mapped_column(ForeignKey("mechanisms.id"))
    urgency: Mapped[Urgency] = mapped_column(str_enum(Urgency))
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[RequestStatus] = mapped_column(
        str_enum(RequestStatus), default=RequestStatus.open
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ack_due_at: Mapped[datetime | None]
    reply_due_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(Text)
    transferred_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("assistance_requests.id", ondelete="SET NULL")
    )
    # When the request was put in the target unit's duty room (None: undelivered), and the
    # outbox key of that message, so later state changes edit it.
    routed_at: Mapped[datetime | None]
    route_key: Mapped[str | None] = mapped_column(String(200))
    # Optimistic concurrency: two presses at once produce one change.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The identity of the guided flow's draft that created it (None: made otherwise).
    submission_key: Mapped[str | None] = mapped_column(String(32))

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}

    from_unit: Mapped[Unit] = relationship(foreign_keys=[from_unit_id])
    to_unit: Mapped[Unit] = relationship(foreign_keys=[to_unit_id])
    mechanism: Mapped[Mechanism | None] = relationship()
    created_by: Mapped[User | None] = relationship()
    transferred_to: Mapped[AssistanceRequest | None] = relationship(
        remote_side="AssistanceRequest.id", foreign_keys=[transferred_to_id]
    )
    events: Mapped[list[RequestEvent]] = relationship(
        back_populates="request", order_by="RequestEvent.id", cascade="all, delete-orphan"
    )


class RequestEvent(Base):
    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("assistance_requests.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(Text)

    request: Mapped[AssistanceRequest] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()


class RequestCounter(Base):
    """The last request number issued in a year: XZ-2026-000123 is the 123rd of 2026."""

    __tablename__ = "request_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


# --------------------------------------------------------------------------- meetings


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"))
    kind: Mapped[MeetingKind] = mapped_column(str_enum(MeetingKind))
    title: Mapped[str] = mapped_column(String(300))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    timezone: Mapped[str | None] = mapped_column(String(64))
    place: Mapped[str | None] = mapped_column(String(200))
    video_link: Mapped[str | None] = mapped_column(String(500))
    agenda: Mapped[str | None] = mapped_column(Text)
    status: Mapped[MeetingStatus] = mapped_column(
        str_enum(MeetingStatus), default=MeetingStatus.scheduled
    )
    # Minutes before the start at which participants' duty rooms are reminded.
    reminder_offsets: Mapped[list[Any]] = mapped_column(default=lambda: [7 * 24 * 60, 24 * 60, 60])
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime | None]
    # The identity of the /meeting new draft that created it: a draft confirmed twice
    # (its preview pressed again after a restart) cannot store a second meeting.
    submission_key: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)

    zone: Mapped[Zone | None] = relationship()
    participants: Mapped[list[MeetingParticipant]] = relationship(
        back_populates="meeting", cascade="all, delete-orphan",
        order_by="MeetingParticipant.id",  # as added, whichever way they are loaded
    )


class MeetingParticipant(Base):
    __tablename__ = "meeting_participants"
    __table_args__ = (UniqueConstraint("meeting_id", "unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    rsvp: Mapped[Rsvp] = mapped_column(str_enum(Rsvp), default=Rsvp.pending)
    delegate: Mapped[str | None] = mapped_column(String(120))
    responded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    responded_at: Mapped[datetime | None]

    meeting: Mapped[Meeting] = relationship(back_populates="participants")
    unit: Mapped[Unit] = relationship()


# --------------------------------------------------------------------------- notices


class Notice(Base):
    """A coordinator's broadcast (通报) to duty rooms, acknowledged per room."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    kind: Mapped[NoticeKind] = mapped_column(str_enum(NoticeKind))
    severity: Mapped[Severity] = mapped_column(str_enum(Severity), default=Severity.info)
    text: Mapped[str] = mapped_column(Text)
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[NoticeStatus] = mapped_column(str_enum(NoticeStatus), default=NoticeStatus.draft)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    scheduled_for: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # Fixed when the notice goes out, so changing the setting never moves a reminder.
    remind_at: Mapped[datetime | None]
    corrected_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    # Earlier revisions: [{"revision", "text", "at", "by"}], oldest first.
    history: Mapped[list[Any]] = mapped_column(default=list)
    # The identity of the guided flow's draft that created it: a draft sent twice
    # (its confirmation pressed again after a restart) cannot store a second notice.
    submission_key: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)

    deliveries: Mapped[list[NoticeDelivery]] = relationship(
        back_populates="notice", cascade="all, delete-orphan"
    )


class NoticeCounter(Base):
    """The last notice number issued in a year: TB-2026-000123 is the 123rd of 2026."""

    __tablename__ = "notice_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class NoticeDelivery(Base):
    __tablename__ = "notice_deliveries"
    __table_args__ = (UniqueConstraint("notice_id", "duty_room_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"))
    duty_room_id: Mapped[int] = mapped_column(ForeignKey("duty_rooms.id", ondelete="CASCADE"))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    acknowledged_revision: Mapped[int | None] = mapped_column(Integer)
    reminded_at: Mapped[datetime | None]
    # The outbox row that put the notice in the room (edits and delivery state use it).
    message_key: Mapped[str | None] = mapped_column(String(200))

    notice: Mapped[Notice] = relationship(back_populates="deliveries")
    duty_room: Mapped[DutyRoom] = relationship()


# --------------------------------------------------------------------------- delivery and audit


class OutboxMessage(Base):
    """One Bot API call to make, written in the transaction of the change that causes it.

    `dedup_key` makes producers idempotent (a reminder fired twice inserts once);
    `lease_until` lets a crashed worker's in-flight rows be retried, which bounds
    duplicates to what was in flight.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(40), default="sendMessage")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Edits target the message another outbox row produced.
    reply_to_key: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[OutboxState] = mapped_column(str_enum(OutboxState), default=OutboxState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """Who did or saw what, when: every privileged action and every contact shown."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DataEpoch(Base):
    """One counter that triggers move on every change lookups read (storage/cache.py)."""

    __tablename__ = "data_epoch"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)


class ScheduleMark(Base):
    """A scheduled occurrence that did not go out: missed while the bot was down."""

    __tablename__ = "schedule_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    due_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SchedulerHeartbeat(Base):
    """When the scheduler first ran on this database and when it was last alive (one row):
    a start looks for missed occurrences from the last beat, never before the first run."""

    __tablename__ = "scheduler_heartbeat"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    first_alive_at: Mapped[datetime]
    alive_at: Mapped[datetime]
    process: Mapped[str | None] = mapped_column(String(200))


class LeaderLease(Base):
    """Who runs a singleton role (the scheduler: bot/leader.py), as a lease. Times come
    from the database clock; `token` grows by one on every takeover and fences the
    holder's work (a claim commits only while its token holds an unexpired lease)."""

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ScheduleChange(Base):
    """A counter per planner ("*": all of them) that a process moves after a commit that
    changed what is due; the scheduler leader polls them and re-places those jobs."""

    __tablename__ = "schedule_changes"

    planner: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class SendSlots(Base):
    """The next free send slot of a bot, shared by all its processes on PostgreSQL
    (storage/sendbudget.py): seconds since the epoch by the database clock. A process
    books a few slots at once by moving it on; SQLite runs one process and never uses it."""

    __tablename__ = "send_budget"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_slot: Mapped[float] = mapped_column(Float)


class ConversationState(Base):
    """PTB conversation and user/chat data, so a guided flow survives a restart."""

    __tablename__ = "conversation_state"

    namespace: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HandledUpdate(Base):
    """A Telegram update a webhook process took in (bot/runner.WebhookServer): the same
    update_id posted again, to this process or another behind the same URL, is answered
    200 and not handled twice. Rows older than a day are pruned (Telegram gives up
    redelivering long before)."""

    __tablename__ = "handled_updates"

    update_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    received_at: Mapped[datetime] = mapped_column(index=True)


# --------------------------------------------------------------------------- search index


class SearchTokens(TypeDecorator[list[str]]):
    """Search tokens: `text[]` on PostgreSQL (GIN-indexed, `@>`), space-separated text
    on SQLite (indexed by an FTS5 table over the row; see storage/search.py)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return dialect.type_descriptor(ARRAY(Text()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: list[str] | None, dialect: Any) -> Any:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else " ".join(value)

    def process_result_value(self, value: Any, dialect: Any) -> list[str] | None:
        if value is None:
            return None
        return list(value) if isinstance(value, list) else value.split()


class LiaisonSearchRow(Base):
    """One searchable active liaison, written by `storage.search.refresh_search_index`.

    `rowkey` = role rank << 32 | liaison id, so index order is rank order (primary
    before backup) and the first page needs no sort.
    """

    __tablename__ = "search_liaisons"
    __table_args__ = (
        Index("ix_search_liaisons_unit_branch", "unit_id", "branch_id", "rowkey"),
        Index("ix_search_liaisons_unit", "unit_id", "rowkey"),
        Index("ix_search_liaisons_branch", "branch_id", "rowkey"),
        Index("ix_search_liaisons_name", "name", "rowkey"),
        Index("ix_search_liaisons_grams", "grams", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    rowkey: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    liaison_id: Mapped[int] = mapped_column(
        ForeignKey("liaisons.id", ondelete="CASCADE"), unique=True
    )
    unit_id: Mapped[int] = mapped_column(Integer)
    branch_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    doc: Mapped[str] = mapped_column(Text)
    grams: Mapped[list[str]] = mapped_column(SearchTokens())
    chars: Mapped[list[str]] = mapped_column(SearchTokens())
    keys: Mapped[list[str]] = mapped_column(SearchTokens())


class ClauseSearchRow(Base):
    """A clause as searched: kind 0 is heading + mechanism names, kind 1 the whole clause.

    `rowkey` = status rank << 34 | kind << 32 | clause id: in-force before
    superseded, then heading/mechanism matches before matches in the text.
    """

    __tablename__ = "search_clauses"
    __table_args__ = (
        Index("ix_search_clauses_grams", "grams", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )

    rowkey: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    clause_id: Mapped[int] = mapped_column(ForeignKey("clauses.id", ondelete="CASCADE"), index=True)
    agreement_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[int] = mapped_column(Integer)
    status_rank: Mapped[int] = mapped_column(Integer)
    doc: Mapped[str] = mapped_column(Text)
    grams: Mapped[list[str]] = mapped_column(SearchTokens())
    chars: Mapped[list[str]] = mapped_column(SearchTokens())
    keys: Mapped[list[str]] = mapped_column(SearchTokens())
