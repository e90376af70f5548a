"""Assistance requests between units, their events and their yearly numbering."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import RequestStatus
from core.enums import Urgency
from storage.models.base import Base
from storage.models.base import IntPK
from storage.models.base import Timestamp
from storage.models.base import UserRef
from storage.models.base import belongs_to
from storage.models.base import str_enum

if TYPE_CHECKING:
    from storage.models.access import User
    from storage.models.directory import Mechanism
    from storage.models.directory import Unit


class AssistanceRequest(Base):
    """A logged request (协作请求/协查) from one unit to another under a mechanism."""

    __tablename__ = "assistance_requests"

    id: Mapped[IntPK]
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
    created_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]
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

    __mapper_args__ = {"version_id_col": version}

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

    __table_args__ = (
        Index("ix_assistance_requests_target_status", "to_unit_id", "status"),
        # One request per target unit per draft: a draft submitted twice (its
        # confirmation pressed again after a restart) cannot store a second one.
        Index("ix_assistance_requests_submission", "submission_key", "to_unit_id", unique=True),
    )


class RequestEvent(Base):
    __tablename__ = "request_events"

    id: Mapped[IntPK]
    request_id: Mapped[int] = belongs_to("assistance_requests", index=True)
    at: Mapped[Timestamp]
    actor_id: Mapped[UserRef]
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
