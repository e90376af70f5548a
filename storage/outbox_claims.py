"""The delivery worker's side of the outbox (bot/delivery/): the rows it claims, the
leases it holds on them, and the outcomes it records.

Claiming (`claim_batch`):
- a row is due when it is `pending` and `next_attempt_at <= now`, or `sending` with an
  expired lease (a crashed worker's leftover);
- at most one row per chat per claim (its oldest due row), and none for a chat that
  already has a row in flight (`sending` with a live lease) anywhere: a chat's messages
  go out one at a time, in order, whatever the number of workers (a row waiting for a
  retry after an error may be overtaken by the chat's later rows);
- rows to chats marked unreachable are not claimed (`fail_unreachable` fails them);
- a row with `reply_to_key` waits until its target row is `sent` (or `failed`, which the
  worker turns into a failure of the edit);
- on PostgreSQL the candidate rows are locked `FOR UPDATE SKIP LOCKED`, so workers in
  several processes never claim the same row; on SQLite BEGIN IMMEDIATE serialises.

`attempts` doubles as a fencing token: it is incremented by each claim, and the `mark_*`
functions accept the attempt the caller claimed, so a worker whose lease expired cannot
overwrite the outcome recorded by the worker that claimed the row after it. A live
worker renews the leases of the rows it holds (`renew_leases`, fenced the same way), so
leases can be short: a dead worker's rows are due again soon after it stopped renewing.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.enums import OutboxState
from storage.chat_status import migrated_chats
from storage.chat_status import unreachable_chats
from storage.models import ChatStatus
from storage.models import OutboxMessage

ERROR_MAX = 500

O = OutboxMessage  # noqa: E741 - short alias for the long query expressions below


def _on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _error(text: str) -> str:
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


def _due(now: datetime, table: Any = O) -> Any:
    return or_(
        and_(table.state == OutboxState.pending, table.next_attempt_at <= now),
        and_(table.state == OutboxState.sending, table.lease_until <= now),
    )


def _eligible(now: datetime) -> list[Any]:
    """Due rows that may go now, before the worker's in-memory exclusions."""
    target = aliased(O, name="target")
    busy = aliased(O, name="busy")
    return [
        _due(now),
        O.chat_id.not_in(unreachable_chats()),
        or_(
            O.reply_to_key.is_(None),
            exists().where(
                target.dedup_key == O.reply_to_key,
                target.state.in_([OutboxState.sent, OutboxState.failed]),
            ),
        ),
        ~exists().where(
            busy.chat_id == O.chat_id,
            busy.state == OutboxState.sending,
            busy.lease_until > now,
        ),
    ]


async def claim_batch(
    session: AsyncSession,
    *,
    limit: int,
    now: datetime,
    lease_seconds: float,
    worker_id: str = "",
    exclude_chats: Iterable[int] = (),
) -> list[OutboxMessage]:
    """Claim up to `limit` due rows, one per chat, leasing them for `lease_seconds`.

    `exclude_chats` are chats the worker will not send to now (paused by RetryAfter,
    rate window full, already busy locally). Claimed rows are `sending`, with
    `attempts` incremented and `lease_until` set; rows to a chat that migrated to a
    supergroup are pointed at the new chat. `worker_id` is for logs only (the table has
    no owner column; the lease and the attempt number are what fence workers).
    """
    if limit <= 0:
        return []
    excluded = list(set(exclude_chats))
    conditions = _eligible(now)
    if excluded:
        conditions.append(O.chat_id.not_in(excluded))
    ranked = (
        select(
            O.id,
            O.next_attempt_at,
            func.row_number()
            .over(partition_by=O.chat_id, order_by=O.id)
            .label("rank"),
        )
        .where(*conditions)
        .subquery("ranked")
    )
    # The first row of each chat, ranked in a statement of its own: nested in the locking
    # query, a planner with stale statistics (an outbox that grew by thousands of rows
    # within a minute) ran the ranking again for every row, seconds per claim on PostgreSQL.
    candidates = (
        select(ranked.c.id)
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.next_attempt_at, ranked.c.id)
        .limit(limit)
    )
    ids = list((await session.execute(candidates)).scalars())
    if ids and _on_postgresql(session):
        # Lock them, skipping any another worker claimed in between (no longer due then).
        locked = select(O.id).where(O.id.in_(ids), _due(now)).with_for_update(skip_locked=True)
        ids = list((await session.execute(locked)).scalars())
    if not ids:
        return []
    rows = list(
        (
            await session.scalars(
                update(O)
                .where(O.id.in_(ids))
                .values(
                    state=OutboxState.sending,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=O.attempts + 1,
                )
                .returning(O),
                execution_options={"populate_existing": True, "synchronize_session": False},
            )
        ).all()
    )
    migrated = await migrated_chats(session, (row.chat_id for row in rows))
    for row in rows:
        if row.chat_id in migrated:
            row.chat_id = migrated[row.chat_id]
    rows.sort(key=lambda row: (row.next_attempt_at, row.id))
    return rows


