"""search index: liaisons and clauses as token rows; FTS5 on SQLite, GIN on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 00:30:00

The rows are written by `storage.search.index.refresh_search_index` (the importer calls
it; `ensure_search_index` fills an empty index at start-up).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROWKEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TOKENS = storage.models.SearchTokens()

# SQLite: an external-content FTS5 table per search table, kept in step by
# triggers (so a cascade delete of a liaison or clause also leaves the index).
FTS_TABLES = {"search_liaisons": "search_liaisons_fts", "search_clauses": "search_clauses_fts"}


def _sqlite_fts(table: str, fts: str) -> list[str]:
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(grams, chars, keys, content='{table}', "
        "content_rowid='rowkey', tokenize='unicode61 remove_diacritics 0', columnsize=0)",
        f"CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, grams, chars, keys) "
        "VALUES (new.rowkey, new.grams, new.chars, new.keys); END",
        f"CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, grams, chars, keys) "
        "VALUES ('delete', old.rowkey, old.grams, old.chars, old.keys); END",
        f"CREATE TRIGGER {table}_au AFTER UPDATE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, grams, chars, keys) "
        "VALUES ('delete', old.rowkey, old.grams, old.chars, old.keys); "
        f"INSERT INTO {fts}(rowid, grams, chars, keys) "
        "VALUES (new.rowkey, new.grams, new.chars, new.keys); END",
    ]


def upgrade() -> None:
    op.create_table(
        "search_liaisons",
        sa.Column("rowkey", ROWKEY, autoincrement=False, nullable=False),
        sa.Column("liaison_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("grams", TOKENS, nullable=False),
        sa.Column("chars", TOKENS, nullable=False),
        sa.Column("keys", TOKENS, nullable=False),
        sa.ForeignKeyConstraint(
            ["liaison_id"],
            ["liaisons.id"],
            name=op.f("fk_search_liaisons_liaison_id_liaisons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rowkey", name=op.f("pk_search_liaisons")),
        sa.UniqueConstraint("liaison_id", name=op.f("uq_search_liaisons_liaison_id")),
    )
    op.create_index(
        "ix_search_liaisons_unit_branch", "search_liaisons", ["unit_id", "branch_id", "rowkey"]
    )
    op.create_index("ix_search_liaisons_unit", "search_liaisons", ["unit_id", "rowkey"])
    op.create_index("ix_search_liaisons_branch", "search_liaisons", ["branch_id", "rowkey"])
    op.create_index("ix_search_liaisons_name", "search_liaisons", ["name", "rowkey"])

    op.create_table(
        "search_clauses",
        sa.Column("rowkey", ROWKEY, autoincrement=False, nullable=False),
        sa.Column("clause_id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("grams", TOKENS, nullable=False),
        sa.Column("chars", TOKENS, nullable=False),
        sa.Column("keys", TOKENS, nullable=False),
        sa.ForeignKeyConstraint(
            ["clause_id"],
            ["clauses.id"],
            name=op.f("fk_search_clauses_clause_id_clauses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rowkey", name=op.f("pk_search_clauses")),
    )
    op.create_index(op.f("ix_search_clauses_clause_id"), "search_clauses", ["clause_id"])
    op.create_index(op.f("ix_search_clauses_agreement_id"), "search_clauses", ["agreement_id"])

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.create_index(
            "ix_search_liaisons_grams", "search_liaisons", ["grams"], postgresql_using="gin"
        )
        op.create_index(
            "ix_search_clauses_grams", "search_clauses", ["grams"], postgresql_using="gin"
        )
    elif dialect == "sqlite":
        for table, fts in FTS_TABLES.items():
            for statement in _sqlite_fts(table, fts):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, fts in FTS_TABLES.items():
            for suffix in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
    op.drop_table("search_clauses")
    op.drop_table("search_liaisons")
