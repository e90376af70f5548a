"""send budget: every process of a bot books its send slots from one row

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:00:00

Telegram allows a bot about 30 messages a second in all; with several processes each
used to send at DELIVERY_RATE of its own, and the outbox took all of it, so replies
to officers got 429 during a broadcast. Processes now book send start times from one
row per bot (storage/sendbudget.py, bot/ratebudget/). A new table only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_budget",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_send_budget")),
    )


def downgrade() -> None:
    op.drop_table("send_budget")
