"""Who was shown which contact card or duty line, on record before it is shown.

A lookup writes nothing but its audit entries, and one write transaction per lookup
would queue busy desks behind SQLite's single writer. So lookups hand their entries
here and wait: entries that arrive while a transaction is being written go into the
next one, together (group commit, bot/batching.py). Each waiter is released only after
the commit that holds its entries, or gets that commit's error (and its answer is not
sent). Entries are stamped with the bot's clock unless they carry their time: the
lookup quotas (core/quota.py) count by it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import Any

from bot.batching import Batcher
from storage.access import audit_many
from storage.db import Database


class ViewLog:
    def __init__(self, db: Database, now: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.now = now or (lambda: datetime.now(UTC))
        self._batcher: Batcher[Sequence[dict[str, Any]], None] = Batcher(
            self._write, name="viewlog")

    @property
    def commits(self) -> int:
        return self._batcher.batches

    async def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Returns once `rows` (`storage.access.audit_row`s) are committed."""
        if rows:
            await self._batcher.submit(rows)

    async def _write(self, batch: list[Sequence[dict[str, Any]]]) -> list[None]:
        stamp = self.now()
        async with self.db.session() as session:
            await audit_many(session, [{"at": stamp, **row} for rows in batch for row in rows])
        return [None] * len(batch)
