"""Notices broadcast to duty rooms, their deliveries and their yearly numbering, and one
room's delivery as it is read back (`RoomState`, storage.notices.room_states)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import NoticeKind
from core.enums import NoticeStatus
from core.enums import OutboxState
from core.enums import Severity
from storage.models.base import Base
from storage.models.base import IntPK
from storage.models.base import Timestamp
from storage.models.base import UserRef
from storage.models.base import belongs_to
from storage.models.base import str_enum

if TYPE_CHECKING:
    from storage.models.access import DutyRoom
    from storage.models.access import User
    from storage.models.directory import Unit


class Notice(Base):
    """A coordinator's broadcast (通报) to duty rooms, acknowledged per room."""

    __tablename__ = "notices"

    id: Mapped[IntPK]
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
    created_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]
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

    id: Mapped[IntPK]
    notice_id: Mapped[int] = belongs_to("notices")
    duty_room_id: Mapped[int] = belongs_to("duty_rooms")
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[UserRef]
    acknowledged_revision: Mapped[int | None] = mapped_column(Integer)
    reminded_at: Mapped[datetime | None]
    # The outbox row that put the notice in the room (edits and delivery state use it).
    message_key: Mapped[str | None] = mapped_column(String(200))

    notice: Mapped[Notice] = relationship(back_populates="deliveries")
    duty_room: Mapped[DutyRoom] = relationship()

    __table_args__ = (UniqueConstraint("notice_id", "duty_room_id"),)


@dataclass
class RoomState:
    """One room's delivery of a notice, as the status message and the report show it."""

    delivery: NoticeDelivery
    room: DutyRoom
    unit: Unit
    acknowledger: User | None
    outbox_state: OutboxState | None
    delivered_at: datetime | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.outbox_state is OutboxState.failed and self.delivery.acknowledged_at is None

    @property
    def acknowledged(self) -> bool:
        return self.delivery.acknowledged_at is not None
