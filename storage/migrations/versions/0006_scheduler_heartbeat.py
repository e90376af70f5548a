"""scheduler heartbeat, and when rosters, meetings and chair rotations were created

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:10:00

A start looks back for occurrences missed while the bot was down from the scheduler's
last beat, never before it first ran nor before the data existed. A database that ran
before this migration has its first and last beat taken from the schedule marks (each
one was written by a running scheduler); one that never ran has no row, so its first
start reports nothing missed. Rows created before this migration keep an unknown
creation time (NULL): only the heartbeat bounds them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CREATED = ("rosters", "meetings", "chair_rotations")


def upgrade() -> None:
    op.create_table(
        "scheduler_heartbeat",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_alive_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("alive_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("process", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_heartbeat")),
    )
    op.execute("INSERT INTO scheduler_heartbeat (id, first_alive_at, alive_at) "
               "SELECT 1, MIN(recorded_at), MAX(recorded_at) FROM schedule_marks "
               "HAVING COUNT(*) > 0")
    for table in CREATED:
        op.add_column(table, sa.Column("created_at", storage.models.UTCDateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    for table in CREATED:
        # Not a batch (SQLite would copy the table and lose 0005's data-epoch triggers);
        # both databases drop a column in place (SQLite since 3.35).
        op.execute(f"ALTER TABLE {table} DROP COLUMN created_at")
    op.drop_table("scheduler_heartbeat")
