"""The outbox: Bot API calls to make, written in the transaction of the change causing them.

Producers call `enqueue` / `enqueue_edit` inside their own unit of work and wake the
delivery worker after the commit. The worker (bot/delivery/) claims due rows in a
short transaction, sends outside any transaction, and records the outcome in another
(storage/outbox_claims.py; what Telegram said about a chat: storage/chat_status.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.enums import OutboxState
from storage.chat_status import unreachable_chats
from storage.db import dialect_insert
from storage.models import OutboxMessage
from storage.models import utcnow

SUPERSEDED = "superseded"

O = OutboxMessage  # noqa: E741 - short alias for the long query expressions below


def _plain(value: Any) -> Any:
    """Telegram objects (InlineKeyboardMarkup, ReplyParameters…) as Bot API dicts."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


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
        dialect_insert(session)(O)
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
        dialect_insert(session)(O)
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


# --------------------------------------------------------------------------- queries


async def get_message(session: AsyncSession, dedup_key: str) -> OutboxMessage | None:
    return (await session.scalars(select(O).where(O.dedup_key == dedup_key))).one_or_none()


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
        await session.execute(select(func.count()).select_from(unreachable_chats().subquery()))
    ).scalar_one()
    return stats
