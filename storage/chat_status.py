"""What Telegram told the delivery worker about a chat (`chat_status`): the bot was
blocked or removed, the chat does not exist, or a group became a supergroup.

Marking a chat also settles its rows not sent yet: they fail at once (unreachable) or
follow the chat (migrated). The outbox's claims skip unreachable chats and send to the
new chat of a migrated one (storage/outbox_claims.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.enums import OutboxState
from storage.db import dialect_insert
from storage.models import ChatStatus
from storage.models import OutboxMessage
from storage.models import utcnow

REASON_MAX = 200  # chat_status.reason's length


def unreachable_chats() -> Select[Any]:
    """The ids of the chats marked unreachable, as a subquery for the outbox's queries."""
    return select(ChatStatus.chat_id).where(ChatStatus.unreachable_since.is_not(None))


async def migrated_chats(session: AsyncSession, chat_ids: Iterable[int]) -> dict[int, int]:
    """Of these chats, those that became a supergroup: old id -> new id."""
    result = await session.execute(
        select(ChatStatus.chat_id, ChatStatus.migrated_to_chat_id).where(
            ChatStatus.chat_id.in_(set(chat_ids)),
            ChatStatus.migrated_to_chat_id.is_not(None),
        )
    )
    return {old: new for old, new in result if new is not None}


async def _upsert(session: AsyncSession, chat_id: int, **values: Any) -> None:
    values["updated_at"] = utcnow()
    stmt = dialect_insert(session)(ChatStatus).values(chat_id=chat_id, **values)
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
    reason = reason[:REASON_MAX]
    await _upsert(session, chat_id, unreachable_since=moment, reason=reason)
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.chat_id == chat_id, OutboxMessage.state == OutboxState.pending)
        .values(state=OutboxState.failed, last_error=f"chat unreachable: {reason}")
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


async def mark_chat_reachable(session: AsyncSession, chat_id: int) -> bool:
    """The bot is back in the chat (re-added to the group, unblocked): send there again.
    Returns whether the chat was marked unreachable."""
    result = await session.execute(
        update(ChatStatus)
        .where(ChatStatus.chat_id == chat_id, ChatStatus.unreachable_since.is_not(None))
        .values(unreachable_since=None, reason=None, updated_at=utcnow())
        .returning(ChatStatus.chat_id)
        .execution_options(synchronize_session=False)
    )
    return bool(result.all())


async def mark_chat_migrated(session: AsyncSession, chat_id: int, new_chat_id: int) -> int:
    """A group became a supergroup: rows not sent yet follow it; returns how many moved."""
    await _upsert(session, chat_id, migrated_to_chat_id=new_chat_id,
                  reason="migrated to supergroup")
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.chat_id == chat_id, OutboxMessage.state == OutboxState.pending)
        .values(chat_id=new_chat_id)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())

