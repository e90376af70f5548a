"""notices: numbering counter, reminder time, corrections and withdrawal, room message key

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-11-23 03:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0004"
down_revision: str | Sequence[str] | None = ("0002", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_notice_counters")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        for name in ("remind_at", "corrected_at", "withdrawn_at"):
            batch_op.add_column(
                sa.Column(name, storage.models.UTCDateTime(timezone=True), nullable=True)
            )
        batch_op.add_column(
            sa.Column("history", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.drop_column("message_key")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        for name in ("history", "withdrawn_at", "corrected_at", "remind_at"):
            batch_op.drop_column(name)
    op.drop_table("notice_counters")
