"""liaison key: a stable identity for a liaison in data files

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 08:10:00

`python -m bot import` identified liaisons by (unit, branch, name) only, so a
corrected name created a second person with the same phones. An optional `key`
(unique) lets a file say which person a record is. A new nullable column and a
unique index: no table is rebuilt (SQLite keeps the data-epoch triggers of 0005).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("liaisons", sa.Column("key", sa.String(length=40), nullable=True))
    op.create_index(op.f("ix_liaisons_key"), "liaisons", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_liaisons_key"), table_name="liaisons")
    op.drop_column("liaisons", "key")
