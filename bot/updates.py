"""Concurrent update processing that keeps each person's and each chat's updates in order.

One slow lookup must not hold up every other officer, so updates are processed
concurrently. But PTB's ConversationHandler (and the user and chat data a guided flow
keeps) relies on one update of a person finishing before their next one starts: with
plain `concurrent_updates`, an officer typing two answers quickly could have them
race. Here an update waits for the earlier updates of its user and of its chat, and
for nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from contextlib import asynccontextmanager
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

# PTB's own semaphore is taken before `do_process_update` and asyncio does not promise
# that its waiters are woken in arrival order; keeping it out of reach (this bound) and
# queueing on the per-key locks first is what keeps one person's updates in order.
UNBOUNDED = 1 << 30


def ordering_keys(update: object) -> list[int]:
    """Users and chats share one id space without clashes (groups are negative; a
    private chat's id is its user's, which is the same queue anyway)."""
    if not isinstance(update, Update):
        return []
    keys = {update.effective_user.id if update.effective_user else None,
            update.effective_chat.id if update.effective_chat else None}
    return sorted(key for key in keys if key is not None)


class OrderedUpdateProcessor(BaseUpdateProcessor):
    """At most `limit` updates at once; per user and per chat, one at a time, in order."""

    def __init__(self, limit: int) -> None:
        super().__init__(UNBOUNDED)
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        # key → [lock, updates holding or waiting for it]; dropped when none is left.
        self._queues: dict[int, list[Any]] = {}

    @asynccontextmanager
    async def _turn(self, key: int) -> AsyncIterator[None]:
        entry = self._queues.get(key)
        if entry is None:
            entry = self._queues[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._queues[key]

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        # Locks in sorted order (no two updates wait on each other in a cycle), then a
        # slot: an update queued behind its own person never takes a slot from others.
        async with AsyncExitStack() as stack:
            for key in ordering_keys(update):
                await stack.enter_async_context(self._turn(key))
            async with self._slots:
                await coroutine

    @property
    def waiting(self) -> int:
        """Updates holding or waiting for a per-key turn (for tests and diagnostics)."""
        return sum(entry[1] for entry in self._queues.values())

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release: PTB awaits the updates in progress itself."""
