"""The search index of the directory (storage/search/): one row per active liaison and
two per clause, with their tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import TypeDecorator
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from storage.models.base import Base
from storage.models.base import belongs_to


class SearchTokens(TypeDecorator[list[str]]):
    """Search tokens: `text[]` on PostgreSQL (GIN-indexed, `@>`), space-separated text
    on SQLite (indexed by an FTS5 table over the row; see storage/search/index.py)."""

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
    """One searchable active liaison, written by `storage.search.index.refresh_search_index`.

    `rowkey` = role rank << 32 | liaison id, so index order is rank order (primary
    before backup) and the first page needs no sort.
    """

    __tablename__ = "search_liaisons"

    rowkey: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    liaison_id: Mapped[int] = belongs_to("liaisons", unique=True)
    unit_id: Mapped[int] = mapped_column(Integer)
    branch_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    doc: Mapped[str] = mapped_column(Text)
    grams: Mapped[list[str]] = mapped_column(SearchTokens())
    chars: Mapped[list[str]] = mapped_column(SearchTokens())
    keys: Mapped[list[str]] = mapped_column(SearchTokens())

    __table_args__ = (
        Index("ix_search_liaisons_unit_branch", "unit_id", "branch_id", "rowkey"),
        Index("ix_search_liaisons_unit", "unit_id", "rowkey"),
        Index("ix_search_liaisons_branch", "branch_id", "rowkey"),
        Index("ix_search_liaisons_name", "name", "rowkey"),
        Index("ix_search_liaisons_grams", "grams", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )


class ClauseSearchRow(Base):
    """A clause as searched: kind 0 is heading + mechanism names, kind 1 the whole clause.

    `rowkey` = status rank << 34 | kind << 32 | clause id: in-force before
    superseded, then heading/mechanism matches before matches in the text.
    """

    __tablename__ = "search_clauses"

    rowkey: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    clause_id: Mapped[int] = belongs_to("clauses", index=True)
    agreement_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[int] = mapped_column(Integer)
    status_rank: Mapped[int] = mapped_column(Integer)
    doc: Mapped[str] = mapped_column(Text)
    grams: Mapped[list[str]] = mapped_column(SearchTokens())
    chars: Mapped[list[str]] = mapped_column(SearchTokens())
    keys: Mapped[list[str]] = mapped_column(SearchTokens())

    __table_args__ = (
        Index("ix_search_clauses_grams", "grams", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )
