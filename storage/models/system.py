"""The bot's own bookkeeping: the outbox, the audit log, the data epoch, the scheduler's
marks and heartbeat, leases, the shared send budget, conversation state, handled updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from core.enums import OutboxState
from storage.models.base import Base
from storage.models.base import IntPK
from storage.models.base import Timestamp
from storage.models.base import str_enum
from storage.models.base import utcnow


class OutboxMessage(Base):
    """One Bot API call to make, written in the transaction of the change that causes it.

    `dedup_key` makes producers idempotent (a reminder fired twice inserts once);
    `lease_until` lets a crashed worker's in-flight rows be retried, which bounds
    duplicates to what was in flight.
    """

    __tablename__ = "outbox"

    id: Mapped[IntPK]
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(40), default="sendMessage")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Edits target the message another outbox row produced.
    reply_to_key: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[OutboxState] = mapped_column(str_enum(OutboxState), default=OutboxState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Timestamp]
    lease_until: Mapped[datetime | None]
    created_at: Mapped[Timestamp]
    sent_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    late: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)


class AuditEntry(Base):
    """Who did or saw what, when: every privileged action and every contact shown.

    Written unsealed (`seq`, `prev_hash`, `hash` empty) in the unit of work of what it
    records; sealed into the hash chain just after (storage/audit_chain.py, core/audit.py).
    Its user is kept, not nulled, if the user row goes: a sealed entry never changes
    (users are deactivated, not deleted). The lookup quotas count a person's views by
    (actor, action, time): storage/quota.py."""

    __tablename__ = "audit_log"

    id: Mapped[IntPK]
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seq: Mapped[int | None] = mapped_column(BigInteger, index=True, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_unsealed", "id", sqlite_where=text("seq IS NULL"),
              postgresql_where=text("seq IS NULL")),
        Index("ix_audit_log_actor_action_at", "actor_telegram_id", "action", "at"),
    )


class AuditChain(Base):
    """The head of the audit chain (one row, id 1): the last sealed entry's sequence
    number and hash, and where the kept chain starts (the last entry retention removed,
    or 0 and the genesis hash). Sealing locks it, so one seal runs at a time."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    base_seq: Mapped[int] = mapped_column(BigInteger)
    base_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]


class DataEpoch(Base):
    """One counter that triggers move on every change lookups read (storage/cache.py)."""

    __tablename__ = "data_epoch"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)


class ScheduleMark(Base):
    """A scheduled occurrence that did not go out: missed while the bot was down."""

    __tablename__ = "schedule_marks"

    id: Mapped[IntPK]
    key: Mapped[str] = mapped_column(String(200), unique=True)
    due_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[Timestamp]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SchedulerHeartbeat(Base):
    """When the scheduler first ran on this database and when it was last alive (one row):
    a start looks for missed occurrences from the last beat, never before the first run."""

    __tablename__ = "scheduler_heartbeat"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    first_alive_at: Mapped[datetime]
    alive_at: Mapped[datetime]
    process: Mapped[str | None] = mapped_column(String(200))


class LeaderLease(Base):
    """Who runs a singleton role (the scheduler: bot/leader.py), as a lease. Times come
    from the database clock; `token` grows by one on every takeover and fences the
    holder's work (a claim commits only while its token holds an unexpired lease)."""

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ScheduleChange(Base):
    """A counter per planner ("*": all of them) that a process moves after a commit that
    changed what is due; the scheduler leader polls them and re-places those jobs."""

    __tablename__ = "schedule_changes"

    planner: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class SendSlots(Base):
    """The next free send slot of a bot, shared by all its processes on PostgreSQL
    (storage/sendbudget.py): seconds since the epoch by the database clock. A process
    books a few slots at once by moving it on; SQLite runs one process and never uses it."""

    __tablename__ = "send_budget"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_slot: Mapped[float] = mapped_column(Float)


class ConversationState(Base):
    """PTB conversation and user/chat data, so a guided flow survives a restart."""

    __tablename__ = "conversation_state"

    namespace: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HandledUpdate(Base):
    """A Telegram update a webhook process took in (bot/runner.WebhookServer): the same
    update_id posted again, to this process or another behind the same URL, is answered
    200 and not handled twice. Rows older than a day are pruned (Telegram gives up
    redelivering long before)."""

    __tablename__ = "handled_updates"

    update_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    received_at: Mapped[datetime] = mapped_column(index=True)
