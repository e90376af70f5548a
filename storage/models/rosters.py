"""Rotations: the duty rosters of duty rooms (officers, overrides, swaps, previewed
changes) and the chair rotation of a zone's joint meeting."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import RosterChangeStatus
from core.enums import ShiftPattern
from core.enums import SwapStatus
from storage.models.base import Base
from storage.models.base import IntPK
from storage.models.base import Timestamp
from storage.models.base import UserRef
from storage.models.base import belongs_to
from storage.models.base import str_enum

if TYPE_CHECKING:
    from storage.models.access import DutyRoom
    from storage.models.directory import Unit
    from storage.models.directory import Zone


class Roster(Base):
    """The rotation of duty officers in a duty room (值班表)."""

    __tablename__ = "rosters"

    id: Mapped[IntPK]
    duty_room_id: Mapped[int] = belongs_to("duty_rooms", unique=True)
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

    id: Mapped[IntPK]
    roster_id: Mapped[int] = belongs_to("rosters")
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    phone: Mapped[str | None] = mapped_column(String(40))
    user_id: Mapped[UserRef]
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger)

    roster: Mapped[Roster] = relationship(back_populates="members")

    __table_args__ = (UniqueConstraint("roster_id", "position"),)


class ShiftOverride(Base):
    """A single shift given to someone other than the rotation's officer (also swaps)."""

    __tablename__ = "shift_overrides"

    id: Mapped[IntPK]
    roster_id: Mapped[int] = belongs_to("rosters")
    shift_start: Mapped[datetime]
    member_id: Mapped[int] = belongs_to("roster_members")
    reason: Mapped[str | None] = mapped_column(String(200))
    swap_id: Mapped[int | None] = belongs_to("shift_swaps")
    created_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]

    __table_args__ = (UniqueConstraint("roster_id", "shift_start"),)


class ShiftSwap(Base):
    """Two officers trading shifts; effective once the other officer or a coordinator confirms."""

    __tablename__ = "shift_swaps"

    id: Mapped[IntPK]
    roster_id: Mapped[int] = belongs_to("rosters")
    requester_member_id: Mapped[int] = mapped_column(ForeignKey("roster_members.id"))
    requester_shift_start: Mapped[datetime]
    counterpart_member_id: Mapped[int] = mapped_column(ForeignKey("roster_members.id"))
    counterpart_shift_start: Mapped[datetime]
    status: Mapped[SwapStatus] = mapped_column(str_enum(SwapStatus), default=SwapStatus.proposed)
    created_by_id: Mapped[UserRef]
    decided_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]
    decided_at: Mapped[datetime | None]


class RosterChange(Base):
    """A previewed change to a room's officers or shift pattern (/roster edit), written to
    the roster only when someone presses 确认; its id is in the preview's buttons, so a
    button of a cancelled, confirmed or superseded preview is recognised as dead."""

    __tablename__ = "roster_changes"

    id: Mapped[IntPK]
    duty_room_id: Mapped[int] = belongs_to("duty_rooms", index=True)
    status: Mapped[RosterChangeStatus] = mapped_column(
        str_enum(RosterChangeStatus), default=RosterChangeStatus.pending)
    # What to apply: pattern, shift_starts, anchor_date, timezone, officers (as parsed).
    change: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The roster as it was previewed (storage.roster.roster_fingerprint).
    basis: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]
    decided_by_id: Mapped[UserRef]
    decided_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- chair rotation


class ChairRotation(Base):
    """The order in which member units chair a zone's joint meeting (轮值)."""

    __tablename__ = "chair_rotations"

    id: Mapped[IntPK]
    zone_id: Mapped[int] = belongs_to("zones", unique=True)
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

    id: Mapped[IntPK]
    rotation_id: Mapped[int] = belongs_to("chair_rotations")
    position: Mapped[int] = mapped_column(Integer)
    unit_id: Mapped[int] = belongs_to("units")

    unit: Mapped[Unit] = relationship()

    __table_args__ = (UniqueConstraint("rotation_id", "position"),)
