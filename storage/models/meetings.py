"""Meetings and the units taking part, with their answers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import MeetingKind
from core.enums import MeetingStatus
from core.enums import Rsvp
from storage.models.base import Base
from storage.models.base import Code
from storage.models.base import IntPK
from storage.models.base import UserRef
from storage.models.base import belongs_to
from storage.models.base import str_enum

if TYPE_CHECKING:
    from storage.models.directory import Unit
    from storage.models.directory import Zone


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[IntPK]
    code: Mapped[Code | None]
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
    created_by_id: Mapped[UserRef]
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

    id: Mapped[IntPK]
    meeting_id: Mapped[int] = belongs_to("meetings")
    unit_id: Mapped[int] = belongs_to("units")
    rsvp: Mapped[Rsvp] = mapped_column(str_enum(Rsvp), default=Rsvp.pending)
    delegate: Mapped[str | None] = mapped_column(String(120))
    responded_by_id: Mapped[UserRef]
    responded_at: Mapped[datetime | None]

    meeting: Mapped[Meeting] = relationship(back_populates="participants")
    unit: Mapped[Unit] = relationship()

    __table_args__ = (UniqueConstraint("meeting_id", "unit_id"),)
