"""leader lease: the scheduler leader holds a lease row instead of an advisory lock

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:00:00

A session-level advisory lock stayed with a leader that was alive but stuck (stopped,
paused, cut off by a half-open connection), and it needs a session of its own, which
PgBouncer's transaction mode does not give. Leadership is now a row with an expiry set
from the database clock, renewed by its holder, taken over by a follower once it has
expired, and a fencing token that grows on every takeover (bot/leader.py). A follower's
change to what is due reaches the leader through a counter per planner that the leader
polls (NOTIFY only speeds it up). New tables only: nothing is rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_lease")),
    )
    op.create_table(
        "schedule_changes",
        sa.Column("planner", sa.String(length=40), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("planner", name=op.f("pk_schedule_changes")),
    )


def downgrade() -> None:
    op.drop_table("schedule_changes")
    op.drop_table("leader_lease")