async def renew_leases(
    session: AsyncSession, held: Mapping[int, int], *, now: datetime, lease_seconds: float
) -> set[int]:
    """Extend the leases of rows a live worker still holds (`held`: id -> the attempt it
    claimed); returns the ids renewed. A row another worker claimed after its lease ran
    out (another attempt) or whose outcome is recorded is left alone; on PostgreSQL so
    is one being recorded right now (locked), which needs no renewal."""
    if not held:
        return set()
    by_attempt: dict[int, list[int]] = {}
    for row_id, attempt in held.items():
        by_attempt.setdefault(attempt, []).append(row_id)
    ours = and_(
        O.state == OutboxState.sending,
        or_(*(and_(O.attempts == attempt, O.id.in_(ids)) for attempt, ids in by_attempt.items())),
    )
    if _on_postgresql(session):
        ours = O.id.in_(select(O.id).where(ours).with_for_update(skip_locked=True)
                        .scalar_subquery())
    result = await session.execute(
        update(O)
        .where(ours)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


async def targets_for(
    session: AsyncSession, dedup_keys: Iterable[str]
) -> dict[str, tuple[OutboxState, int | None]]:
    """State and Telegram message id of the rows that edits (reply_to_key) point at."""
    keys = set(dedup_keys)
    if not keys:
        return {}
    result = await session.execute(
        select(O.dedup_key, O.state, O.telegram_message_id).where(O.dedup_key.in_(keys))
    )
    return {key: (state, message_id) for key, state, message_id in result}


async def fail_unreachable(session: AsyncSession, now: datetime) -> int:
    """Fail, without a call, the due rows addressed to chats marked unreachable."""
    reason = (
        select(ChatStatus.reason).where(ChatStatus.chat_id == O.chat_id).scalar_subquery()
    )
    result = await session.execute(
        update(O)
        .where(
            or_(O.state == OutboxState.pending, _due(now)),
            O.chat_id.in_(unreachable_chats()),
        )
        .values(
            state=OutboxState.failed,
            lease_until=None,
            last_error=literal("chat unreachable: ").concat(func.coalesce(reason, "")),
        )
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


def _fenced(id: int, attempt: int | None) -> list[Any]:
    conditions = [O.id == id, O.state == OutboxState.sending]
    if attempt is not None:
        conditions.append(O.attempts == attempt)
    return conditions


async def mark_sent(
    session: AsyncSession,
    id: int,
    message_id: int | None,
    sent_at: datetime,
    *,
    attempt: int | None = None,
) -> OutboxMessage | None:
    """Record delivery; returns the row, or None if the row was no longer ours."""
    return (
        await session.scalars(
            update(O)
            .where(*_fenced(id, attempt))
            .values(
                state=OutboxState.sent,
                sent_at=sent_at,
                telegram_message_id=message_id,
                lease_until=None,
                last_error=None,
            )
            .returning(O),
            execution_options={"populate_existing": True, "synchronize_session": False},
        )
    ).one_or_none()


async def mark_retry(
    session: AsyncSession, id: int, next_attempt_at: datetime, error: str | None, *,
    attempt: int | None = None, count_attempt: bool = True, chat_id: int | None = None,
) -> bool:
    """Back to `pending` until `next_attempt_at`.

    `count_attempt=False` gives the claim's attempt back (flood control, a migrated
    chat, a worker stopping before the call): only failures count towards the limit.
    """
    values: dict[str, Any] = {
        "state": OutboxState.pending,
        "next_attempt_at": next_attempt_at,
        "lease_until": None,
        "last_error": _error(error) if error else None,
    }
    if not count_attempt:
        values["attempts"] = O.attempts - 1
    if chat_id is not None:
        values["chat_id"] = chat_id
    result = await session.execute(
        update(O)
        .where(*_fenced(id, attempt))
        .values(**values)
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


async def mark_failed(
    session: AsyncSession, id: int, error: str, *, attempt: int | None = None
) -> bool:
    result = await session.execute(
        update(O)
        .where(*_fenced(id, attempt))
        .values(state=OutboxState.failed, lease_until=None, last_error=_error(error))
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none() is not None


async def due_count(session: AsyncSession, now: datetime) -> int:
    """Rows the worker could claim now (ignoring its rate windows and pauses)."""
    return (
        await session.execute(select(func.count()).select_from(O).where(*_eligible(now)))
    ).scalar_one()


async def next_due_at(session: AsyncSession, *, include_leases: bool = True) -> datetime | None:
    """When the earliest pending row becomes due (or, with include_leases, a lease expires)."""
    pending = select(func.min(O.next_attempt_at)).where(O.state == OutboxState.pending)
    times = [(await session.execute(pending)).scalar_one_or_none()]
    if include_leases:
        leased = select(func.min(O.lease_until)).where(O.state == OutboxState.sending)
        times.append((await session.execute(leased)).scalar_one_or_none())
    found = [t for t in times if t is not None]
    return min(found) if found else None
