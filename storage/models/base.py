"""What every model shares: the declarative base with its naming convention, aware UTC
datetimes on every backend, enums stored as their values, and the column shapes many
tables repeat (SQLAlchemy's `Annotated` idiom: `id: Mapped[IntPK]`)."""

from __future__ import annotations

import enum
from datetime import UTC
from datetime import datetime
from typing import Annotated
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import DateTime
from sqlalchemy import Enum
from sqlalchemy import ForeignKey
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import TypeDecorator
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import MappedColumn
from sqlalchemy.orm import mapped_column


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


def belongs_to(table: str, **options: Any) -> MappedColumn[Any]:
    """A key to the row this one is part of: deleting that row deletes this one."""
    return mapped_column(ForeignKey(f"{table}.id", ondelete="CASCADE"), **options)


# The surrogate key most tables have.
IntPK = Annotated[int, mapped_column(primary_key=True)]
# The data file's stable identity for a row (zones, units, terms, agreements, meetings).
Code = Annotated[str, mapped_column(String(40), unique=True)]
# A time that is now unless given: when a row was made, recorded, first due.
Timestamp = Annotated[datetime, mapped_column(default=utcnow)]
# Who made or decided something; the row stays, with none, when that user row goes.
UserRef = Annotated[int | None, mapped_column(ForeignKey("users.id", ondelete="SET NULL"))]
