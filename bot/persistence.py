"""PTB persistence in the database, so a guided conversation survives a restart.

Only conversations and per-user/per-chat data are stored (JSON); bot_data holds live
services and is never persisted. PTB flushes on its update interval and at shutdown,
so the interval is kept short.

PTB reads persistence once, at start-up, and keeps it in memory. With several
processes behind one webhook URL, a person's next message may reach another process,
so webhook mode uses `SharedStateApplication`: before each update it reloads that
update's conversation states and user and chat data from the database, and after it
writes them back at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from copy import deepcopy
from typing import Any

from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import Application
from telegram.ext import BasePersistence
from telegram.ext import ConversationHandler
from telegram.ext import PersistenceInput
from telegram.ext._utils.types import CDCData
from telegram.ext._utils.types import ConversationDict
from telegram.ext._utils.types import ConversationKey

from bot.answers import AnsweringApplication
from bot.batching import Batcher
from storage.db import Database
from storage.models import ConversationState

USER, CHAT, CONVERSATION = "user", "chat", "conv:"
Write = tuple[str, str, dict[str, Any] | None]  # namespace, key, value (None: delete)


class DatabasePersistence(BasePersistence[dict[str, Any], dict[str, Any], dict[str, Any]]):
    def __init__(self, db: Database, *, update_interval: float = 1.0) -> None:
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=True, user_data=True,
                                        callback_data=False),
            update_interval=update_interval,
        )
        self.db = db
        # PTB hands over each touched user's and chat's data on its own, all at once at
        # every flush: written together, one transaction for those that arrive while
        # one is being written (bot/batching.py), not one transaction each.
        self._writes: Batcher[Write, None] = Batcher(self._write_batch, name="persistence")

    async def _load(self, namespace: str) -> dict[str, dict[str, Any]]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(ConversationState.key, ConversationState.value).where(
                    ConversationState.namespace == namespace
                )
            )
            return {key: value for key, value in rows}

    async def _load_keys(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(ConversationState.namespace, ConversationState.key,
                       ConversationState.value).where(or_(*(
                           and_(ConversationState.namespace == namespace,
                                ConversationState.key == key) for namespace, key in wanted)))
            )
            return {(namespace, key): value for namespace, key, value in rows}

    async def reload_for(self, application: Application[Any, Any, Any, Any, Any, Any],
                         update: Update) -> None:
        """Replace what memory holds for this update (its conversation states, its user's
        and chat's data) with what the database holds: another process may have handled
        the previous update of the same person."""
        user = update.effective_user.id if update.effective_user else None
        chat = update.effective_chat.id if update.effective_chat else None
        flows: list[tuple[ConversationHandler[Any], str, Any]] = []
        for handlers in application.handlers.values():
            for handler in handlers:
                if isinstance(handler, ConversationHandler) and handler.persistent:
                    try:
                        key = handler._get_key(update)  # PTB has no public way
                    except RuntimeError:  # the update has no chat or user for this flow
                        continue
                    flows.append((handler, CONVERSATION + str(handler.name), key))
        wanted = [(namespace, json.dumps(list(key))) for _, namespace, key in flows]
        if user is not None:
            wanted.append((USER, str(user)))
        if chat is not None:
            wanted.append((CHAT, str(chat)))
        if not wanted:
            return
        stored = await self._load_keys(wanted)
        for handler, namespace, key in flows:
            value = stored.get((namespace, json.dumps(list(key))))
            states = handler._conversations
            if value is None:
                states.data.pop(key, None)  # untracked: nothing to write back
            else:
                states.update_no_track({key: value["state"]})
        for namespace, ident, data in ((USER, user, application.user_data),
                                       (CHAT, chat, application.chat_data)):
            if ident is not None:
                held = data[ident]
                held.clear()
                held.update(deepcopy(stored.get((namespace, str(ident))) or {}))

    async def _store(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        await self._writes.submit((namespace, key, value))

    async def _write_batch(self, batch: list[Write]) -> list[None]:
        latest = {(namespace, key): value for namespace, key, value in batch}
        async with self.db.session() as session:
            for (namespace, key), value in latest.items():
                await _write(session, namespace, key, value)
        return [None] * len(batch)

    async def get_user_data(self) -> dict[int, dict[str, Any]]:
        return defaultdict(dict, {int(k): v for k, v in (await self._load(USER)).items()})

    async def get_chat_data(self) -> dict[int, dict[str, Any]]:
        return defaultdict(dict, {int(k): v for k, v in (await self._load(CHAT)).items()})

    async def get_bot_data(self) -> dict[str, Any]:
        return {}

    async def get_callback_data(self) -> CDCData | None:
        return None

    async def get_conversations(self, name: str) -> ConversationDict:
        stored = await self._load(CONVERSATION + name)
        return {tuple(json.loads(key)): value["state"] for key, value in stored.items()}

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        value = None if new_state is None else {"state": new_state}
        await self._store(CONVERSATION + name, json.dumps(list(key)), value)

    async def update_user_data(self, user_id: int, data: dict[str, Any]) -> None:
        await self._store(USER, str(user_id), deepcopy(data) or None)

    async def update_chat_data(self, chat_id: int, data: dict[str, Any]) -> None:
        await self._store(CHAT, str(chat_id), deepcopy(data) or None)

    async def update_bot_data(self, data: dict[str, Any]) -> None:
        """bot_data holds live services; nothing of it is persisted."""

    async def update_callback_data(self, data: CDCData) -> None:
        """Callback data is not arbitrary here: buttons carry short strings."""

    async def drop_chat_data(self, chat_id: int) -> None:
        await self._store(CHAT, str(chat_id), None)

    async def drop_user_data(self, user_id: int) -> None:
        await self._store(USER, str(user_id), None)

    async def refresh_user_data(self, user_id: int, user_data: dict[str, Any]) -> None:
        """In-memory data is authoritative between flushes."""

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[str, Any]) -> None:
        """In-memory data is authoritative between flushes."""

    async def refresh_bot_data(self, bot_data: dict[str, Any]) -> None:
        """bot_data is not persisted."""

    async def flush(self) -> None:
        """Every update is written when PTB hands it over; nothing is buffered here."""


async def _write(session: AsyncSession, namespace: str, key: str,
                 value: dict[str, Any] | None) -> None:
    row = await session.get(ConversationState, (namespace, key))
    if value is None:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(ConversationState(namespace=namespace, key=key, value=value))
    else:
        row.value = value


async def write_flow_end(session: AsyncSession, update: Update,
                         application: Application[Any, Any, Any, Any, Any, Any],
                         flow: str, user_data: dict[str, Any]) -> None:
    """Write in the caller's unit of work what PTB's next flush would: the conversation
    `flow` over for this update, and the user's data as it is now. Stored with what the
    flow created, a crash right after the commit cannot bring its confirm step back."""
    if not isinstance(application.persistence, DatabasePersistence):
        return
    for handlers in application.handlers.values():
        for handler in handlers:
            if isinstance(handler, ConversationHandler) and handler.name == flow:
                key = handler._get_key(update)  # PTB has no public way
                await _write(session, CONVERSATION + flow, json.dumps(list(key)), None)
    user = update.effective_user
    if user is not None:
        await _write(session, USER, str(user.id), deepcopy(user_data) or None)


class SharedStateApplication(AnsweringApplication):
    """An Application whose conversations and user/chat data live in the database
    between updates, for several processes serving one webhook URL (module docstring)."""

    async def process_update(self, update: object) -> None:
        shared = isinstance(update, Update) and isinstance(self.persistence, DatabasePersistence)
        if shared:
            # `shared` checked both types; mypy does not carry isinstance through a bool.
            await self.persistence.reload_for(self, update)  # type: ignore[union-attr,arg-type]
        await super().process_update(update)
        if shared:
            await self.update_persistence()
