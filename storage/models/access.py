"""People and access: accounts, invitations, the duty rooms (groups) units registered,
and what Telegram told us about chats."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import Role
from storage.models.base import Base
from storage.models.base import IntPK
from storage.models.base import Timestamp
from storage.models.base import UserRef
from storage.models.base import belongs_to
from storage.models.base import str_enum
from storage.models.base import utcnow

if TYPE_CHECKING:
    from storage.models.directory import Unit
    from storage.models.rosters import Roster


class User(Base):
    """A Telegram account that redeemed an invitation (or is an ADMIN_IDS administrator)."""

    __tablename__ = "users"

    id: Mapped[IntPK]
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(str_enum(Role), default=Role.officer)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    language: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    private_chat_blocked_at: Mapped[datetime | None]
    created_at: Mapped[Timestamp]
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)

    unit: Mapped[Unit | None] = relationship()


class Invitation(Base):
    """A single-use, expiring code bound to a unit and role, handed out as a deep link."""

    __tablename__ = "invitations"

    id: Mapped[IntPK]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    unit_id: Mapped[int] = belongs_to("units")
    role: Mapped[Role] = mapped_column(str_enum(Role))
    note: Mapped[str | None] = mapped_column(String(200))
    created_by_id: Mapped[UserRef]
    created_at: Mapped[Timestamp]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[UserRef]
    revoked_at: Mapped[datetime | None]

    unit: Mapped[Unit] = relationship()


class DutyRoom(Base):
    """A Telegram group registered to a unit (值班室); receives requests, reminders, notices."""

    __tablename__ = "duty_rooms"

    id: Mapped[IntPK]
    unit_id: Mapped[int] = belongs_to("units", index=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    title: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    timezone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_by_id: Mapped[UserRef]
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
