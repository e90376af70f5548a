"""data epoch: one counter that every change to the directory, users, rooms and rosters moves

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 07:15:00

Lookups keep what they read from these tables in memory (storage/cache.py) for as long
as the counter holds still. Triggers move it, so every writer counts: this process,
another bot process, `python -m bot import`, an operator's SQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What lookups and access checks are derived from (the search index is rebuilt in the
# transaction that changes these; storage.search.index.refresh_search_index also bumps).
WATCHED = ("users", "units", "branches", "zones", "zone_memberships", "liaisons",
           "duty_rooms", "rosters", "roster_members", "shift_overrides", "shift_swaps")
BUMP = "UPDATE data_epoch SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "data_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_epoch")),
    )
    op.execute("INSERT INTO data_epoch (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"CREATE TRIGGER epoch_{table}_{event} AFTER {event.upper()} "
                           f"ON {table} BEGIN {BUMP}; END")
    else:
        op.execute("CREATE FUNCTION bump_data_epoch() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in WATCHED:
            op.execute(f"CREATE TRIGGER epoch_{table} AFTER INSERT OR UPDATE OR DELETE OR "
                       f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION "
                       "bump_data_epoch()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS epoch_{table}_{event}")
    else:
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS epoch_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS bump_data_epoch()")
    op.drop_table("data_epoch")
