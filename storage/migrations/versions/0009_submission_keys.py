"""submission keys: a guided flow's draft is stored once, however often it is submitted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:30:00

The end of a guided conversation is persisted up to a second after what it created
commits; killed in between, the bot came back at the confirmation and a second press
stored a second request or notice. A draft now carries an identity made when its flow
starts, stored (unique) with what it creates. New nullable columns and unique indexes:
no table is rebuilt (SQLite keeps the data-epoch triggers of 0005).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("assistance_requests",
                  sa.Column("submission_key", sa.String(length=32), nullable=True))
    op.create_index("ix_assistance_requests_submission", "assistance_requests",
                    ["submission_key", "to_unit_id"], unique=True)
    op.add_column("notices", sa.Column("submission_key", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_notices_submission_key"), "notices", ["submission_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_notices_submission_key"), table_name="notices")
    op.drop_column("notices", "submission_key")
    op.drop_index("ix_assistance_requests_submission", table_name="assistance_requests")
    op.drop_column("assistance_requests", "submission_key")
