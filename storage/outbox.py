"""The outbox: Bot API calls to make, written in the transaction of the change causing them.

Producers call `enqueue` / `enqueue_edit` inside their own unit of work and wake the
delivery worker after the commit. The worker (bot/delivery/) claims due rows in a
short transaction, sends outside any transaction, and records the outcome in another.

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

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.enums import OutboxState
from storage.models import ChatStatus, OutboxMessage, utcnow

SUPERSEDED = "superseded"
ERROR_MAX = 500

O = OutboxMessage  # noqa: E741 - short alias for the long query expressions below


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert


def _plain(value: Any) -> Any:
    """Telegram objects (InlineKeyboardMarkup, ReplyParameters…) as Bot API dicts."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _error(text: str) -> str:
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


# --------------------------------------------------------------------------- producers


async def enqueue(
    session: AsyncSession,
    *,
    chat_id: int,
    kind: str,
    text: str | None = None,
    method: str = "sendMessage",
    payload: Mapping[str, Any] | None = None,
    dedup_key: str,
    reply_to_key: str | None = None,
    not_before: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Add one Bot API call to the outbox in the caller's transaction.

    `payload` holds the Bot API parameters except `chat_id` (text, parse_mode,
    reply_markup as a dict or Telegram object, photo/document file id, caption…);
    `text` is a shortcut for `payload["text"]`. With `reply_to_key`, the Telegram
    message produced by that row fills `message_id` (edits, deletions, pins) or
    `reply_parameters` (sends). Returns False, inserting nothing, when `dedup_key`
    is already in the outbox.
    """
    params = {key: _plain(value) for key, value in (payload or {}).items()}
    if "chat_id" in params:
        raise ValueError("chat_id goes in its own argument, not in the payload")
    if text is not None:
        params["text"] = text
    moment = now or utcnow()
    stmt = (
        _insert(session)(O)
        .values(
            dedup_key=dedup_key,
            chat_id=chat_id,
            kind=kind,
            method=method,
            payload=params,
            reply_to_key=reply_to_key,
            state=OutboxState.pending,
            attempts=0,
            next_attempt_at=max(not_before, moment) if not_before else moment,
            created_at=moment,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(O.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def enqueue_many(
    session: AsyncSession,
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
    chunk: int = 500,
    supersede: bool = False,
) -> int:
    """`enqueue` for a broadcast: batched multi-row INSERTs, same rules.

    Each row maps chat_id, kind, dedup_key, payload and optionally method,
    reply_to_key and not_before. Rows whose dedup_key is already in the outbox are
    skipped; returns how many were inserted. With `supersede`, edits drop the older
    unsent edits of their message by the same method, as in `enqueue_edit`.
    """
    moment = now or utcnow()
    values = []
    for row in rows:
        params = {key: _plain(value) for key, value in (row.get("payload") or {}).items()}
        if "chat_id" in params:
            raise ValueError("chat_id goes in its own argument, not in the payload")
        not_before = row.get("not_before")
        values.append({
            "dedup_key": row["dedup_key"], "chat_id": row["chat_id"], "kind": row["kind"],
            "method": row.get("method", "sendMessage"), "payload": params,
            "reply_to_key": row.get("reply_to_key"), "state": OutboxState.pending,
            "attempts": 0, "created_at": moment,
            "next_attempt_at": max(not_before, moment) if not_before else moment,
        })
    inserted = 0
    # One compiled statement, many parameter sets: SQLAlchemy batches them into
    # multi-row INSERTs ("insertmanyvalues") without compiling a statement per size.
    stmt = (
        _insert(session)(O)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(O.id)
    )
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        inserted += len((await session.execute(stmt, part)).all())
        edits = [v for v in part if v["reply_to_key"]]
        for method in {v["method"] for v in edits} if supersede else ():
            same = [v for v in edits if v["method"] == method]
            await session.execute(
                update(O)
                .where(
                    O.reply_to_key.in_([v["reply_to_key"] for v in same]),
                    O.method == method,
                    O.state == OutboxState.pending,
                    O.dedup_key.not_in([v["dedup_key"] for v in same]),
                )
                .values(state=OutboxState.failed, last_error=SUPERSEDED, lease_until=None)
                .execution_options(synchronize_session=False)
            )
    return inserted


async def enqueue_edit(
    session: AsyncSession,
    *,
    reply_to_key: str,
    dedup_key: str,
    text: str | None = None,
    payload: Mapping[str, Any] | None = None,
    method: str = "editMessageText",
    kind: str = "edit",
    chat_id: int | None = None,
    not_before: datetime | None = None,
    now: datetime | None = None,
    supersede: bool = True,
) -> bool:
    """Edit the message another row (`reply_to_key`) produced, once that row is sent.

    The edit has its own `dedup_key` (for example `notice:42:status:rev3`). With
    `supersede`, older edits of the same message by the same method that have not gone
    out yet are dropped (failed with last_error "superseded"): the newest text wins and
    a busy status message costs one API call, not one per revision.
    Raises LookupError when the target row does not exist and no chat_id is given.
    """
    if chat_id is None:
        chat_id = (
            await session.execute(select(O.chat_id).where(O.dedup_key == reply_to_key))
        ).scalar_one_or_none()
        if chat_id is None:
            raise LookupError(f"no outbox row {reply_to_key!r} to edit")
    inserted = await enqueue(
        session,
        chat_id=chat_id,
        kind=kind,
        text=text,
        method=method,
        payload=payload,
        dedup_key=dedup_key,
        reply_to_key=reply_to_key,
        not_before=not_before,
        now=now,
    )
    if inserted and supersede:
        await session.execute(
            update(O)
            .where(
                O.reply_to_key == reply_to_key,
                O.method == method,
                O.state == OutboxState.pending,
                O.dedup_key != dedup_key,
            )
            .values(state=OutboxState.failed, last_error=SUPERSEDED, lease_until=None)
            .execution_options(synchronize_session=False)
        )
    return inserted


# --------------------------------------------------------------------------- the worker


def _due(now: datetime, table: Any = O) -> Any:
    return or_(
        and_(table.state == OutboxState.pending, table.next_attempt_at <= now),
        and_(table.state == OutboxState.sending, table.lease_until <= now),
    )


def _unreachable_chats() -> Select[Any]:
    return select(ChatStatus.chat_id).where(ChatStatus.unreachable_since.is_not(None))


def _eligible(now: datetime) -> list[Any]:
    """Due rows that may go now, before the worker's in-memory exclusions."""
    target = aliased(O, name="target")
    busy = aliased(O, name="busy")
    return [
        _due(now),
        O.chat_id.not_in(_unreachable_chats()),
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
    if ids and _dialect(session) == "postgresql":
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
    result = await session.execute(
        select(ChatStatus.chat_id, ChatStatus.migrated_to_chat_id).where(
            ChatStatus.chat_id.in_({row.chat_id for row in rows}),
            ChatStatus.migrated_to_chat_id.is_not(None),
        )
    )
    migrated = {old: new for old, new in result}
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
    if _dialect(session) == "postgresql":
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
            O.chat_id.in_(_unreachable_chats()),
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
    session: AsyncSession,
    id: int,
    next_attempt_at: datetime,
    error: str | None,
    *,
    attempt: int | None = None,
    count_attempt: bool = True,
    chat_id: int | None = None,
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


async def _upsert_chat_status(session: AsyncSession, chat_id: int, **values: Any) -> None:
    values["updated_at"] = utcnow()
    stmt = _insert(session)(ChatStatus).values(chat_id=chat_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["chat_id"], set_=values)
    )


async def mark_chat_unreachable(
    session: AsyncSession, chat_id: int, reason: str, *, now: datetime | None = None
) -> int:
    """The bot was blocked or removed, or the chat does not exist: stop sending there.

    Pending rows to the chat fail at once; returns how many.
    """
    moment = now or utcnow()
    reason = reason[:200]
    await _upsert_chat_status(session, chat_id, unreachable_since=moment, reason=reason)
    result = await session.execute(
        update(O)
        .where(O.chat_id == chat_id, O.state == OutboxState.pending)
        .values(state=OutboxState.failed, last_error=_error(f"chat unreachable: {reason}"))
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


async def mark_chat_reachable(session: AsyncSession, chat_id: int) -> None:
    """The bot is back in the chat (for example re-added to the group)."""
    await session.execute(
        update(ChatStatus)
        .where(ChatStatus.chat_id == chat_id)
        .values(unreachable_since=None, reason=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def mark_chat_migrated(session: AsyncSession, chat_id: int, new_chat_id: int) -> int:
    """A group became a supergroup: rows not sent yet follow it; returns how many moved."""
    await _upsert_chat_status(
        session, chat_id, migrated_to_chat_id=new_chat_id, reason="migrated to supergroup"
    )
    result = await session.execute(
        update(O)
        .where(O.chat_id == chat_id, O.state == OutboxState.pending)
        .values(chat_id=new_chat_id)
        .returning(O.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


async def chat_status(session: AsyncSession, chat_id: int) -> ChatStatus | None:
    return await session.get(ChatStatus, chat_id)


# --------------------------------------------------------------------------- queries


async def message_id_for(session: AsyncSession, dedup_key: str) -> int | None:
    """The Telegram message id the row with this key produced, once sent."""
    return (
        await session.execute(
            select(O.telegram_message_id).where(
                O.dedup_key == dedup_key, O.state == OutboxState.sent
            )
        )
    ).scalar_one_or_none()


async def get_message(session: AsyncSession, dedup_key: str) -> OutboxMessage | None:
    return (await session.scalars(select(O).where(O.dedup_key == dedup_key))).one_or_none()


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


async def outbox_stats(session: AsyncSession) -> dict[str, int]:
    """Rows by state (superseded edits counted apart from failures), unreachable chats."""
    stats = {state.value: 0 for state in OutboxState}
    stats["superseded"] = 0
    superseded = func.sum(case((O.last_error == SUPERSEDED, 1), else_=0))
    result = await session.execute(
        select(O.state, func.count(), superseded).group_by(O.state)
    )
    for state, count, dropped in result:
        stats[state.value] += count
        if state == OutboxState.failed:
            stats["failed"] -= dropped or 0
            stats["superseded"] += dropped or 0
    stats["unreachable_chats"] = (
        await session.execute(select(func.count()).select_from(_unreachable_chats().subquery()))
    ).scalar_one()
    return stats
