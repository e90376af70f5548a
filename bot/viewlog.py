"""Who was shown which contact card or duty line, on record before it is shown.

A lookup writes nothing but its audit entries, and one write transaction per lookup
would queue busy desks behind SQLite's single writer. So lookups hand their entries
here and wait: entries that arrive while a transaction is being written go into the
next one, together (group commit, bot/batching.py). Each waiter is released only after
the commit that holds its entries, or gets that commit's error (and its answer is not
sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.batching import Batcher
from storage.access import audit_many
from storage.db import Database


class ViewLog:
    def __init__(self, db: Database) -> None:
        self.db = db
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
        async with self.db.session() as session:
            await audit_many(session, [row for rows in batch for row in rows])
        return [None] * len(batch)
