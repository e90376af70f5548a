"""lookup quota: the audit log indexed by actor, action and time

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 09:00:00

Every lookup now reads the person's own contact views of the last day from the audit
log (storage/quota.py) to apply the lookup quotas and spot scraping. One index on
(actor_telegram_id, action, at) serves that read; it also serves everything the
single-column index on actor_telegram_id did, which goes. No data changes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_actor_action_at",
                              ["actor_telegram_id", "action", "at"], unique=False)
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_telegram_id"))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_actor_telegram_id"),
                              ["actor_telegram_id"], unique=False)
        batch_op.drop_index("ix_audit_log_actor_action_at")
