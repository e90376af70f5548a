"""Webhook updates taken in, so each is handled once across every process.

Telegram posts an update again when it did not see our answer in time, and behind one
URL the copy may land on another process; a crash-free bot would answer it twice. The
receiver claims the update_id first (`claim_update`: INSERT … ON CONFLICT DO NOTHING on
the primary key, so of two processes claiming at once exactly one wins) and handles
the update only if the claim is new. Claims older than `KEEP` are pruned by
`prune_handled` (indexed by received_at; Telegram stops redelivering long before).
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

from sqlalchemy import CursorResult
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import dialect_insert
from storage.models import HandledUpdate

KEEP = timedelta(days=1)


async def claim_update(session: AsyncSession, update_id: int, now: datetime) -> bool:
    """Record `update_id` as taken in; False when it was taken before (here or by another
    process): the caller must not handle it again."""
    insert = dialect_insert(session)
    statement = (
        insert(HandledUpdate)
        .values(update_id=update_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["update_id"])
        .returning(HandledUpdate.update_id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def prune_handled(session: AsyncSession, now: datetime) -> int:
    """Forget claims older than KEEP; returns how many were removed."""
    result = await session.execute(
        delete(HandledUpdate).where(HandledUpdate.received_at < now - KEEP))
    return int(cast(CursorResult[Any], result).rowcount or 0)
