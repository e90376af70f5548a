"""The directory the data file describes: zones, units, branches, liaisons, mechanisms,
and the agreements with their clauses."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from core.enums import AgreementStatus
from core.enums import LiaisonRole
from core.enums import MembershipKind
from core.enums import UnitLevel
from storage.models.base import Base
from storage.models.base import Code
from storage.models.base import IntPK
from storage.models.base import belongs_to
from storage.models.base import str_enum

if TYPE_CHECKING:
    from storage.models.access import DutyRoom


class Zone(Base):
    """A cooperation area (协作区) with member units, agreements and a joint meeting."""

    __tablename__ = "zones"

    id: Mapped[IntPK]
    code: Mapped[Code]
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

    id: Mapped[IntPK]
    code: Mapped[Code]
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

    id: Mapped[IntPK]
    zone_id: Mapped[int] = belongs_to("zones")
    unit_id: Mapped[int] = belongs_to("units", index=True)
    kind: Mapped[MembershipKind] = mapped_column(
        str_enum(MembershipKind), default=MembershipKind.member
    )

    zone: Mapped[Zone] = relationship(back_populates="memberships")
    unit: Mapped[Unit] = relationship(back_populates="memberships")

    __table_args__ = (UniqueConstraint("zone_id", "unit_id"),)


class NamedTerm:
    """The columns of a term the data file lists and people type: a code, a unique
    name, its English and its aliases (branches, mechanisms)."""

    id: Mapped[IntPK]
    code: Mapped[Code]
    name: Mapped[str] = mapped_column(String(60), unique=True)
    english: Mapped[str | None] = mapped_column(String(120))
    aliases: Mapped[list[Any]] = mapped_column(default=list)


class Branch(NamedTerm, Base):
    """A police branch (警种), with aliases such as 刑侦/刑警/CID."""

    __tablename__ = "branches"


class Liaison(Base):
    """A named contact (联络员) for a unit and branch, primary or backup."""

    __tablename__ = "liaisons"

    id: Mapped[IntPK]
    unit_id: Mapped[int] = belongs_to("units", index=True)
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

    __table_args__ = (UniqueConstraint("unit_id", "branch_id", "name"),)


class Mechanism(NamedTerm, Base):
    """A cooperation mechanism or area (情报信息互享, 反恐防恐) cited by clauses and requests."""

    __tablename__ = "mechanisms"


# --------------------------------------------------------------------------- agreements


class Agreement(Base):
    """A signed framework agreement (协议) with numbered clauses."""

    __tablename__ = "agreements"

    id: Mapped[IntPK]
    code: Mapped[Code]
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(300))
    short_title: Mapped[str] = mapped_column(String(80))
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
    clauses: Mapped[list[Clause]] = relationship(
        back_populates="agreement", order_by="Clause.position", cascade="all, delete-orphan"
    )
    parties: Mapped[list[AgreementParty]] = relationship(cascade="all, delete-orphan")


class AgreementParty(Base):
    __tablename__ = "agreement_parties"

    id: Mapped[IntPK]
    agreement_id: Mapped[int] = belongs_to("agreements")
    unit_id: Mapped[int] = belongs_to("units")

    unit: Mapped[Unit] = relationship()

    __table_args__ = (UniqueConstraint("agreement_id", "unit_id"),)


class Clause(Base):
    """A numbered clause; `position` orders clauses for previous/next navigation."""

    __tablename__ = "clauses"

    id: Mapped[IntPK]
    agreement_id: Mapped[int] = belongs_to("agreements")
    number: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)

    agreement: Mapped[Agreement] = relationship(back_populates="clauses")
    mechanisms: Mapped[list[Mechanism]] = relationship(secondary="clause_mechanisms")

    __table_args__ = (UniqueConstraint("agreement_id", "number"),)


class ClauseMechanism(Base):
    __tablename__ = "clause_mechanisms"

    clause_id: Mapped[int] = belongs_to("clauses", primary_key=True)
    mechanism_id: Mapped[int] = belongs_to("mechanisms", primary_key=True)
