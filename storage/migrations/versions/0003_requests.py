"""assistance requests: numbering counter, routing state

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_request_counters")),
    )
    with op.batch_alter_table("assistance_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("routed_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("route_key", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assistance_requests", schema=None) as batch_op:
        batch_op.drop_column("route_key")
        batch_op.drop_column("routed_at")
    op.drop_table("request_counters")
