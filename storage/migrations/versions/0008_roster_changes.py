"""roster changes: a previewed edit of a roster's officers or pattern, applied on 确认

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "roster_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("duty_room_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Enum("pending", "confirmed", "cancelled", "superseded",
                                    name="rosterchangestatus", native_enum=False, length=24),
                  nullable=False),
        sa.Column("change", sa.JSON(), nullable=False),
        sa.Column("basis", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_roster_changes_created_by_id_users")),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_roster_changes_decided_by_id_users")),
        sa.ForeignKeyConstraint(["duty_room_id"], ["duty_rooms.id"], ondelete="CASCADE",
                                name=op.f("fk_roster_changes_duty_room_id_duty_rooms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_changes")),
    )
    op.create_index(op.f("ix_roster_changes_duty_room_id"), "roster_changes", ["duty_room_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_roster_changes_duty_room_id"), table_name="roster_changes")
    op.drop_table("roster_changes")
