"""meeting submission key: a /meeting new draft creates one meeting, however often confirmed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:10:00

As for requests and notices (0009): the end of the guided flow is persisted up to a
second after the meeting commits, so a crash in between brought the coordinator back to
the preview, and confirming it again created a second meeting and invited every room
twice. The draft now carries an identity made when the flow starts, stored (unique)
with the meeting. A new nullable column and a unique index: no table is rebuilt.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("meetings", sa.Column("submission_key", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_meetings_submission_key"), "meetings", ["submission_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_meetings_submission_key"), table_name="meetings")
    op.drop_column("meetings", "submission_key")
